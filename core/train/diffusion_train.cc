#include "core/train/diffusion_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

absl::Status Validate(const DiffusionModel& model, const torch::Tensor& images,
                      const torch::Tensor& labels, const DiffusionTrainOptions& o) {
  const ImageSpec spec = model.image_spec();
  if (!images.defined() || images.dim() != 4 || images.size(0) == 0 ||
      images.scalar_type() != torch::kFloat32) {
    return absl::InvalidArgumentError("train: images must be a non-empty [N, C, H, W] float32");
  }
  if (images.size(1) != spec.channels || images.size(2) != spec.height ||
      images.size(3) != spec.width) {
    return absl::InvalidArgumentError(
        absl::StrCat("train: images are ", images.size(1), "x", images.size(2), "x", images.size(3),
                     ", the model takes ", spec.channels, "x", spec.height, "x", spec.width,
                     " (resize with ResizeImages)"));
  }
  if (!labels.defined() || labels.dim() != 1 || labels.scalar_type() != torch::kInt64 ||
      labels.size(0) != images.size(0)) {
    return absl::InvalidArgumentError("train: labels must be [N] int64 matching images");
  }
  const int64_t lo = labels.min().item<int64_t>();
  const int64_t hi = labels.max().item<int64_t>();
  if (lo < 0 || hi >= model.num_classes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("train: label ", lo < 0 ? lo : hi, " outside [0, ", model.num_classes(), ")"));
  }
  if (o.steps < 1)
    return absl::InvalidArgumentError(absl::StrCat("steps must be >= 1, got ", o.steps));
  if (o.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", o.batch_size));
  }
  if (!(o.label_dropout >= 0.0 && o.label_dropout <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("label_dropout must be in [0, 1], got ", o.label_dropout));
  }
  if (!(o.ema_decay >= 0.0 && o.ema_decay < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ema_decay must be in [0, 1), got ", o.ema_decay));
  }
  return absl::OkStatus();
}

// Exponential moving average of a parameter list.
class Ema {
 public:
  Ema(const std::vector<torch::Tensor>& params, double decay) : params_(params), decay_(decay) {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : params_) shadow_.push_back(p.detach().clone());
  }
  // Folds the current parameters in (call after each optimizer step).
  void Update() {
    torch::NoGradGuard no_grad;
    const double d = std::min(decay_, (1.0 + updates_) / (10.0 + updates_));
    ++updates_;
    for (size_t i = 0; i < params_.size(); ++i) shadow_[i].lerp_(params_[i].detach(), 1.0 - d);
  }
  // Copies the average into the parameters.
  void CopyTo() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(shadow_[i]);
  }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> shadow_;
  double decay_;
  int64_t updates_ = 0;
};

}  // namespace

torch::Tensor ResizeImages(const torch::Tensor& images, int64_t size) {
  if (images.size(2) == size && images.size(3) == size) return images;
  return at::_upsample_bilinear2d_aa(images, {size, size}, /*align_corners=*/false);
}

absl::StatusOr<DiffusionTrainResult> TrainDiffusion(
    DiffusionModel* model, const torch::Tensor& images, const torch::Tensor& labels,
    const DiffusionTrainOptions& options, ProgressSink* progress, const CancellationToken* cancel) {
  UNL_RETURN_IF_ERROR(TorchCall("validating training data",
                                [&] { return Validate(*model, images, labels, options); }));
  const auto start = std::chrono::steady_clock::now();
  const torch::Device device = model->device();
  const int64_t n = images.size(0);
  const int64_t null_class = model->unet_config().null_class_id;
  const int64_t timesteps = model->scheduler_config().num_train_timesteps;
  torch::Tensor data;  // [N, C, H, W] model space on CPU
  torch::Tensor abar;  // [T] float32 on device
  std::vector<torch::Tensor> params;
  UNL_RETURN_IF_ERROR(TorchCall("preparing training", [&] {
    data = (images.to(torch::kCPU) * 2.0 - 1.0).contiguous();
    abar = model->alphas_cumprod();
    model->module()->train();
    for (torch::Tensor& p : model->module()->parameters()) {
      p.set_requires_grad(true);
      params.push_back(p);
    }
  }));
  std::unique_ptr<Ema> ema;
  if (options.ema_decay > 0.0) {
    UNL_RETURN_IF_ERROR(TorchCall("creating the EMA",
                                  [&] { ema = std::make_unique<Ema>(params, options.ema_decay); }));
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const auto cpu_i64 = torch::TensorOptions().dtype(torch::kInt64);
  const auto cpu_f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const int64_t window = std::min<int64_t>(50, options.steps);
  std::vector<double> losses;
  losses.reserve(static_cast<size_t>(options.steps));

  TrainingLoopOptions loop;
  loop.total_steps = options.steps;
  loop.progress_every = options.progress_every;
  loop.optimizer.learning_rate = options.learning_rate;
  loop.optimizer.weight_decay = options.weight_decay;
  loop.optimizer.max_grad_norm = options.max_grad_norm;
  loop.optimizer.warmup_steps = options.warmup_steps;
  loop.optimizer.cosine_decay = true;

  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    // The previous step's optimizer update is folded into the EMA here (the last one after the
    // loop), since RunTrainingLoop has no post-step hook.
    if (ema != nullptr && step > 0) ema->Update();
    const int64_t b = options.batch_size;
    torch::Tensor idx = at::randint(n, {b}, gen, cpu_i64);
    torch::Tensor x0 = data.index_select(0, idx).to(device);        // [B, C, H, W]
    torch::Tensor y = labels.to(torch::kCPU).index_select(0, idx);  // [B]
    torch::Tensor drop = at::rand({b}, gen, cpu_f32) < options.label_dropout;
    y = at::where(drop, at::full_like(y, null_class), y).to(device);
    torch::Tensor t = at::randint(timesteps, {b}, gen, cpu_i64).to(device);  // [B]
    torch::Tensor eps = at::randn(x0.sizes(), gen, cpu_f32).to(device);
    torch::Tensor a = abar.index_select(0, t).view({b, 1, 1, 1});
    torch::Tensor x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
    torch::Tensor loss = at::mse_loss(model->PredictNoise(x_t, t, y), eps);
    losses.push_back(loss.item<double>());
    return loss;
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop(params, loop, step_fn, progress, cancel);
  if (!result.ok()) return result.status();
  UNL_RETURN_IF_ERROR(TorchCall("finishing training", [&] {
    if (ema != nullptr) {
      ema->Update();
      ema->CopyTo();
    }
    model->module()->eval();
  }));
  DiffusionTrainResult out;
  out.loop = *result;
  for (int64_t i = 0; i < window; ++i) {
    out.mean_first_loss += losses[static_cast<size_t>(i)] / static_cast<double>(window);
    out.mean_last_loss +=
        losses[losses.size() - 1 - static_cast<size_t>(i)] / static_cast<double>(window);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace unlearning::core
