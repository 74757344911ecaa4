// Gradient ascent on the forget set (baseline, METHODS.md §5): minimise
// −CE(forget). Unbounded below; known to collapse the model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/text_method.h"

namespace unlearning::core {

class GradientAscentMethod : public TextMethod {
 public:
  static constexpr const char* kName = "gradient_ascent";
  static constexpr double kDefaultLearningRate = 2e-5;
  static constexpr int64_t kDefaultEpochs = 3;

  static absl::StatusOr<TextTrainingOptions> ParseParams(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit GradientAscentMethod(const TextTrainingOptions& training) : TextMethod(training) {}

  std::string name() const override { return kName; }
  nlohmann::json EffectiveParams() const override;

 protected:
  absl::Status Prepare(const CausalLm& model, const CausalLm* reference, const ErasureData& data,
                       const std::vector<std::vector<int64_t>>& schedule) override;
  absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                         const std::vector<int64_t>& forget_indices) override;

 private:
  std::vector<EncodedExample> forget_;
};

}  // namespace unlearning::core
