// LoRA adapters on the FFN linears of a ViT image classifier, stored beside their parent version
// (ArtifactKind::kLoraAdapter; GS-LoRA, METHODS.md §4): one directory holds
//   adapter_model.safetensors "vit.encoder.layer.{i}.{intermediate,output}.dense.lora_{A,B}.weight"
//                              (A [r, in], B [out, r], float32); PEFT writes the same names with a
//                              "base_model.model." prefix
//   adapter_config.json        PEFT-style LoraConfig keys ("peft_type": "LORA", "r", "lora_alpha",
//                              "target_modules", ...) plus "unlearning_forget_classes" (this
//                              adapter's request) and "unlearning_forgotten_classes" (cumulative:
//                              the parent's and this request's)
// The servable model is the parent with y = x W^T + b + (lora_alpha / r) x A^T B^T on those
// linears. A chain (adapters on a composite) loads by folding the parent's adapters into its
// weights first, so each version's adapters apply on top of its parent's effective weights.
//
//   auto tensors = VitAdapterTensors(*composite);                  // after training
//   WriteVitAdapter(dir, tensors, VitAdapterConfig{...});
//   auto served = LoadVitAdapter(dir, *parent, torch::kCPU);      // restart / rollback
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/models/vit.h"

namespace unlearning::core {

inline constexpr const char* kVitAdapterWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kVitAdapterConfigFile = "adapter_config.json";

struct VitAdapterConfig {
  int64_t rank = 8;         // r >= 1
  double lora_alpha = 1.0;  // scale = lora_alpha / r (loralib's default alpha 1: scale 1/r)
  std::vector<int64_t> forget_classes;     // this adapter's request
  std::vector<int64_t> forgotten_classes;  // cumulative, ascending
  nlohmann::json ToJson() const;
  // kInvalidArgument naming the key for a missing/invalid "r", "lora_alpha", "peft_type" != "LORA"
  // or target modules other than the FFN linears.
  static absl::StatusOr<VitAdapterConfig> FromJson(const nlohmann::json& json);
};

// Folds every enabled LoRA pair of `vit` into its weights (a composite becomes its effective
// weights), then enables fresh rank-`rank` LoRA (A Kaiming-uniform, B = 0, scale alpha / rank) on
// both FFN linears of every block. Every parameter but the new factors is frozen
// (requires_grad false); the factors require grad. Outputs are unchanged.
void ResetFfnAdapters(VitClassifier& vit, int64_t rank, double alpha);

// The FFN adapters of `vit` by file name (CPU float32 copies, detached). Empty if none enabled.
std::map<std::string, torch::Tensor> VitAdapterTensors(const VitClassifier& vit);

// Writes adapter_model.safetensors and adapter_config.json into the existing directory `dir`.
absl::Status WriteVitAdapter(const std::string& dir,
                             const std::map<std::string, torch::Tensor>& tensors,
                             const VitAdapterConfig& config);

// The composite of `parent` (itself possibly a composite) and the adapters in `dir`, on `device`,
// frozen, in eval mode, with the config's cumulative forgotten classes recorded and
// adapter_chain_length() = the parent's + 1. kNotFound if a
// file is missing; kInvalidArgument for a malformed config, a missing, extra or misshapen tensor
// (named).
absl::StatusOr<std::unique_ptr<VitClassifier>> LoadVitAdapter(const std::string& dir,
                                                              const VitClassifier& parent,
                                                              torch::Device device);

}  // namespace unlearning::core
