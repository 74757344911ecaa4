// Class-forgetting baselines for image classifiers: full fine-tuning of every weight of a copy of
// the classifier, one implementation in three modes, each registered under its own name:
//   class_forgetting  (kGradientAscent; METHODS.md §5, "GA + retain CE", the family's
//                      gradient-ascent baseline): per step minimise
//                      retain_weight · CE(replay batch) − forget_weight · CE(forget batch);
//   retain_finetune   (kRetainFinetune): CE(replay batch) only, i.e. fine-tuning on the retained
//                      classes; the forgotten classes go only as far as the head forgets them;
//   l2_finetune       (kL2Finetune): CE(replay batch) + l2_weight · Σ_θ ‖θ − θ_parent‖², the
//                      L2-regularised fine-tuning of GS-LoRA's comparison tables (L2 toward the
//                      weights before the request).
// Forget samples are the forgotten classes' samples the model keeps (probes/train-*.idx); the
// replay set is `replay_per_class` samples of every class neither this request nor an earlier one
// removed, from the same store (class_replay.h, the same selection GS-LoRA uses). A full-weights
// artifact. It exists so that the vision family works end to end and as the yardstick GS-LoRA is
// compared with (tests/behaviour/gs_lora_behaviour.cc, the DISABLED_Baselines suite).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/method.h"

namespace unlearning::core {

enum class ClassForgettingMode { kGradientAscent, kRetainFinetune, kL2Finetune };

struct ClassForgettingParams {
  ClassForgettingMode mode = ClassForgettingMode::kGradientAscent;
  double learning_rate = 1e-4;     // (0, 1]
  int64_t steps = 60;              // [1, 100000]
  int64_t batch_size = 64;         // [1, 4096], for each of the forget and replay batches
  double forget_weight = 1.0;      // (0, 100]; kGradientAscent only
  double l2_weight = 1.0;          // [0, 1e6]; kL2Finetune only
  double retain_weight = 1.0;      // [0, 100]
  int64_t replay_per_class = 200;  // [1, 100000]; a request's classes.replay_per_class wins
  double max_grad_norm = 1.0;      // [0, 1e6]; 0 disables clipping
  double weight_decay = 0.0;       // [0, 1]
  uint64_t seed = 0;
};

class ClassForgettingMethod : public UnlearningMethod {
 public:
  static constexpr const char* kName = "class_forgetting";
  static constexpr const char* kRetainFinetuneName = "retain_finetune";
  static constexpr const char* kL2FinetuneName = "l2_finetune";
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> CreateRetainFinetune(
      const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> CreateL2Finetune(
      const nlohmann::json& params);
  static const char* NameOf(ClassForgettingMode mode);

  explicit ClassForgettingMethod(ClassForgettingParams params) : params_(params) {}
  std::string name() const override { return NameOf(params_.mode); }
  ModelFamily family() const override { return ModelFamily::kImageClassifier; }
  nlohmann::json EffectiveParams() const override;
  absl::Status CheckData(const ErasureData& data) const override;
  int64_t TotalSteps(const ErasureData& data) const override { return params_.steps; }
  absl::StatusOr<Candidate> Run(const MethodContext& ctx) override;

 private:
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> CreateImpl(const nlohmann::json& params,
                                                                      ClassForgettingMode mode);
  ClassForgettingParams params_;
};

}  // namespace unlearning::core
