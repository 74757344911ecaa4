// FLAT (Wang et al., ICLR 2025): LLM unlearning by loss adjustment with only
// forget data and template answers (METHODS.md §1). Per step, the forget
// answers and template answers of the same prompts are scored by their mean
// token probability P̄, and the negated f-GAN bound −g*(P̄e) + f*(g*(P̄f)) is
// minimised (per example, averaged; or the reference code's batch aggregation
// when reference_code_aggregation is set).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/losses.h"
#include "core/methods/text_method.h"

namespace unlearning::core {

// The built-in refusal template pool (used when the request has no templates,
// and in addition to them when use_builtin_templates is true).
const std::vector<std::string>& BuiltinRefusalTemplates();

struct FlatParams {
  TextTrainingOptions training;
  FDivergence divergence = FDivergence::kKl;
  bool reference_code_aggregation = false;
  bool use_builtin_templates = true;
};

class FlatMethod : public TextMethod {
 public:
  static constexpr const char* kName = "flat";
  static constexpr double kDefaultLearningRate = 1e-4;
  static constexpr int64_t kDefaultEpochs = 10;

  // Parses and validates `params` (kInvalidArgument naming the bad key).
  static absl::StatusOr<FlatParams> ParseParams(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit FlatMethod(const FlatParams& params);

  std::string name() const override { return kName; }
  nlohmann::json EffectiveParams() const override;
  absl::Status CheckData(const ErasureData& data) const override;

  // The template answer paired with each forget example in the last Run() (for
  // tests/audit).
  const std::vector<std::string>& paired_templates() const { return paired_templates_; }

  // The template pool a request with `request_templates` trains with.
  std::vector<std::string> TemplatePool(const std::vector<std::string>& request_templates) const;

 protected:
  absl::Status Prepare(const CausalLm& model, const CausalLm* reference, const ErasureData& data,
                       const std::vector<std::vector<int64_t>>& schedule) override;
  absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                         const std::vector<int64_t>& forget_indices) override;

 private:
  FlatParams params_;
  std::vector<std::string> paired_templates_;
  std::vector<EncodedExample> forget_;
  std::vector<EncodedExample> template_;
};

}  // namespace unlearning::core
