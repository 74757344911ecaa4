// LoRA-capable linear layer, reusable by every model family (causal LM now, ViT later).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace unlearning::core {

// y = x W^T (+ b) + (alpha / r) * dropout(x) A^T B^T when LoRA is enabled.
// Parameters: "weight" [out, in], optional "bias" [out], and with LoRA "lora_A" [r, in]
// (kaiming-uniform init) and "lora_B" [out, r] (zeros), so enabling LoRA does not change outputs.
class LoraLinearImpl : public torch::nn::Module {
 public:
  LoraLinearImpl(int64_t in_features, int64_t out_features, bool bias);

  //   x: [..., in] float32; returns [..., out] float32
  torch::Tensor forward(const torch::Tensor& x);

  // Adds LoRA factors (replacing existing ones). rank >= 1.
  void EnableLora(int64_t rank, double alpha, double dropout = 0.0);
  // Folds B A * scale into `weight` and removes the LoRA factors.
  void MergeLora();
  bool lora_enabled() const { return lora_a_.defined(); }

  torch::Tensor& weight() { return weight_; }
  torch::Tensor& lora_a() { return lora_a_; }
  torch::Tensor& lora_b() { return lora_b_; }
  double lora_scale() const { return scale_; }
  double lora_dropout() const { return dropout_; }

 private:
  int64_t in_features_;
  int64_t out_features_;
  torch::Tensor weight_;
  torch::Tensor bias_;
  torch::Tensor lora_a_;
  torch::Tensor lora_b_;
  double scale_ = 0.0;
  double dropout_ = 0.0;
};
TORCH_MODULE(LoraLinear);

}  // namespace unlearning::core

namespace unlearning::core {

// The weights of `module` as a model directory stores them: every parameter but the LoRA factors,
// with each enabled LoRA pair of `linears` (HF name, layer) folded into "<name>.weight", on the CPU
// in `dtype`. The saved directory is then a plain Hugging Face checkpoint whatever the training
// state. No autograd.
std::map<std::string, torch::Tensor> MergedWeights(
    const torch::nn::Module& module, const std::vector<std::pair<std::string, LoraLinear>>& linears,
    torch::ScalarType dtype);

}  // namespace unlearning::core
