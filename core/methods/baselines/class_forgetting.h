// Class-forgetting baseline for image classifiers (METHODS.md §5, "GA + retain CE"): per step,
// minimise retain_weight · CE(replay batch) − forget_weight · CE(forget batch) over every weight
// of a copy of the classifier. Forget samples are the forgotten classes' samples the model keeps
// (probes/train-*.idx); the replay set is `replay_per_class` samples of every other class from
// the same store. A full-weights artifact. It exists so that the vision family works end to end
// and as the yardstick GS-LoRA is compared with.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/method.h"

namespace unlearning::core {

struct ClassForgettingParams {
  double learning_rate = 1e-4;     // (0, 1]
  int64_t steps = 60;              // [1, 100000]
  int64_t batch_size = 64;         // [1, 4096], for each of the forget and replay batches
  double forget_weight = 1.0;      // (0, 100]
  double retain_weight = 1.0;      // [0, 100]
  int64_t replay_per_class = 200;  // [1, 100000]; a request's classes.replay_per_class wins
  double max_grad_norm = 1.0;      // [0, 1e6]; 0 disables clipping
  double weight_decay = 0.0;       // [0, 1]
  uint64_t seed = 0;
};

class ClassForgettingMethod : public UnlearningMethod {
 public:
  static constexpr const char* kName = "class_forgetting";
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit ClassForgettingMethod(ClassForgettingParams params) : params_(params) {}
  std::string name() const override { return kName; }
  ModelFamily family() const override { return ModelFamily::kImageClassifier; }
  nlohmann::json EffectiveParams() const override;
  absl::Status CheckData(const ErasureData& data) const override;
  int64_t TotalSteps(const ErasureData& data) const override { return params_.steps; }
  absl::StatusOr<Candidate> Run(const MethodContext& ctx) override;

 private:
  ClassForgettingParams params_;
};

}  // namespace unlearning::core
