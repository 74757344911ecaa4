// Verification of a class-forgetting job on an image classifier (VERIFICATION.md "Vision
// classifiers"): accuracies on the forgotten and the remaining classes of a labelled test split,
// their harmonic mean, a loss-based membership-inference AUC on the forgotten classes, and the
// linear CKA of the penultimate features before and after (does the representation still hold
// what the head no longer predicts?).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/data/idx.h"
#include "core/models/capabilities.h"
#include "core/verify/representation.h"  // LinearCka
#include "core/verify/verifier.h"

namespace unlearning::core {

inline constexpr int64_t kVisionBatchSize = 256;

// Figures of one classifier on `test` (and `train` for MIA), for the classes `forget` of this
// request and the classes `old` that earlier erasures removed (disjoint from `forget`):
//   acc_f          accuracy on test samples of the forgotten classes
//   acc_r          accuracy on test samples of every other class (neither `forget` nor `old`)
//   acc_o          accuracy on test samples of the `old` classes (only when there are some)
//   mia.loss_auc   ROC AUC separating forgotten-class train samples (members) from
//                  forgotten-class test samples by -cross-entropy (1 = clearly memorised,
//                  0.5 = as if never seen); only when `train` has samples of those classes
// kInvalidArgument for a class id out of range or empty test data; kCancelled if cancelled.
absl::StatusOr<std::map<std::string, double>> ComputeVisionFigures(
    const ImageClassifier& model, const LabelledImages& test, const LabelledImages& train,
    const std::vector<int64_t>& forget, const std::vector<int64_t>& old,
    const CancellationToken* cancel);

// k-nearest-neighbour accuracy: the fraction of `query` rows ([Q, D]) whose `k` most
// cosine-similar rows of `reference` ([R, D], labels `reference_labels` [R]) vote (majority; ties
// to the lower class id) for their own label `query_labels` [Q]. NaN when Q is 0; k is capped
// at R. The representation-leak figure knn.forget ("Are We Truly Forgetting?"): a head can stop
// predicting a class whose features still cluster.
double KnnAccuracy(const torch::Tensor& reference, const torch::Tensor& reference_labels,
                   const torch::Tensor& query, const torch::Tensor& query_labels, int64_t k);

inline constexpr int64_t kVisionKnnK = 10;

// The image-classifier family's verifier. Figures: acc_f, acc_r and mia.loss_auc (before and
// after), plus h_mean = harmonic mean of acc_r(after) and acc_f(before) - acc_f(after), and
// cka.forget = LinearCka of the penultimate features before/after on forgotten-class test
// samples (both reported with before = 0 and 1 respectively), and knn.forget = KnnAccuracy
// (k = kVisionKnnK) of the forgotten-class test samples' penultimate features against the
// training probes' features under the same model (before and after; only when the model ships
// training probes). `old` = the classes the model before
// records as forgotten (ClassLabels::forgotten_classes) minus this request's. Default checks: acc_f
// ratio at most 0.2, acc_r ratio at least 0.9, and, when earlier erasures exist, acc_o at most 0.2
// (they stay in force).
class VisionVerifier : public Verifier {
 public:
  std::vector<std::string> FigureNames() const override;
  std::vector<Threshold> DefaultThresholds() const override;
  absl::StatusOr<VerificationReport> Verify(const VerificationInputs& inputs) const override;
  // mia.* rest on the test split the model never trained on (T1); the others on the two models.
  Tier FigureTier(const std::string& figure) const override;
};

}  // namespace unlearning::core
