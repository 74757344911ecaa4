#include "core/verify/ks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "absl/status/status.h"

namespace unlearning::core {
namespace {

// P(D_nm >= k / (n·m)) by counting the monotone lattice paths from (0, 0) to (n, m) that stay
// strictly inside |i·m - j·n| < k, as fractions of all paths (q(i, j) = inside paths to (i, j) /
// C(i + j, i), so q(i, j) = q(i - 1, j)·i/(i + j) + q(i, j - 1)·j/(i + j): no overflow).
double ExactTwoSidedP(int64_t n, int64_t m, int64_t k) {
  std::vector<double> q(static_cast<size_t>(m) + 1, 0.0);
  auto inside = [&](int64_t i, int64_t j) { return std::llabs(i * m - j * n) < k; };
  q[0] = 1.0;  // (0, 0) is inside whenever k > 0
  for (int64_t j = 1; j <= m; ++j) q[j] = inside(0, j) ? q[j - 1] : 0.0;
  for (int64_t i = 1; i <= n; ++i) {
    q[0] = inside(i, 0) ? q[0] : 0.0;
    for (int64_t j = 1; j <= m; ++j) {
      if (!inside(i, j)) {
        q[j] = 0.0;
        continue;
      }
      const double total = static_cast<double>(i + j);
      q[j] = q[j] * (static_cast<double>(i) / total) + q[j - 1] * (static_cast<double>(j) / total);
    }
  }
  return std::clamp(1.0 - q[m], 0.0, 1.0);
}

// Kolmogorov's limiting distribution: P(K > x) = 2 Σ_{k>=1} (-1)^(k-1) exp(-2 k² x²).
double KolmogorovSurvival(double x) {
  if (x <= 0.0) return 1.0;
  if (x < 0.2) return 1.0;  // the series converges slowly here and the value is 1 to 1e-10
  double sum = 0.0;
  for (int k = 1; k <= 100; ++k) {
    const double term = std::exp(-2.0 * k * k * x * x);
    sum += (k % 2 == 1 ? term : -term);
    if (term < 1e-16) break;
  }
  return std::clamp(2.0 * sum, 0.0, 1.0);
}

}  // namespace

absl::StatusOr<KsResult> KsTwoSample(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || b.empty()) {
    return absl::InvalidArgumentError("KS test needs two non-empty samples");
  }
  for (const std::vector<double>* v : {&a, &b}) {
    for (double x : *v) {
      if (std::isnan(x)) return absl::InvalidArgumentError("KS test: a sample holds a NaN");
    }
  }
  std::vector<double> x = a;
  std::vector<double> y = b;
  std::sort(x.begin(), x.end());
  std::sort(y.begin(), y.end());
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t m = static_cast<int64_t>(y.size());
  // Walk both sorted samples; at each distinct value both CDFs take all their ties at once.
  // The largest gap, scaled by n·m, is an integer: |i·m - j·n|.
  int64_t i = 0;
  int64_t j = 0;
  int64_t k = 0;
  while (i < n || j < m) {
    const double v = (j >= m || (i < n && x[i] <= y[j])) ? x[i] : y[j];
    while (i < n && x[i] == v) ++i;
    while (j < m && y[j] == v) ++j;
    k = std::max<int64_t>(k, std::llabs(i * m - j * n));
  }
  KsResult result;
  result.n = n;
  result.m = m;
  result.d = static_cast<double>(k) / (static_cast<double>(n) * static_cast<double>(m));
  if (k == 0) {
    result.p = 1.0;
  } else if (std::max(n, m) <= kKsExactMax) {
    result.p = ExactTwoSidedP(n, m, k);
  } else {
    result.exact = false;
    const double en = std::sqrt(static_cast<double>(n) * m / static_cast<double>(n + m));
    result.p = KolmogorovSurvival(en * result.d);
  }
  return result;
}

}  // namespace unlearning::core
