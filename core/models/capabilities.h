// What a served model can do, independent of its architecture. A family implements the
// capabilities it has; the server's services, the verifiers and the methods ask a core::Model for
// a capability (Model::AsLanguageModel(), Model::AsImageClassifier() ...) instead of casting to a
// concrete class. The LanguageModel capability (tokenizer, batched logits, decode states) is in
// language_model.h, included here.
//
// Images everywhere are float32 [B, C, H, W] with pixel values in [0, 1] (0 = black); a model
// applies its own normalisation inside. Class ids are 0..num_classes()-1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/models/language_model.h"

namespace unlearning::core {

// The image geometry a model takes or produces.
struct ImageSpec {
  int64_t channels = 1;
  int64_t height = 28;
  int64_t width = 28;
};

// A labelled image space: the classes a classifier predicts or a sampler is conditioned on.
class ClassLabels {
 public:
  virtual ~ClassLabels() = default;
  virtual int64_t num_classes() const = 0;
  // Human-readable name of class `id` (config.json "id2label"), or the id as text.
  virtual std::string class_name(int64_t id) const = 0;
  // Classes that earlier erasures removed from this model, ascending (kept in the model directory,
  // so a chain of requests can check that old erasures stay in force: the vision figure acc_o).
  virtual std::vector<int64_t> forgotten_classes() const { return {}; }
};

// An image classifier (ViTForImageClassification, ...). Thread-compatible: const methods may run
// concurrently; they run without autograd (inference mode) and return CPU-or-device tensors on
// the model's device.
class ImageClassifier : public ClassLabels {
 public:
  virtual ImageSpec image_spec() const = 0;
  //   images: [B, C, H, W] float32 in [0, 1]; returns [B, num_classes] float32 logits.
  virtual torch::Tensor ClassifyLogits(const torch::Tensor& images) const = 0;
  //   images: [B, C, H, W] float32 in [0, 1]; returns [B, D] float32 penultimate features (the
  //   input of the classification head), for representation-level verification.
  virtual torch::Tensor Features(const torch::Tensor& images) const = 0;
};

// Options of ImageSampler::Sample.
struct SampleOptions {
  int64_t steps = 50;            // denoising steps (1..max_steps()); ignored by one-step models
  std::string sampler = "ddim";  // "ddim" (eta = 0) or "ancestral" (DDPM)
  double guidance_scale = 1.0;   // classifier-free guidance; 1 = conditional only
  uint64_t seed = 0;             // same seed, labels and options => same images
};

// A class-conditional image generator (a diffusion denoiser with its sampler, or a distilled
// one-step generator). Thread-compatible like ImageClassifier.
class ImageSampler : public ClassLabels {
 public:
  virtual ImageSpec image_spec() const = 0;
  // Largest step count Sample accepts (1 for a one-step generator).
  virtual int64_t max_steps() const = 0;
  //   labels: [B] int64 class ids; returns [B, C, H, W] float32 in [0, 1].
  // kInvalidArgument for a label out of range or steps outside 1..max_steps(); kCancelled if
  // `cancel` (may be null) fires.
  virtual absl::StatusOr<torch::Tensor> Sample(const torch::Tensor& labels,
                                               const SampleOptions& options,
                                               const CancellationToken* cancel) const = 0;
};

}  // namespace unlearning::core
