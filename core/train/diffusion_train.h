// Training of a class-conditional ε-prediction diffusion model (core/models/diffusion.h) on a
// labelled image set: the DDPM "simple" loss (Ho et al. 2020 Eq. 14) with uniform t, labels
// dropped to the null class for classifier-free guidance (Ho & Salimans 2022 Alg. 1), AdamW with
// warm-up and cosine decay through RunTrainingLoop, and an exponential moving average of the
// weights that becomes the model's weights at the end.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/models/diffusion.h"
#include "core/train/training_loop.h"

namespace unlearning::core {

struct DiffusionTrainOptions {
  int64_t steps = 1000;         // optimizer steps, >= 1
  int64_t batch_size = 64;      // images per step (drawn with replacement), >= 1
  double learning_rate = 2e-3;  // peak AdamW rate
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // 0 disables clipping
  int64_t warmup_steps = 100;  // linear warm-up, then linear decay to 0 (lr_schedule.h)
  double label_dropout = 0.1;  // probability a label is replaced by null_class_id, [0, 1]
  // EMA decay, [0, 1); the effective decay at step k is min(ema_decay, (1 + k) / (10 + k)) so the
  // average is not dominated by the initial weights. 0 disables the EMA (raw weights are kept).
  double ema_decay = 0.999;
  uint64_t seed = 0;  // batches, t, noise and label dropout; same seed => same model
  int64_t progress_every = 50;
};

struct DiffusionTrainResult {
  TrainingLoopResult loop;
  double mean_first_loss = 0.0;  // mean loss over the first min(50, steps) steps
  double mean_last_loss = 0.0;   // mean loss over the last min(50, steps) steps
  double seconds = 0.0;
};

// Trains `model` in place (its module is put in train mode, then eval mode; on success its
// weights are the EMA weights).
//   images: [N, C, H, W] float32 in [0, 1], C and H = W matching the model's image_spec()
//           (resize beforehand, e.g. with ResizeImages)
//   labels: [N] int64 in [0, model->num_classes())
// kInvalidArgument for mismatched/empty data, labels out of range or invalid options;
// kCancelled if `cancel` fires (the model then holds partly trained raw weights); kInternal on a
// non-finite loss or a LibTorch error.
absl::StatusOr<DiffusionTrainResult> TrainDiffusion(
    DiffusionModel* model, const torch::Tensor& images, const torch::Tensor& labels,
    const DiffusionTrainOptions& options, ProgressSink* progress, const CancellationToken* cancel);

// Resizes images with antialiased bilinear interpolation (identity when already `size`).
//   images: [N, C, H, W] float32; returns [N, C, size, size] float32.
torch::Tensor ResizeImages(const torch::Tensor& images, int64_t size);

}  // namespace unlearning::core
