// Supervised fine-tuning of a causal LM on question/answer pairs (the TOFU
// recipe: answer-only cross-entropy, AdamW, one epoch of linear warm-up, weight
// decay 0.01), and the teacher-forced answer-token accuracy used to check that
// a fine-tuned model has memorised its data.
//
// Shapes: B = batch, T = sequence length, V = vocab size.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/data/text_example.h"
#include "core/models/causal_lm.h"
#include "core/train/training_loop.h"

namespace unlearning::core {

struct FinetuneOptions {
  int64_t epochs = 10;
  int64_t batch_size = 16;
  double learning_rate = 1e-3;
  double weight_decay = 0.01;
  double max_grad_norm = 1.0;  // 0 disables clipping
  // Linear warm-up length in epochs (TOFU: 1), then linear decay to 0 if
  // linear_decay.
  double warmup_epochs = 1.0;
  bool linear_decay = true;
  // Seeds the per-epoch shuffle. Same seed, data and options => same batches.
  uint64_t seed = 0;
  // Sequences longer than this are truncated from the right.
  int64_t max_length = 512;
  // Groups examples of similar length into the same batch (within a window of 8
  // batches of the shuffled order) to cut padding; batch order is still
  // shuffled.
  bool length_bucketing = true;
  int64_t progress_every = 10;
};

struct FinetuneResult {
  TrainingLoopResult loop;
  int64_t examples = 0;
  int64_t steps_per_epoch = 0;
  int64_t answer_tokens_per_epoch = 0;
  double seconds = 0.0;
};

// Trains `model` in place (full fine-tuning of every parameter) on `examples`,
// encoded with EncodeQa (answer followed by EOS) and batched with Collate.
// kInvalidArgument for empty data or invalid options; kCancelled if `cancel`
// fires (the model is then partly trained); kInternal on a non-finite loss or a
// LibTorch error. `progress` and `cancel` may be null. Not thread-safe with
// respect to `model`.
absl::StatusOr<FinetuneResult> FinetuneQa(CausalLm& model, const std::vector<TextExample>& examples,
                                          const FinetuneOptions& options, ProgressSink* progress,
                                          const CancellationToken* cancel);

// Mean token-level cross-entropy over the positions whose label is not
// kIgnoreIndex.
//   logits: [B, T, V] float; labels: [B, T] int64 (pre-shifted, as produced by
//   Collate).
// Returns a scalar (NaN if every label is ignored).
torch::Tensor AnswerCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels);

// Teacher-forced greedy answer-token accuracy: the fraction of answer positions
// (label != kIgnoreIndex) whose argmax logit equals the label.
struct TokenAccuracy {
  int64_t correct = 0;
  int64_t total = 0;
  double accuracy() const { return total == 0 ? 0.0 : static_cast<double>(correct) / total; }
};

// Counts on one batch. logits: [B, T, V]; labels: [B, T] int64.
// kInvalidArgument on a shape mismatch.
absl::StatusOr<TokenAccuracy> CountCorrectTokens(const torch::Tensor& logits,
                                                 const torch::Tensor& labels);

// Accuracy of `model` over every answer token (EOS included) of `examples`,
// evaluated in batches of `batch_size` without autograd. kInvalidArgument if
// batch_size < 1.
absl::StatusOr<TokenAccuracy> MeasureAnswerAccuracy(const CausalLm& model,
                                                    const std::vector<TextExample>& examples,
                                                    int64_t batch_size = 32,
                                                    int64_t max_length = 512);

}  // namespace unlearning::core
