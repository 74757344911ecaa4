// Verification of a class-forgetting job on a class-conditional generator (VERIFICATION.md
// "Diffusion models"): samples for every class with a fixed seed, judged by a classifier the
// model ships (ModelProbes::judge, an ImageClassifier over the same classes).
//   forget_rate      share of forget-class samples the judge assigns to a forget class
//   override_rate    share of forget-class samples the judge assigns to the override class
//                    (only when the request names one)
//   retain_fidelity  share of the other classes' samples the judge assigns to their own class
//   feature_fd       Fréchet distance in the judge's feature space between the retained classes'
//                    samples before and after (0 = the same distribution)
//   images_per_second  the sampler's throughput on the protocol (wall clock, so it varies with
//                    load; a one-step generator's is many times its teacher's)
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "core/models/capabilities.h"
#include "core/verify/verifier.h"

namespace unlearning::core {

// The pinned sampling protocol of the figures (part of the evaluation suite).
struct GenerationProtocol {
  int64_t samples_per_class = 20;
  int64_t steps = 25;
  double guidance_scale = 3.0;
  uint64_t seed = 1234;
};

// Fréchet distance between Gaussians fitted to two feature sets ([n, d], [m, d]), computed with
// the eigen-decomposition of the symmetric product (n, m >= 2).
double FrechetDistance(const torch::Tensor& a, const torch::Tensor& b);

// The diffusion family's verifier. Default checks: forget_rate at most 0.2 (absolute: the share of
// samples still recognisable as the forgotten class), retain_fidelity ratio at least 0.8.
class GenerationVerifier : public Verifier {
 public:
  explicit GenerationVerifier(GenerationProtocol protocol = {}) : protocol_(protocol) {}
  std::vector<std::string> FigureNames() const override;
  std::vector<Threshold> DefaultThresholds() const override;
  absl::StatusOr<VerificationReport> Verify(const VerificationInputs& inputs) const override;

 private:
  GenerationProtocol protocol_;
};

}  // namespace unlearning::core
