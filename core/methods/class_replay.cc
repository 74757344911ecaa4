#include "core/methods/class_replay.h"

#include <map>

#include <ATen/ATen.h>

namespace unlearning::core {

torch::Tensor SelectClasses(const torch::Tensor& labels, const std::vector<int64_t>& classes,
                            bool in, torch::Generator& gen) {
  torch::Tensor mask = torch::zeros_like(labels, torch::kBool);
  for (int64_t c : classes) mask = mask.logical_or(labels.eq(c));
  if (!in) mask = mask.logical_not();
  torch::Tensor idx = mask.nonzero().squeeze(1);
  return idx.index_select(0, torch::randperm(idx.size(0), gen));
}

torch::Tensor CapPerClass(const torch::Tensor& labels, const torch::Tensor& order,
                          int64_t per_class) {
  std::map<int64_t, int64_t> taken;
  std::vector<int64_t> keep;
  const torch::Tensor ordered = labels.index_select(0, order).contiguous();
  for (int64_t i = 0; i < order.size(0); ++i) {
    if (taken[ordered[i].item<int64_t>()]++ < per_class) keep.push_back(order[i].item<int64_t>());
  }
  return torch::tensor(keep, torch::kLong);
}

}  // namespace unlearning::core
