#include "core/verify/auc.h"

#include <cmath>
#include <limits>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::unlearning::testing::StatusIs;

// Brute force over all pairs: the definition the rank formula must reproduce.
double PairwiseAuc(const std::vector<double>& pos, const std::vector<double>& neg) {
  double wins = 0;
  for (double p : pos) {
    for (double n : neg) wins += p > n ? 1.0 : (p == n ? 0.5 : 0.0);
  }
  return wins / static_cast<double>(pos.size() * neg.size());
}

TEST(AucTest, HandComputedValues) {
  UNL_ASSERT_OK_AND_ASSIGN(double perfect, RocAuc({3, 4, 5}, {0, 1, 2}));
  EXPECT_DOUBLE_EQ(perfect, 1.0);
  UNL_ASSERT_OK_AND_ASSIGN(double inverted, RocAuc({0, 1}, {5, 6, 7}));
  EXPECT_DOUBLE_EQ(inverted, 0.0);
  // pos {1, 3}, neg {2}: pairs (1>2)=0, (3>2)=1 -> 0.5.
  UNL_ASSERT_OK_AND_ASSIGN(double half, RocAuc({1, 3}, {2}));
  EXPECT_DOUBLE_EQ(half, 0.5);
  // pos {0.8, 0.4, 0.6}, neg {0.5, 0.2}: wins 0.8>both(2), 0.4>0.2(1),
  // 0.6>both(2) = 5/6.
  UNL_ASSERT_OK_AND_ASSIGN(double five_sixths, RocAuc({0.8, 0.4, 0.6}, {0.5, 0.2}));
  EXPECT_DOUBLE_EQ(five_sixths, 5.0 / 6.0);
}

TEST(AucTest, TiesCountHalf) {
  UNL_ASSERT_OK_AND_ASSIGN(double all_tied, RocAuc({1, 1, 1}, {1, 1}));
  EXPECT_DOUBLE_EQ(all_tied, 0.5);
  // pos {1, 2}, neg {1, 0}: (1vs1)=0.5, (1vs0)=1, (2vs1)=1, (2vs0)=1 -> 3.5/4.
  UNL_ASSERT_OK_AND_ASSIGN(double with_tie, RocAuc({1, 2}, {1, 0}));
  EXPECT_DOUBLE_EQ(with_tie, 3.5 / 4.0);
}

TEST(AucTest, MatchesPairwiseDefinitionOnIrregularData) {
  const std::vector<double> pos = {0.3, 0.7, 0.7, 0.1, 0.9, 0.5, 0.5, 0.2};
  const std::vector<double> neg = {0.5, 0.4, 0.7, 0.0, 0.6, 0.1};
  UNL_ASSERT_OK_AND_ASSIGN(double auc, RocAuc(pos, neg));
  EXPECT_NEAR(auc, PairwiseAuc(pos, neg), 1e-12);
  UNL_ASSERT_OK_AND_ASSIGN(double swapped, RocAuc(neg, pos));
  EXPECT_NEAR(auc + swapped, 1.0, 1e-12);  // AUC(neg, pos) = 1 - AUC(pos, neg)
}

TEST(AucTest, RejectsEmptyAndNan) {
  EXPECT_THAT(RocAuc({}, {1}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(RocAuc({1}, {}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(RocAuc({std::nan("")}, {1}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("NaN")));
}

}  // namespace
}  // namespace unlearning::core
