// FLAT (Wang et al., ICLR 2025): LLM unlearning by loss adjustment with only
// forget data and template answers (METHODS.md §1). Per step, the forget
// answers and "good" answers of the batch are scored by their mean token
// probability P̄, and the negated f-GAN bound −g*(P̄e) + f*(g*(P̄f)) is
// minimised (per example, averaged; or the reference code's batch aggregation
// when reference_code_aggregation is set).
//
// Good answers are template (refusal) answers to the forget prompts by default: one drawn
// uniformly from the pool for every forget example at every step (the released code draws per
// item each time it is loaded). good_answers = "retain" uses retain-set records instead (one per
// forget example, TOFU's pairing), as the authors' released Harry Potter path trains the good term
// on generic text: that run is NOT forget-only, and its candidate says so (facts.forget_only).
//
// Learning-rate schedule: the authors' (warm-up over the first epoch, max(2, steps per epoch)
// steps, then linear decay to 0), or constant.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/losses.h"
#include "core/methods/text_method.h"

namespace unlearning::core {

// The built-in refusal template pool (used when the request has no templates,
// and in addition to them when use_builtin_templates is true). At least 50 entries.
const std::vector<std::string>& BuiltinRefusalTemplates();

enum class FlatGoodAnswers { kTemplates, kRetain };
enum class FlatSchedule { kWarmupLinear, kConstant };

struct FlatParams {
  TextTrainingOptions training;
  FDivergence divergence = FDivergence::kKl;
  bool reference_code_aggregation = false;
  bool use_builtin_templates = true;
  FlatGoodAnswers good_answers = FlatGoodAnswers::kTemplates;
  FlatSchedule schedule = FlatSchedule::kWarmupLinear;
};

class FlatMethod : public TextMethod {
 public:
  static constexpr const char* kName = "flat";
  // Chosen on the demo LM by the shared learning-rate sweep of
  // tests/behaviour/text_unlearning_test.cc (bar (a)): forget-only at 10 epochs, 5e-5 leaves the
  // forget set at 72.5% and the retain set at 91.7% of before; 6e-5 (55% / 82%) is the largest
  // grid value keeping retain >= 80%, 1e-4 (the old default) collapses the model (2.6% / 7.9%).
  // The authors' 1e-5 (for 7B models) barely moves the demo (99.6% / 100%).
  static constexpr double kDefaultLearningRate = 5e-5;
  static constexpr int64_t kDefaultEpochs = 10;

  // Parses and validates `params` (kInvalidArgument naming the bad key).
  static absl::StatusOr<FlatParams> ParseParams(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit FlatMethod(const FlatParams& params);

  std::string name() const override { return kName; }
  nlohmann::json EffectiveParams() const override;
  absl::Status CheckData(const ErasureData& data) const override;

  // The template pool a request with `request_templates` trains with.
  std::vector<std::string> TemplatePool(const std::vector<std::string>& request_templates) const;

  // For tests and audit, of the last Run(): the pool, and for every step the pool index drawn for
  // each forget example of the batch (empty with good_answers = retain).
  const std::vector<std::string>& template_pool() const { return pool_; }
  const std::vector<std::vector<int64_t>>& template_draws() const { return draws_; }

 protected:
  absl::Status Prepare(const CausalLm& model, const CausalLm* reference, const ErasureData& data,
                       const std::vector<std::vector<int64_t>>& schedule) override;
  absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                         const std::vector<int64_t>& forget_indices) override;
  OptimizerOptions Schedule(int64_t total_steps, int64_t steps_per_epoch) const override;
  absl::StatusOr<Candidate> MakeCandidate(const MethodContext& ctx,
                                          std::unique_ptr<CausalLm> working) override;

 private:
  // The good-answer batch of a step: templates drawn now for the forget prompts, or the step's
  // retain records.
  TokenBatch GoodBatch(const CausalLm& model, int64_t step,
                       const std::vector<int64_t>& forget_indices);

  FlatParams params_;
  std::vector<std::string> pool_;
  std::vector<std::vector<int64_t>> draws_;
  std::mt19937_64 template_rng_;
  std::vector<TextExample> forget_examples_;
  std::vector<EncodedExample> forget_;
  std::vector<EncodedExample> retain_;
  std::vector<std::vector<int64_t>> retain_schedule_;
};

}  // namespace unlearning::core
