// Sample selection shared by the class-forgetting methods (the class_forgetting baseline and
// GS-LoRA): the samples of the forgotten classes, and a per-class-capped replay set of the others.
//
// Shapes: N = samples.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace unlearning::core {

// Indices of the samples whose label is in `classes` (in = true) or not in them (in = false), in a
// random order drawn from `gen`.
//   labels: [N] int64; returns [M] int64.
torch::Tensor SelectClasses(const torch::Tensor& labels, const std::vector<int64_t>& classes,
                            bool in, torch::Generator& gen);

// The first `per_class` indices of `order` for every class present, in `order`'s order.
//   labels: [N] int64; order: [M] int64 indices into labels; returns [K] int64.
torch::Tensor CapPerClass(const torch::Tensor& labels, const torch::Tensor& order,
                          int64_t per_class);

}  // namespace unlearning::core
