#include "core/train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <torch/nn/functional/loss.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

absl::Status ValidateFinetuneOptions(const FinetuneOptions& options) {
  if (options.epochs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("epochs must be >= 1, got ", options.epochs));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be >= 1, got ", options.batch_size));
  }
  if (options.max_length < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_length must be >= 2, got ", options.max_length));
  }
  if (!(options.warmup_epochs >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warmup_epochs must be >= 0, got ", options.warmup_epochs));
  }
  return absl::OkStatus();
}

std::vector<EncodedExample> EncodeAll(const Tokenizer& tokenizer,
                                      const std::vector<TextExample>& examples) {
  std::vector<EncodedExample> encoded;
  encoded.reserve(examples.size());
  for (const TextExample& ex : examples) {
    encoded.push_back(EncodeQa(tokenizer, ex.question, ex.answer, /*add_eos=*/true));
  }
  return encoded;
}

// The batches (lists of example indices) of every epoch, in training order.
std::vector<std::vector<int64_t>> PlanBatches(const std::vector<EncodedExample>& encoded,
                                              const FinetuneOptions& options) {
  const int64_t n = static_cast<int64_t>(encoded.size());
  const int64_t window = options.length_bucketing ? options.batch_size * 8 : options.batch_size;
  std::mt19937_64 rng(options.seed);
  std::vector<std::vector<int64_t>> plan;
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::vector<int64_t>> batches;
    for (int64_t w = 0; w < n; w += window) {
      const auto begin = order.begin() + w;
      const auto end = order.begin() + std::min(n, w + window);
      if (options.length_bucketing) {
        std::stable_sort(begin, end, [&](int64_t a, int64_t b) {
          return encoded[a].ids.size() < encoded[b].ids.size();
        });
      }
      for (auto it = begin; it < end; it += std::min<int64_t>(options.batch_size, end - it)) {
        batches.emplace_back(it, it + std::min<int64_t>(options.batch_size, end - it));
      }
    }
    if (options.length_bucketing) std::shuffle(batches.begin(), batches.end(), rng);
    for (auto& b : batches) plan.push_back(std::move(b));
  }
  return plan;
}

TokenBatch CollateIndices(const std::vector<EncodedExample>& encoded,
                          const std::vector<int64_t>& indices, int64_t pad_id, int64_t max_length) {
  std::vector<EncodedExample> batch;
  batch.reserve(indices.size());
  for (int64_t i : indices) batch.push_back(encoded[i]);
  return Collate(batch, pad_id, max_length);
}

}  // namespace

torch::Tensor AnswerCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t vocab = logits.size(-1);
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits.reshape({-1, vocab}).to(torch::kFloat32), labels.reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex));
}

absl::StatusOr<FinetuneResult> FinetuneQa(CausalLm& model, const std::vector<TextExample>& examples,
                                          const FinetuneOptions& options, ProgressSink* progress,
                                          const CancellationToken* cancel) {
  UNL_RETURN_IF_ERROR(ValidateFinetuneOptions(options));
  if (examples.empty()) return absl::InvalidArgumentError("no training examples");
  const auto start = std::chrono::steady_clock::now();

  const std::vector<EncodedExample> encoded = EncodeAll(model.tokenizer(), examples);
  const std::vector<std::vector<int64_t>> plan = PlanBatches(encoded, options);
  const int64_t n = static_cast<int64_t>(examples.size());

  FinetuneResult result;
  result.examples = n;
  result.steps_per_epoch = (n + options.batch_size - 1) / options.batch_size;
  for (const EncodedExample& e : encoded) {
    const int64_t len = std::min<int64_t>(e.ids.size(), options.max_length);
    result.answer_tokens_per_epoch += std::max<int64_t>(0, len - 1 - e.answer_start);
  }

  TrainingLoopOptions loop;
  loop.total_steps = static_cast<int64_t>(plan.size());
  loop.progress_every = std::max<int64_t>(1, options.progress_every);
  loop.optimizer.learning_rate = options.learning_rate;
  loop.optimizer.weight_decay = options.weight_decay;
  loop.optimizer.max_grad_norm = options.max_grad_norm;
  loop.optimizer.warmup_steps = static_cast<int64_t>(
      std::llround(options.warmup_epochs * static_cast<double>(result.steps_per_epoch)));
  loop.optimizer.linear_decay = options.linear_decay;

  LlamaForCausalLM& module = model.module();
  module->train();
  const torch::Device device = model.device();
  const int64_t pad_id = model.tokenizer().pad_id();
  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    TokenBatch batch = CollateIndices(encoded, plan[step], pad_id, options.max_length);
    torch::Tensor logits = module->forward(batch.input_ids.to(device));  // [B, T, V]
    return AnswerCrossEntropy(logits, batch.labels.to(device));
  };
  UNL_ASSIGN_OR_RETURN(result.loop,
                       RunTrainingLoop(module->parameters(), loop, step_fn, progress, cancel));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

absl::StatusOr<TokenAccuracy> CountCorrectTokens(const torch::Tensor& logits,
                                                 const torch::Tensor& labels) {
  if (!logits.defined() || !labels.defined() || logits.dim() != 3 || labels.dim() != 2 ||
      logits.size(0) != labels.size(0) || logits.size(1) != labels.size(1)) {
    return absl::InvalidArgumentError("logits must be [B, T, V] and labels [B, T]");
  }
  return TorchCall("counting correct tokens", [&]() -> absl::StatusOr<TokenAccuracy> {
    torch::NoGradGuard no_grad;
    const torch::Tensor mask = labels.ne(kIgnoreIndex);              // [B, T] bool
    const torch::Tensor hits = logits.argmax(-1).eq(labels) & mask;  // [B, T] bool
    TokenAccuracy acc;
    acc.correct = hits.sum().item<int64_t>();
    acc.total = mask.sum().item<int64_t>();
    return acc;
  });
}

absl::StatusOr<TokenAccuracy> MeasureAnswerAccuracy(const CausalLm& model,
                                                    const std::vector<TextExample>& examples,
                                                    int64_t batch_size, int64_t max_length) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
  }
  std::vector<EncodedExample> encoded = EncodeAll(model.tokenizer(), examples);
  // Similar lengths together: less padding, same counts.
  std::vector<int64_t> order(encoded.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return encoded[a].ids.size() < encoded[b].ids.size();
  });
  TokenAccuracy total;
  const int64_t n = static_cast<int64_t>(order.size());
  for (int64_t i = 0; i < n; i += batch_size) {
    std::vector<int64_t> idx(order.begin() + i, order.begin() + std::min(n, i + batch_size));
    TokenBatch batch = CollateIndices(encoded, idx, model.tokenizer().pad_id(), max_length);
    UNL_ASSIGN_OR_RETURN(torch::Tensor logits,
                         TorchCall("accuracy forward", [&]() -> absl::StatusOr<torch::Tensor> {
                           return model.Logits(batch.input_ids.to(model.device()));
                         }));
    UNL_ASSIGN_OR_RETURN(TokenAccuracy acc,
                         CountCorrectTokens(logits, batch.labels.to(model.device())));
    total.correct += acc.correct;
    total.total += acc.total;
  }
  return total;
}

}  // namespace unlearning::core
