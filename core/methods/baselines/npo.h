// Negative preference optimisation (Zhang et al. 2024; METHODS.md §5) against
// the frozen pre-unlearning model: −(2/β)·mean log σ(−β·(log π_θ(y|x) − log
// π_ref(y|x))) with summed-token sequence log-probabilities, plus an optional
// retain_weight·CE(retain) term (NPO+GD).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/text_method.h"

namespace unlearning::core {

struct NpoParams {
  TextTrainingOptions training;
  double beta = 0.1;           // (0, 10]
  double retain_weight = 0.0;  // [0, 100]; 0 disables the retain term
};

class NpoMethod : public TextMethod {
 public:
  static constexpr const char* kName = "npo";
  static constexpr double kDefaultLearningRate = 5e-5;
  static constexpr int64_t kDefaultEpochs = 5;

  static absl::StatusOr<NpoParams> ParseParams(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit NpoMethod(const NpoParams& params) : TextMethod(params.training), params_(params) {}

  std::string name() const override { return kName; }
  nlohmann::json EffectiveParams() const override;
  // Also requires a retain set when retain_weight > 0.
  absl::Status CheckData(const ErasureData& data) const override;

 protected:
  // Precomputes log π_ref(y|x) of every forget example with the frozen
  // reference (no grad).
  absl::Status Prepare(const CausalLm& model, const CausalLm* reference, const ErasureData& data,
                       const std::vector<std::vector<int64_t>>& schedule) override;
  absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                         const std::vector<int64_t>& forget_indices) override;

 private:
  NpoParams params_;
  std::vector<EncodedExample> forget_;
  std::vector<EncodedExample> retain_;
  std::vector<std::vector<int64_t>> retain_schedule_;
  std::vector<float> reference_logprob_;  // per forget example
};

}  // namespace unlearning::core
