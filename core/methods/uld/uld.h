// ULD, Unlearning from Logit Difference (METHODS.md §2): the target is never trained. A small
// assistant (the target's first K blocks, frozen, with LoRA) learns the reversed objective,
//
//   L(φ) = CE(assistant; D′_f) + retain_weight · KL(U ‖ p_assistant; D′_r),
//
// i.e. it remembers the forget set (D′_f: each forget example and its paraphrased questions) and
// knows nothing else (D′_r: each forget question with its perturbed wrong answers, plus the
// request's retain examples; the uniform term covers every real token of those sequences, as the
// authors' code does). The candidate is the composite target − α·assistant
// (core/models/logit_difference.h), stored as an assistant artifact beside the target's version.
//
// A request on a version that is already a ULD composite trains a new assistant against the same
// target and stacks it: the earlier assistants stay, so earlier requests stay forgotten.
//
// Defaults: the authors' repository where paper and code differ (LoRA r 16, lora_alpha 32,
// dropout 0.05, retain weight 5; paper: r 32, α 32, β 6.5), the paper's α 0.75 and filter 1e-2,
// lr 1e-3, 10 epochs, weight decay 0.01, linear warm-up over the first 10% of steps then linear
// decay. K defaults to a quarter of the target's blocks (the paper's 8 of 32), at least 1.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/text_method.h"
#include "core/models/logit_difference.h"

namespace unlearning::core {

struct UldParams {
  TextTrainingOptions training;
  int64_t num_layers = 0;      // [0, 1e4]; 0 = a quarter of the target's blocks, at least 1
  int64_t lora_rank = 16;      // [1, 1024]
  double lora_alpha = 32.0;    // (0, 1e4]
  double lora_dropout = 0.05;  // [0, 0.9]
  double retain_weight = 5.0;  // [0, 100]
  double alpha = 0.75;         // [0, 10]: subtraction weight at inference
  double filter_rate = 1e-2;   // (0, 1]: relative-top filter at inference
  bool paraphrases = true;     // add each forget example's paraphrased questions to D′_f
  bool perturbed = true;       // add each forget question's perturbed answers to D′_r
};

class UldMethod : public TextMethod {
 public:
  static constexpr const char* kName = "uld";
  static constexpr double kDefaultLearningRate = 1e-3;
  static constexpr int64_t kDefaultEpochs = 10;

  static absl::StatusOr<UldParams> ParseParams(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit UldMethod(const UldParams& params) : TextMethod(params.training), params_(params) {}

  std::string name() const override { return kName; }
  ArtifactKind artifact_kind() const override { return ArtifactKind::kAssistant; }
  nlohmann::json EffectiveParams() const override;
  // Also requires something for the uniform term: perturbed answers or a retain set.
  absl::Status CheckData(const ErasureData& data) const override;
  // Any causal LM, including an earlier ULD composite (the assistants stack).
  absl::Status CheckParent(const Model& parent) const override { return absl::OkStatus(); }

  // The assistant configuration for `target` (K resolved).
  UldAssistantConfig AssistantConfig(const CausalLm& target) const;

 protected:
  absl::StatusOr<std::unique_ptr<CausalLm>> MakeWorkingModel(const MethodContext& ctx,
                                                             const CausalLm& target) override;
  const LanguageModel& StopProbeModel(const CausalLm& working) const override;
  absl::StatusOr<Candidate> MakeCandidate(const MethodContext& ctx,
                                          std::unique_ptr<CausalLm> working) override;
  OptimizerOptions Schedule(int64_t total_steps, int64_t steps_per_epoch) const override;
  absl::Status Prepare(const CausalLm& model, const CausalLm* reference, const ErasureData& data,
                       const std::vector<std::vector<int64_t>>& schedule) override;
  absl::StatusOr<torch::Tensor> StepLoss(CausalLm& model, int64_t step,
                                         const std::vector<int64_t>& forget_indices) override;

 private:
  UldParams params_;
  UldAssistantConfig config_;
  std::shared_ptr<const Model> parent_;       // the request's version (owning or not)
  std::unique_ptr<LogitDifferenceLm> probe_;  // parent − working assistant (stopping rule)
  std::vector<std::vector<EncodedExample>> remember_;   // per forget example: D′_f sequences
  std::vector<std::vector<EncodedExample>> perturbed_;  // per forget example: its wrong answers
  std::vector<EncodedExample> retain_;
  std::vector<std::vector<int64_t>> retain_schedule_;
};

// KL(U ‖ softmax(logits)) averaged over the positions where `mask` is true:
// −log V − mean_v log p_v per position.
//   logits: [B, T, V]; mask: [B, T] bool; returns a float32 scalar (0 if no position).
torch::Tensor UniformKl(const torch::Tensor& logits, const torch::Tensor& mask);

}  // namespace unlearning::core
