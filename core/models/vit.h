// Image classifier family: a Vision Transformer in the Hugging Face ViTForImageClassification
// layout (Conv2d patch embedding, CLS token, learned position embeddings, pre-norm encoder blocks
// with exact-GELU FFNs, final LayerNorm, linear head on the CLS token), with LoRA-capable linear
// layers, loaded from and saved to a Hugging Face-layout directory (config.json,
// model.safetensors, preprocessor_config.json) with Hugging Face tensor names and config keys.
//
//   auto vit = VitClassifier::Load("/models/fmnist-vit", torch::kCPU);
//   if (!vit.ok()) return vit.status();
//   torch::Tensor logits = (*vit)->ClassifyLogits(images);  // images [B, 1, 28, 28] in [0, 1]
//
// Shapes: B = batch, C = channels, H/W = image height/width, P = patch size, N = (H/P)*(W/P)
// patches, T = N + 1 tokens (CLS first), D = hidden size, L = num labels.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/types.h>

#include "core/models/capabilities.h"
#include "core/models/lora.h"
#include "core/models/model.h"

namespace unlearning::core {

// Hugging Face ViTConfig keys (config.json). Unknown keys are ignored on load, and so are the
// dropout probabilities (inference never uses dropout; our training uses none); ToJson writes 0.
struct ViTConfig {
  int64_t image_size = 28;
  int64_t patch_size = 7;
  int64_t num_channels = 1;
  int64_t hidden_size = 64;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t intermediate_size = 128;
  std::string hidden_act = "gelu";  // exact (erf) GELU; the only activation supported
  double layer_norm_eps = 1e-12;
  bool qkv_bias = true;
  double initializer_range = 0.02;
  // Class names, index = class id; written as "id2label": {"0": name, ...} and "label2id".
  std::vector<std::string> id2label;
  // dtype the weights are stored in: "float32", "bfloat16" or "float16". Compute is float32.
  std::string torch_dtype = "float32";
  // Classes removed by erasures of this service, ascending and distinct, each a valid label
  // ("unlearning_forgotten_classes"; written only when non-empty; Hugging Face keeps unknown keys
  // as plain attributes, so the directory still loads in transformers).
  std::vector<int64_t> forgotten_classes;

  // Parses and validates: positive sizes, num_channels <= 64, image_size divisible by patch_size,
  // heads dividing hidden_size, hidden_act "gelu", id2label keys "0".."L-1" (at least one label;
  // num_labels must agree if present). kInvalidArgument naming the offending key and value
  // otherwise.
  static absl::StatusOr<ViTConfig> FromJson(const nlohmann::json& json);
  // Includes "architectures": ["ViTForImageClassification"] and "model_type": "vit".
  nlohmann::json ToJson() const;

  int64_t num_labels() const { return static_cast<int64_t>(id2label.size()); }
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

// Hugging Face ViTImageProcessor settings (preprocessor_config.json) that matter to us. Callers
// pass pixels in [0, 1], i.e. raw 8-bit values / 255; the model reproduces the processor on them:
// v = x * 255 * rescale_factor (or x * 255 without do_rescale), then (v - image_mean) / image_std
// per channel when do_normalize. With the usual rescale_factor 1/255 that is (x - mean) / std.
// No resizing: images must be image_size x image_size.
struct ViTImageProcessorConfig {
  std::vector<double> image_mean = {0.5};  // one per channel
  std::vector<double> image_std = {0.5};   // one per channel, > 0
  bool do_normalize = true;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  int64_t size = 28;  // "size": {"height": size, "width": size}

  // Parses and validates against `config` (one mean/std per channel or one number for all,
  // positive std, positive rescale_factor, size == image_size). Missing keys keep Default().
  // kInvalidArgument naming the key and value otherwise.
  static absl::StatusOr<ViTImageProcessorConfig> FromJson(const nlohmann::json& json,
                                                          const ViTConfig& config);
  // "image_processor_type": "ViTImageProcessor", do_resize false, ...
  nlohmann::json ToJson() const;
  // HF's default processor for `config`: mean = std = 0.5 per channel, rescale 1/255.
  static ViTImageProcessorConfig Default(const ViTConfig& config);
  // Factor applied to [0, 1] pixels before normalisation (1 with the usual rescale 1/255).
  double pixel_scale() const { return do_rescale ? 255.0 * rescale_factor : 255.0; }
};

// The ViT as a torch::nn::Module whose named_parameters() are exactly the Hugging Face names
// ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings",
// "vit.embeddings.patch_embeddings.projection.{weight,bias}",
// "vit.encoder.layer.{i}.{layernorm_before,layernorm_after}.{weight,bias}",
// "vit.encoder.layer.{i}.attention.attention.{query,key,value}.{weight,bias}",
// "vit.encoder.layer.{i}.attention.output.dense.{weight,bias}",
// "vit.encoder.layer.{i}.{intermediate,output}.dense.{weight,bias}", "vit.layernorm.{weight,bias}",
// "classifier.{weight,bias}"; LoRA factors, when enabled, add "....dense.lora_A" / "lora_B").
// The image normalisation is a pair of buffers, not parameters.
class ViTForImageClassificationImpl : public torch::nn::Module {
 public:
  ViTForImageClassificationImpl(const ViTConfig& config,
                                const ViTImageProcessorConfig& preprocessor);

  //   images: [B, C, H, W] float32 in [0, 1]
  //   returns: [B, L] float32 logits
  torch::Tensor forward(const torch::Tensor& images);
  //   images: [B, C, H, W] float32 in [0, 1]
  //   returns: [B, D] float32, the final-layernormed CLS token (the classifier's input)
  torch::Tensor features(const torch::Tensor& images);
  //   features: [B, D] -> [B, L] logits (the classifier head alone)
  torch::Tensor classify(const torch::Tensor& features);

  // The two FFN linears of every encoder block, in block order, with their HF names:
  // ("vit.encoder.layer.{i}.intermediate.dense", ...), ("vit.encoder.layer.{i}.output.dense", ...).
  // This is where GS-LoRA places its adapters (METHODS.md §4.2).
  std::vector<std::pair<std::string, LoraLinear>> ffn_linears();
  // Every LoRA-capable linear (q/k/v, attention output, FFN, classifier) with its HF name.
  std::vector<std::pair<std::string, LoraLinear>> lora_linears();

  const ViTConfig& config() const { return config_; }
  ViTConfig& mutable_config() { return config_; }
  const ViTImageProcessorConfig& preprocessor() const { return preprocessor_; }

 private:
  ViTConfig config_;
  ViTImageProcessorConfig preprocessor_;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};
TORCH_MODULE(ViTForImageClassification);

// A loaded ViT image classifier. Thread-compatible: const methods (ClassifyLogits, Features,
// Save, Clone) may run concurrently from many threads; module() is for training a private copy.
class VitClassifier : public Model, public ImageClassifier {
 public:
  VitClassifier(const VitClassifier&) = delete;
  VitClassifier& operator=(const VitClassifier&) = delete;

  // Random initialisation as Hugging Face ViTPreTrainedModel._init_weights: truncated
  // normal(0, initializer_range) for linears, the patch projection, CLS token and position
  // embeddings, zero biases, LayerNorm weight 1 / bias 0. Seeded (same seed => same weights).
  // kInvalidArgument if `config` or `preprocessor` does not validate (FromJson rules).
  static absl::StatusOr<std::unique_ptr<VitClassifier>> Create(
      const ViTConfig& config, const ViTImageProcessorConfig& preprocessor, torch::Device device,
      uint64_t seed);
  // As above with ViTImageProcessorConfig::Default(config).
  static absl::StatusOr<std::unique_ptr<VitClassifier>> Create(const ViTConfig& config,
                                                               torch::Device device, uint64_t seed);
  // Loads config.json + model.safetensors (+ preprocessor_config.json; HF defaults, mean = std
  // = 0.5, when that file is absent) from `dir`. kNotFound if config.json or model.safetensors
  // is missing; kInvalidArgument if a config is invalid (naming the key), a tensor is missing or
  // has the wrong shape (naming the tensor), or the file is malformed.
  static absl::StatusOr<std::unique_ptr<VitClassifier>> Load(const std::string& dir,
                                                             torch::Device device);
  // Whether `config` (a parsed config.json) describes this family:
  // architectures[0] == "ViTForImageClassification" or model_type == "vit".
  static bool Recognises(const nlohmann::json& config);

  // Model.
  ModelFamily family() const override { return ModelFamily::kImageClassifier; }
  std::string architecture() const override { return "ViTForImageClassification"; }
  int64_t num_parameters() const override;
  torch::Device device() const override { return device_; }
  // Writes config.json, model.safetensors (in config.torch_dtype; enabled LoRA factors folded
  // into the weights) and preprocessor_config.json. kNotFound if `dir` does not exist.
  absl::Status Save(const std::string& dir) const override;
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device device) const override;
  const ImageClassifier* AsImageClassifier() const override { return this; }
  // Typed clone (parameters, requires_grad flags, LoRA state and train/eval mode copied).
  std::unique_ptr<VitClassifier> CloneVit(torch::Device device) const;

  // ImageClassifier (inference mode, no autograd; inputs are moved to device()).
  //   images: [B, C, H, W] float32 in [0, 1]; returns [B, L] float32 logits.
  torch::Tensor ClassifyLogits(const torch::Tensor& images) const override;
  //   images: [B, C, H, W] float32 in [0, 1]; returns [B, D] float32 (final-layernormed CLS).
  torch::Tensor Features(const torch::Tensor& images) const override;
  int64_t num_classes() const override { return config().num_labels(); }
  std::vector<int64_t> forgotten_classes() const override { return config().forgotten_classes; }
  // Records `classes` (plus those already recorded) as forgotten; kInvalidArgument for an id that
  // is not a class of the model.
  absl::Status AddForgottenClasses(const std::vector<int64_t>& classes);
  // id2label[id], or the id as text when out of range.
  std::string class_name(int64_t id) const override;
  ImageSpec image_spec() const override;

  // How many adapter versions (vit_adapter.h) this model stacks on the last full-weights version
  // of its chain: 0 for weights loaded from model.safetensors, the parent's + 1 for a model
  // loaded by LoadVitAdapter. Kept by CloneVit; not saved (Save folds everything: 0 again).
  // GS-LoRA's merge_after_tasks reads it.
  int64_t adapter_chain_length() const { return adapter_chain_length_; }
  void set_adapter_chain_length(int64_t n) { adapter_chain_length_ = n; }

  const ViTConfig& config() const { return module_->config(); }
  const ViTImageProcessorConfig& preprocessor() const { return module_->preprocessor(); }
  ViTForImageClassification& module() { return module_; }
  const ViTForImageClassification& module() const { return module_; }

 private:
  VitClassifier(ViTForImageClassification module, torch::Device device);

  ViTForImageClassification module_;
  torch::Device device_;
  int64_t adapter_chain_length_ = 0;
};

}  // namespace unlearning::core
