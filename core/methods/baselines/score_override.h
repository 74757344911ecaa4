// Score-override baseline for class-conditional diffusion models (the diffusion family's
// yardstick before SFD): fine-tune a copy of the ε-prediction denoiser so that the forget class's
// label produces the override class, while every other label (and the unconditional branch) keeps
// the teacher's behaviour. Data-free: it never sees a real image; the training inputs are the
// teacher's own samples. A full-weights artifact (the fine-tuned denoiser, same architecture).
//
// Notation: ε_θ the student (initialised as a copy of the parent), ε_T the teacher (the parent
// itself, never modified, evaluated without gradients), ᾱ_t the scheduler's cumulative α,
// F the forget classes, o the override class, R the retained classes (all real classes not in F;
// o ∈ R), ∅ the null (unconditional) label.
//
// Pool (once per run, cached for the run): P_k = `pool_per_class` teacher samples of every class
// k ∈ F ∪ R, drawn with DDIM (`pool_steps` steps, η = 0) and classifier-free guidance
// `pool_guidance` (the verification protocol's 3.0 by default), seeded by `seed`.
//
// Each step draws t ~ U{0..T-1}, ε ~ N(0, I), x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, and minimises
//
//   L = E_{f∈F, x0 ~ P_f ∪ P_{y}} || ε_θ(x_t, t, f) − ε_T(x_t, t, y) ||²          (override)
//     + λ_retain · E_{r∈R, x0 ~ P_r} || ε_θ(x_t, t, r) − ε_T(x_t, t, r) ||²      (retain replay)
//     + λ_null   · E_{r∈R, x0 ~ P_r} || ε_θ(x_t, t, ∅) − ε_T(x_t, t, ∅) ||²      (unconditional)
//
// where y = o when the request names an override class. Without one, y is drawn uniformly from R
// for every sample (SFD's pseudo_label_type = rand, METHODS.md §3): the forget label then yields a
// mix of the retained classes. The override term's x0 is a forget-class sample or a sample of y
// with probability 1/2 each, so the student learns the teacher's y-conditional score both on the
// states a forget-class trajectory passes through and on the states the y-trajectory ends in.
// Each term averages over `batch_size` samples per step (3 · batch_size UNet rows per step for
// the student with gradients, as many for the teacher without). Classifier-free guidance at
// sampling time, ε_∅ + s (ε_θ(·, f) − ε_∅), then follows the teacher's guided y-score.
//
// Optimisation: AdamW (RunTrainingLoop) with constant `learning_rate` after `warmup_steps`,
// gradient clipping at `max_grad_norm`, no weight decay. Progress, ETA and cancellation as every
// method (cancellation is also honoured while the pool is sampled).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>

#include "core/methods/method.h"

namespace unlearning::core {

struct ScoreOverrideParams {
  double learning_rate = 1e-3;  // (0, 1]
  int64_t steps = 150;          // [1, 100000]
  int64_t warmup_steps = 10;    // [0, 100000]
  int64_t batch_size = 16;      // [1, 1024], samples per loss term per step
  int64_t pool_per_class = 16;  // [1, 1024], teacher samples per class
  int64_t pool_steps = 20;      // [1, 1000], DDIM steps of the pool sampler
  double pool_guidance = 3.0;   // [0, 20], classifier-free guidance of the pool sampler
  double lambda_retain = 1.0;   // [0, 1000]
  double lambda_null = 1.0;     // [0, 1000]
  double max_grad_norm = 1.0;   // [0, 1e6]; 0 disables clipping
  uint64_t seed = 0;            // pool noise, batches, timesteps and noise
};

class ScoreOverrideMethod : public UnlearningMethod {
 public:
  static constexpr const char* kName = "score_override";
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);

  explicit ScoreOverrideMethod(ScoreOverrideParams params) : params_(params) {}
  std::string name() const override { return kName; }
  ModelFamily family() const override { return ModelFamily::kDiffusion; }
  nlohmann::json EffectiveParams() const override;
  // kInvalidArgument without generation.forget_classes, or with an override class that is also a
  // forget class.
  absl::Status CheckData(const ErasureData& data) const override;
  int64_t TotalSteps(const ErasureData& data) const override { return params_.steps; }
  absl::StatusOr<Candidate> Run(const MethodContext& ctx) override;

 private:
  ScoreOverrideParams params_;
};

}  // namespace unlearning::core
