// A one-step class-conditional generator distilled from a diffusion teacher (SiD / SFD,
// METHODS.md §3): the teacher's UNet architecture evaluated once at a fixed timestep t_init,
//
//   x_init = sqrt(1 − ᾱ_init) · z,  z ~ N(0, I)          (pure noise, no data term)
//   G(z, c) = (x_init − sqrt(1 − ᾱ_init) · ε_G(x_init, t_init, c)) / sqrt(ᾱ_init)
//
// so one network evaluation per image where the teacher's sampler needs `steps` (twice that with
// classifier-free guidance). With the DDPM linear schedule, t_init = 440 is σ_init ≈ 2.5.
//
// Layout (diffusers-compatible: unet/ and scheduler/ load in diffusers as a UNet2DModel and a
// DDPMScheduler; the pipeline class is the project's):
//   dir/model_index.json        {"_class_name": "OneStepGeneratorPipeline", ...}
//   dir/generator_config.json   OneStepGeneratorConfig (t_init, forgotten classes, overrides, ...)
//   dir/unet/                   the served weights (the EMA of the generator)
//   dir/scheduler/              the teacher's scheduler (ᾱ for t_init)
//   dir/online/                 the generator's online (non-EMA) weights, a full diffusers
//                               DDPMPipeline directory; optional (a later request warm-starts
//                               from it, or from unet/ when absent)
//
// The generator samples on its own. It also keeps a pointer to the teacher it was distilled from
// (when loaded on its parent version): a later SFD request distils again from that teacher.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/models/capabilities.h"
#include "core/models/diffusion.h"
#include "core/models/model.h"

namespace unlearning::core {

// generator_config.json.
struct OneStepGeneratorConfig {
  int64_t init_timestep = 440;  // t_init, in [0, num_train_timesteps)
  std::string method = "sfd";   // the method that distilled it ("sfd" or "sid")
  // Classes whose label no longer yields the class, and what each yields instead (an override
  // class, or -1 for "a random retained class"). Cumulative over the requests of a lineage.
  std::vector<int64_t> forgotten_classes;
  std::map<int64_t, int64_t> overrides;
  double teacher_guidance = 1.0;  // the classifier-free guidance the teacher was distilled at

  // kInvalidArgument naming the key for a wrong type or value.
  static absl::StatusOr<OneStepGeneratorConfig> FromJson(const nlohmann::json& json);
  nlohmann::json ToJson() const;
};

class OneStepGenerator : public Model, public ImageSampler {
 public:
  // `generator`: the served (EMA) weights; `online`: the non-EMA weights (may be null);
  // `teacher`: the model it was distilled from (may be null when loaded without its parent).
  // REQUIRES generator non-null, config.init_timestep within the scheduler's range.
  OneStepGenerator(std::unique_ptr<DiffusionModel> generator,
                   std::unique_ptr<DiffusionModel> online, OneStepGeneratorConfig config,
                   std::shared_ptr<const DiffusionModel> teacher);

  // True if dir/model_index.json names OneStepGeneratorPipeline. Never fails.
  static bool Recognises(const std::string& dir);
  // kNotFound / kInvalidArgument as DiffusionModel::Load, naming the file.
  static absl::StatusOr<std::unique_ptr<OneStepGenerator>> Load(
      const std::string& dir, torch::Device device, std::shared_ptr<const DiffusionModel> teacher);

  // G(z, c) in model space with autograd as the caller's mode allows (training and sampling).
  //   net: the generator UNet; z: [B, C, H, W] N(0, I); labels: [B] int64; returns x0 [B, C, H, W]
  static torch::Tensor Generate(const DiffusionModel& net, int64_t init_timestep,
                                const torch::Tensor& z, const torch::Tensor& labels);

  // Model.
  ModelFamily family() const override { return ModelFamily::kDiffusion; }
  std::string architecture() const override { return "OneStepGenerator"; }
  int64_t num_parameters() const override { return generator_->num_parameters(); }
  torch::Device device() const override { return generator_->device(); }
  // model_index.json, generator_config.json, unet/, scheduler/ and (when held) online/.
  absl::Status Save(const std::string& dir) const override;
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device device) const override;
  const ImageSampler* AsImageSampler() const override { return this; }

  // ImageSampler.
  int64_t num_classes() const override { return generator_->num_classes(); }
  std::string class_name(int64_t id) const override { return generator_->class_name(id); }
  // config().forgotten_classes, ascending.
  std::vector<int64_t> forgotten_classes() const override;
  ImageSpec image_spec() const override { return generator_->image_spec(); }
  int64_t max_steps() const override { return 1; }
  // One network evaluation: z from a CPU generator seeded with options.seed, G(z, label), clamped
  // to [-1, 1] and mapped to [0, 1]. options.sampler and options.guidance_scale are ignored (the
  // guidance is the one the teacher was distilled at, config().teacher_guidance).
  // kInvalidArgument for bad labels or steps other than 1.
  absl::StatusOr<torch::Tensor> Sample(const torch::Tensor& labels, const SampleOptions& options,
                                       const CancellationToken* cancel) const override;

  const DiffusionModel& generator() const { return *generator_; }
  // The online weights, or the served ones when the directory had none.
  const DiffusionModel& online() const { return online_ != nullptr ? *online_ : *generator_; }
  const std::shared_ptr<const DiffusionModel>& teacher() const { return teacher_; }
  const OneStepGeneratorConfig& config() const { return config_; }

 private:
  std::unique_ptr<DiffusionModel> generator_;
  std::unique_ptr<DiffusionModel> online_;
  OneStepGeneratorConfig config_;
  std::shared_ptr<const DiffusionModel> teacher_;
};

}  // namespace unlearning::core
