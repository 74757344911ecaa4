#include "core/models/lora.h"

#include <cmath>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/init.h>

#include "core/io/files.h"

namespace unlearning::core {

LoraLinearImpl::LoraLinearImpl(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features) {
  // Zeros: the owning model initialises (Create) or loads (Load) the weights.
  weight_ = register_parameter("weight", torch::zeros({out_features, in_features}));
  if (bias) bias_ = register_parameter("bias", torch::zeros({out_features}));
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  // x: [..., in] -> y: [..., out]
  torch::Tensor y = at::linear(x, weight_, bias_);
  if (!lora_a_.defined()) return y;
  torch::Tensor h = x;
  if (dropout_ > 0.0 && is_training() && !c10::InferenceMode::is_enabled()) {
    h = at::dropout(x, dropout_, /*train=*/true);
  }
  // [..., in] -> [..., r] -> [..., out]
  torch::Tensor delta = at::linear(at::linear(h, lora_a_), lora_b_);
  return y.add_(delta, scale_);
}

void LoraLinearImpl::EnableLora(int64_t rank, double alpha, double dropout) {
  TORCH_CHECK(rank >= 1, "LoRA rank must be >= 1, got ", rank);
  if (lora_a_.defined()) {
    parameters_.erase("lora_A");
    parameters_.erase("lora_B");
  }
  const auto options = weight_.options();
  torch::Tensor a = torch::empty({rank, in_features_}, options);
  {
    torch::NoGradGuard no_grad;
    // As PEFT: kaiming-uniform(a = sqrt(5)) for A, zeros for B.
    torch::nn::init::kaiming_uniform_(a, std::sqrt(5.0));
  }
  lora_a_ = register_parameter("lora_A", a);
  lora_b_ = register_parameter("lora_B", torch::zeros({out_features_, rank}, options));
  scale_ = alpha / static_cast<double>(rank);
  dropout_ = dropout;
}

void LoraLinearImpl::MergeLora() {
  if (!lora_a_.defined()) return;
  {
    torch::NoGradGuard no_grad;
    // weight [out, in] += scale * B [out, r] @ A [r, in]
    weight_.add_(at::matmul(lora_b_, lora_a_), scale_);
  }
  parameters_.erase("lora_A");
  parameters_.erase("lora_B");
  lora_a_ = torch::Tensor();
  lora_b_ = torch::Tensor();
  scale_ = 0.0;
  dropout_ = 0.0;
}

}  // namespace unlearning::core

namespace unlearning::core {

std::map<std::string, torch::Tensor> MergedWeights(
    const torch::nn::Module& module, const std::vector<std::pair<std::string, LoraLinear>>& linears,
    torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters()) {
    if (IsLoraFactor(item.key())) continue;
    out[item.key()] = item.value().detach();
  }
  for (const auto& entry : linears) {
    LoraLinear linear = entry.second;  // a shared handle: its accessors are non-const
    if (!linear->lora_enabled()) continue;
    torch::Tensor& w = out[entry.first + ".weight"];
    w = w + at::matmul(linear->lora_b(), linear->lora_a()) * linear->lora_scale();
  }
  for (auto& [name, t] : out) t = t.to(torch::kCPU, dtype).contiguous();
  return out;
}

}  // namespace unlearning::core
