// KsTwoSample against scipy.stats.ks_2samp (scipy 1.10.1, Debian python3-scipy): the golden values
// are printed by tests/golden/gen_golden_ks.py.
#include "core/verify/ks.h"

#include <cmath>
#include <vector>

#include <gtest/gtest.h>

namespace unlearning::core {
namespace {

struct Case {
  const char* name;
  std::vector<double> a;
  std::vector<double> b;
  double d;
  double p;
};

std::vector<double> Range(int n, double offset, double step) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(offset + i * step);
  return v;
}

TEST(KsTwoSample, MatchesScipy) {
  std::vector<double> one_vs_40;
  for (int i = 0; i < 40; ++i) one_vs_40.push_back(i / 40.0);
  const Case cases[] = {
      {"disjoint_3_4", {1, 2, 3}, {4, 5, 6, 7}, 1.0, 0.05714285714285715},
      {"equal_5", {1, 2, 3, 4, 5}, {1, 2, 3, 4, 5}, 0.0, 1.0},
      {"ties", {1, 1, 2, 2, 3}, {1, 2, 2, 3, 3, 3}, 0.3, 0.8961038961038962},
      {"shift_20_30", Range(20, 0.0, 0.1), Range(30, 0.5, 0.07), 0.31666666666666665,
       0.15614190473092612},
      {"interleave_32", Range(32, 0.0, 2.0), Range(32, 1.0, 2.0), 0.03125, 1.0},
      {"one_vs_40", {0.5}, one_vs_40, 0.5, 1.0},
      {"block_32_32", Range(32, 0.0, 1.0), Range(32, 12.0, 1.0), 0.375, 0.021411615091346068},
  };
  for (const Case& c : cases) {
    absl::StatusOr<KsResult> r = KsTwoSample(c.a, c.b);
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    EXPECT_NEAR(r->d, c.d, 1e-12) << c.name;
    EXPECT_NEAR(r->p, c.p, 1e-9) << c.name;
    EXPECT_EQ(r->n, static_cast<int64_t>(c.a.size())) << c.name;
    EXPECT_EQ(r->m, static_cast<int64_t>(c.b.size())) << c.name;
    EXPECT_TRUE(r->exact) << c.name;
  }
}

TEST(KsTwoSample, IsSymmetric) {
  const std::vector<double> a = Range(17, 0.0, 0.3);
  const std::vector<double> b = Range(23, 1.0, 0.2);
  absl::StatusOr<KsResult> ab = KsTwoSample(a, b);
  absl::StatusOr<KsResult> ba = KsTwoSample(b, a);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_DOUBLE_EQ(ab->d, ba->d);
  EXPECT_NEAR(ab->p, ba->p, 1e-12);
}

TEST(KsTwoSample, LargeSamplesUseTheAsymptoticDistribution) {
  // Same distribution on a fine grid: D tiny, p near 1; shifted: p tiny.
  absl::StatusOr<KsResult> same =
      KsTwoSample(Range(12000, 0.0, 1.0), Range(11000, 0.5, 12000.0 / 11000));
  ASSERT_TRUE(same.ok());
  EXPECT_FALSE(same->exact);
  EXPECT_GT(same->p, 0.9);
  absl::StatusOr<KsResult> shifted = KsTwoSample(Range(12000, 0.0, 1.0), Range(11000, 3000.0, 1.0));
  ASSERT_TRUE(shifted.ok());
  EXPECT_LT(shifted->p, 1e-10);
}

TEST(KsTwoSample, RejectsEmptyAndNan) {
  EXPECT_FALSE(KsTwoSample({}, {1.0}).ok());
  EXPECT_FALSE(KsTwoSample({1.0}, {}).ok());
  EXPECT_FALSE(KsTwoSample({1.0, std::nan("")}, {1.0}).ok());
}

}  // namespace
}  // namespace unlearning::core
