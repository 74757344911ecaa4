// Diffusion model family: a class-conditional ε-prediction UNet2DModel (unet.h) with a DDPM
// linear-β noise schedule, DDIM (η = 0) and ancestral (DDPM) samplers and classifier-free guidance,
// stored in the diffusers layout:
//
//   dir/model_index.json                          {"_class_name": "DDPMPipeline", "unet": [...],
//                                                  "scheduler": [...]}
//   dir/unet/config.json                          UNet2DConfig (UNet2DModel keys + null_class_id,
//                                                 id2label)
//   dir/unet/diffusion_pytorch_model.safetensors  float32 weights, diffusers names
//   dir/scheduler/scheduler_config.json           DDPMSchedulerConfig (DDPMScheduler keys)
//
// Pixel spaces: the sampler API (capabilities.h) uses [0, 1]; the UNet works in model space
// x = 2 * pixel - 1, as diffusers' DDPM pipelines do.
//
// Example:
//   UNL_ASSIGN_OR_RETURN(auto model, DiffusionModel::Load("/models/fmnist-ddpm", torch::kCPU));
//   SampleOptions opts;  // DDIM, 50 steps
//   opts.guidance_scale = 3.0;
//   UNL_ASSIGN_OR_RETURN(torch::Tensor images,
//                        model->Sample(torch::tensor({0, 7}, torch::kInt64), opts, nullptr));
//
// Shapes: B = batch, C = channels, H = W = sample_size, T = num_train_timesteps.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Generator.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/models/capabilities.h"
#include "core/models/model.h"
#include "core/models/unet.h"

namespace unlearning::core {

// diffusers DDPMScheduler config keys (scheduler/scheduler_config.json). Only the linear β
// schedule with ε-prediction and "fixed_small" variance is supported. Unknown keys are ignored.
struct DDPMSchedulerConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 1e-4;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";
  std::string prediction_type = "epsilon";
  bool clip_sample = true;  // clamp the predicted x0 to [-clip_sample_range, clip_sample_range]
  double clip_sample_range = 1.0;

  // kInvalidArgument naming the key and value for a wrong type, num_train_timesteps < 2,
  // betas outside 0 < beta_start <= beta_end < 1, an unsupported beta_schedule /
  // prediction_type / variance_type, or a non-positive clip_sample_range.
  static absl::StatusOr<DDPMSchedulerConfig> FromJson(const nlohmann::json& json);
  // All keys above plus "_class_name": "DDPMScheduler", "variance_type": "fixed_small" and
  // "timestep_spacing": "trailing".
  nlohmann::json ToJson() const;

  // β_t = linspace(beta_start, beta_end, T); returns [T] float64.
  torch::Tensor Betas() const;
  // ᾱ_t = Π_{s<=t} (1 - β_s); returns [T] float64 (CPU).
  torch::Tensor AlphasCumprod() const;
  // The timesteps a `steps`-step sampler visits, descending, with diffusers' "trailing" spacing:
  // round(T - k * T / steps) - 1 for k = 0..steps-1, so the first is always T - 1 and 1000 steps
  // visit every timestep. REQUIRES 1 <= steps <= T.
  std::vector<int64_t> SamplingTimesteps(int64_t steps) const;
};

// The sampling loop of DiffusionModel::Sample, with the noise predictor as a parameter (used by
// Sample with the UNet and guidance, by tests with an oracle, by distillation code with its own
// networks). Runs `steps` steps over scheduler.SamplingTimesteps(steps): DDIM (η = 0; x0 clipped
// when scheduler.clip_sample, ε recomputed from it) if `ddim`, else ancestral DDPM (posterior
// mean + fixed_small variance, noise drawn from `gen` on the CPU). kCancelled if `cancel` (may
// be null) fires, checked before every step. LibTorch errors are thrown: call inside TorchCall.
// REQUIRES 1 <= steps <= num_train_timesteps.
//   eps_fn(x_t, t): x_t [B, C, H, W] float32 model space, t in [0, T); returns ε̂, same shape
//   x: [B, C, H, W] float32, the starting noise x_T
//   returns x_0 [B, C, H, W] float32 in model space (not clamped)
absl::StatusOr<torch::Tensor> RunDiffusionSampler(
    const DDPMSchedulerConfig& scheduler,
    const std::function<torch::Tensor(const torch::Tensor& x_t, int64_t t)>& eps_fn,
    torch::Tensor x, int64_t steps, bool ddim, at::Generator gen, const CancellationToken* cancel);

// The label checks of every ImageSampler::Sample here: kInvalidArgument unless `labels` is a
// non-empty 1-D int64 tensor with values in [0, num_classes).
absl::Status ValidateSampleLabels(const torch::Tensor& labels, int64_t num_classes);

// A loaded class-conditional diffusion model. Thread-compatible: const methods (Sample,
// PredictNoise in inference, Save, Clone) may run concurrently; module() is for training a
// private copy.
class DiffusionModel : public Model, public ImageSampler {
 public:
  // Random initialisation (LibTorch defaults, zero conv_out so the initial ε-prediction is 0),
  // seeded: reseeds LibTorch's global CPU generator with `seed` (its initialisers draw from it).
  // REQUIRES: `unet` and `scheduler` passed their FromJson validation.
  static std::unique_ptr<DiffusionModel> Create(const UNet2DConfig& unet,
                                                const DDPMSchedulerConfig& scheduler,
                                                torch::Device device, uint64_t seed);
  // Loads unet/config.json, unet/diffusion_pytorch_model.safetensors and
  // scheduler/scheduler_config.json from `dir` (model_index.json is optional).
  // kNotFound if a file is missing; kInvalidArgument (naming the file and key or tensor) if a
  // config is invalid, a tensor is missing or has the wrong shape, or a file is malformed.
  static absl::StatusOr<std::unique_ptr<DiffusionModel>> Load(const std::string& dir,
                                                              torch::Device device);
  // True if `dir` looks like a diffusers pipeline of this family: model_index.json exists, or
  // unet/config.json exists with "_class_name": "UNet2DModel". Does not validate.
  static bool Recognises(const std::string& dir);

  // Model.
  ModelFamily family() const override { return ModelFamily::kDiffusion; }
  std::string architecture() const override { return "UNet2DModel"; }
  int64_t num_parameters() const override;
  torch::Device device() const override { return device_; }
  // Writes model_index.json, unet/ and scheduler/ into `dir` (which must exist; kNotFound
  // otherwise). Not atomic.
  absl::Status Save(const std::string& dir) const override;
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device device) const override;
  // Typed deep copy (own parameters, same requires_grad and train/eval mode).
  std::unique_ptr<DiffusionModel> CloneDiffusion(torch::Device device) const;
  const ImageSampler* AsImageSampler() const override { return this; }

  // ClassLabels. The real classes are 0..null_class_id-1.
  int64_t num_classes() const override { return unet_config().null_class_id; }
  // id2label[id], or the id as text.
  std::string class_name(int64_t id) const override;

  // ImageSampler.
  ImageSpec image_spec() const override;
  int64_t max_steps() const override { return scheduler_.num_train_timesteps; }
  //   labels: [B] int64 in [0, num_classes()); returns [B, C, H, W] float32 in [0, 1] on the
  //   model's device, at the native sample_size.
  // Starts from N(0, I) noise drawn from a CPU generator seeded with options.seed (so results do
  // not depend on the thread count or device RNG) and runs options.steps steps of "ddim" (η = 0,
  // x0 clipped and ε recomputed from it) or "ancestral" (diffusers DDPMScheduler.step with
  // fixed_small variance) over SamplingTimesteps(steps). guidance_scale s != 1 mixes
  // ε = ε(x, null) + s * (ε(x, c) - ε(x, null)).
  // kInvalidArgument for labels that are not a 1-D int64 tensor in range, steps outside
  // [1, max_steps()], an unknown sampler, or a non-finite/negative guidance scale; kCancelled if
  // `cancel` fires (checked every step).
  absl::StatusOr<torch::Tensor> Sample(const torch::Tensor& labels, const SampleOptions& options,
                                       const CancellationToken* cancel) const override;

  // ε-prediction with autograd enabled (for training and distillation; call under a
  // NoGradGuard/InferenceMode for inference). Throws LibTorch errors on bad shapes: callers run it
  // inside a TorchCall boundary.
  //   x_t:    [B, C, H, W] float32, model space
  //   t:      [B] int64 in [0, T)
  //   labels: [B] int64 in [0, num_class_embeds) (null_class_id = unconditional)
  //   returns [B, C, H, W] float32
  torch::Tensor PredictNoise(const torch::Tensor& x_t, const torch::Tensor& t,
                             const torch::Tensor& labels) const;

  // ᾱ_t of the scheduler: [T] float32 on the model's device.
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  const UNet2DConfig& unet_config() const { return module_->config(); }
  const DDPMSchedulerConfig& scheduler_config() const { return scheduler_; }
  UNet2DModel& module() { return module_; }
  const UNet2DModel& module() const { return module_; }

 private:
  DiffusionModel(UNet2DModel module, DDPMSchedulerConfig scheduler, torch::Device device);

  UNet2DModel module_;
  DDPMSchedulerConfig scheduler_;
  torch::Device device_;
  torch::Tensor alphas_cumprod_;  // [T] float32 on device_
};

}  // namespace unlearning::core
