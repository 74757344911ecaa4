// Area under the ROC curve, for membership-inference figures.
#pragma once

#include <vector>

#include "absl/status/statusor.h"

namespace unlearning::core {

// ROC AUC of a score separating `positives` from `negatives`, computed as the
// Mann-Whitney statistic: P(score(positive) > score(negative)) + 0.5 · P(tie),
// over all pairs. 1 = every positive scores above every negative, 0.5 =
// indistinguishable, 0 = inverted. kInvalidArgument if either set is empty or a
// score is NaN. O((m + n) log(m + n)).
absl::StatusOr<double> RocAuc(const std::vector<double>& positives,
                              const std::vector<double>& negatives);

}  // namespace unlearning::core
