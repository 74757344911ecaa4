#include "core/verify/auc.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace unlearning::core {

absl::StatusOr<double> RocAuc(const std::vector<double>& positives,
                              const std::vector<double>& negatives) {
  if (positives.empty() || negatives.empty()) {
    return absl::InvalidArgumentError("ROC AUC needs at least one positive and one negative");
  }
  // (score, is_positive), sorted by score; tied groups get their average
  // 1-based rank.
  std::vector<std::pair<double, bool>> all;
  all.reserve(positives.size() + negatives.size());
  for (double s : positives) all.emplace_back(s, true);
  for (double s : negatives) all.emplace_back(s, false);
  for (const auto& [score, positive] : all) {
    if (std::isnan(score)) return absl::InvalidArgumentError("ROC AUC: NaN score");
  }
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  double positive_rank_sum = 0.0;
  size_t i = 0;
  while (i < all.size()) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double average_rank = 0.5 * static_cast<double>(i + 1 + j);  // mean of i+1 .. j
    for (size_t k = i; k < j; ++k) {
      if (all[k].second) positive_rank_sum += average_rank;
    }
    i = j;
  }
  const double m = static_cast<double>(positives.size());
  const double n = static_cast<double>(negatives.size());
  const double u = positive_rank_sum - m * (m + 1.0) / 2.0;  // Mann-Whitney U of the positives
  return u / (m * n);
}

}  // namespace unlearning::core
