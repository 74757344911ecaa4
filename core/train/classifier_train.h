// Supervised training of an image classifier (the ViT family) on a labelled image set: AdamW
// with warm-up and cosine decay through RunTrainingLoop (training_loop.h), optional label
// smoothing and light augmentation; and the test-set accuracy (overall and per class) used to
// check a trained model.
//
// Shapes: N = examples, B = batch, C/H/W = image channels/height/width, L = classes.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/data/idx.h"
#include "core/models/capabilities.h"
#include "core/models/vit.h"
#include "core/train/training_loop.h"

namespace unlearning::core {

struct ClassifierTrainOptions {
  int64_t epochs = 5;
  int64_t batch_size = 128;  // a set smaller than this trains on whole-set batches
  // 0: epochs * steps_per_epoch. Otherwise exactly this many steps (the epoch count is then
  // irrelevant), e.g. for quick tests.
  int64_t max_steps = 0;
  double learning_rate = 2e-3;
  double weight_decay = 0.05;
  double max_grad_norm = 1.0;    // 0 disables clipping
  double warmup_epochs = 0.5;    // linear warm-up length, in epochs (of max_steps when set)
  bool cosine_decay = true;      // after warm-up: cosine decay to 0 (false: constant rate)
  double label_smoothing = 0.0;  // in [0, 1)
  // Augmentation, drawn per example: a random translation by up to `random_shift` pixels in each
  // direction (zero padding then crop) and, if `horizontal_flip`, a mirror with probability 0.5.
  int64_t random_shift = 0;
  bool horizontal_flip = false;
  // Seeds the per-epoch shuffle and the augmentation. Same seed, data, options and thread count
  // => same batches and the same trained weights.
  uint64_t seed = 0;
  int64_t progress_every = 50;
};

struct ClassifierTrainResult {
  TrainingLoopResult loop;
  int64_t examples = 0;
  int64_t steps_per_epoch = 0;
  double seconds = 0.0;
};

// Trains `model` in place (every parameter with requires_grad; LoRA factors too when enabled) on
// `train` with cross-entropy. `train.images`: [N, C, H, W] float32 in [0, 1] matching the model's
// image_spec(); `train.labels`: [N] int64 in [0, num_classes). The model is left in eval mode.
// kInvalidArgument for empty or mis-shaped data, a label out of range or invalid options;
// kCancelled if `cancel` fires (the model is then partly trained); kInternal on a non-finite
// loss or a LibTorch error. `progress` and `cancel` may be null. Not thread-safe with respect to
// `model`.
absl::StatusOr<ClassifierTrainResult> TrainClassifier(VitClassifier& model,
                                                      const LabelledImages& train,
                                                      const ClassifierTrainOptions& options,
                                                      ProgressSink* progress,
                                                      const CancellationToken* cancel);

// Top-1 accuracy, overall and per class.
struct ClassifierAccuracy {
  int64_t correct = 0;
  int64_t total = 0;
  std::vector<int64_t> class_correct;  // [L]
  std::vector<int64_t> class_total;    // [L]: examples whose true label is the class
  double accuracy() const { return total == 0 ? 0.0 : static_cast<double>(correct) / total; }
  // Accuracy on the examples of class `id`; 0 if there are none.
  double class_accuracy(int64_t id) const;
};

// Classifies `data` in batches of `batch_size` (inference mode) and counts top-1 hits.
// `data.images`: [N, C, H, W] float32 in [0, 1]; `data.labels`: [N] int64.
// kInvalidArgument for mis-shaped data, a label out of range or batch_size < 1; kInternal on a
// LibTorch error. Thread-compatible like `model`.
absl::StatusOr<ClassifierAccuracy> EvaluateAccuracy(const ImageClassifier& model,
                                                    const LabelledImages& data,
                                                    int64_t batch_size = 500);

}  // namespace unlearning::core
