// Two-sample Kolmogorov-Smirnov test, for the "as if never trained" figures (TOFU forget quality
// and the forget-vs-holdout comparison): the statistic D, the sample sizes and the two-sided
// p-value, as scipy.stats.ks_2samp computes them by default (method "auto": exact for small
// samples, asymptotic otherwise).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace unlearning::core {

struct KsResult {
  double d = 0.0;  // sup_x |F_a(x) - F_b(x)| of the two empirical CDFs, in [0, 1]
  double p = 1.0;  // two-sided p-value of H0 "same distribution"
  int64_t n = 0;   // |a|
  int64_t m = 0;   // |b|
  bool exact = true;
};

// Ties are handled as ks_2samp does (both CDFs step at a shared value together). The p-value is
// exact (lattice-path count, as scipy's "exact" method) when max(n, m) <= kKsExactMax, otherwise
// the asymptotic Kolmogorov distribution of sqrt(nm/(n+m))·D. kInvalidArgument if a sample is
// empty or holds a NaN.
inline constexpr int64_t kKsExactMax = 10000;
absl::StatusOr<KsResult> KsTwoSample(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace unlearning::core
