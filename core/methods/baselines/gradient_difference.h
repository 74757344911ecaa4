// Gradient difference (baseline, METHODS.md §5): −forget_weight·CE(forget) +
// retain_weight·CE(retain), with one independently drawn retain example per
// forget example.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/text_method.h"

namespace unlearning::core {

struct GradientDifferenceParams {
  TextTrainingOptions training;
  double forget_weight = 1.0;  // (0, 100]
  double retain_weight = 1.0;  // [0, 100]
};

class GradientDifferenceMethod : public TextMethod {
 public:
  static constexpr const char* kName = "gradient_difference";
  static constexpr double kDefaultLearningRate = 5e-5;
  static constexpr int64_t kDefaultEpochs = 5;

  static absl::StatusOr<GradientDifferenceParams> ParseParams(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit GradientDifferenceMethod(const GradientDifferenceParams& params)
      : TextMethod(params.training), params_(params) {}

  std::string name() const override { return kName; }
  nlohmann::json EffectiveParams() const override;
  // Also requires a non-empty retain set.
  absl::Status CheckData(const ErasureData& data) const override;

 protected:
  absl::Status Prepare(const CausalLm& model, const CausalLm* reference, const ErasureData& data,
                       const std::vector<std::vector<int64_t>>& schedule) override;
  absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                         const std::vector<int64_t>& forget_indices) override;

 private:
  GradientDifferenceParams params_;
  std::vector<EncodedExample> forget_;
  std::vector<EncodedExample> retain_;
  std::vector<std::vector<int64_t>> retain_schedule_;
};

}  // namespace unlearning::core
