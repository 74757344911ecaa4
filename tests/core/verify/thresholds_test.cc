#include "core/verify/thresholds.h"

#include <cmath>
#include <limits>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

TEST(ThresholdsTest, EveryComparisonDecidesBothWays) {
  const std::map<std::string, double> before = {{"acc_f", 0.9}, {"acc_r", 0.8}, {"mia", 0.7}};
  const std::map<std::string, double> after = {{"acc_f", 0.09}, {"acc_r", 0.76}, {"mia", 0.5}};
  // acc_f ratio 0.1, acc_r ratio 0.95, mia 0.5 absolute.
  EXPECT_TRUE(DecideThresholds(before, after, {{"acc_f", Comparison::kRatioAtMost, 0.11}}).passed);
  EXPECT_FALSE(DecideThresholds(before, after, {{"acc_f", Comparison::kRatioAtMost, 0.09}}).passed);
  EXPECT_TRUE(DecideThresholds(before, after, {{"acc_r", Comparison::kRatioAtLeast, 0.9}}).passed);
  EXPECT_FALSE(
      DecideThresholds(before, after, {{"acc_r", Comparison::kRatioAtLeast, 0.96}}).passed);
  EXPECT_TRUE(DecideThresholds(before, after, {{"mia", Comparison::kAtMost, 0.55}}).passed);
  EXPECT_FALSE(DecideThresholds(before, after, {{"mia", Comparison::kAtMost, 0.45}}).passed);
  // Two-sided: over-unlearning (an AUC far below 0.5) fails an at-least bound.
  EXPECT_TRUE(DecideThresholds(before, after, {{"mia", Comparison::kAtLeast, 0.45}}).passed);
  EXPECT_FALSE(DecideThresholds(before, after, {{"mia", Comparison::kAtLeast, 0.55}}).passed);

  ThresholdDecision d = DecideThresholds(
      before, after,
      {{"acc_f", Comparison::kRatioAtMost, 0.2}, {"mia", Comparison::kAtLeast, 0.45}});
  ASSERT_EQ(d.checks.size(), 2u);
  EXPECT_EQ(d.checks[0], "acc_f ratio 0.100 <= 0.20: ok");
  EXPECT_EQ(d.checks[1], "mia 0.500 >= 0.45: ok");
}

TEST(ThresholdsTest, MissingFiguresFailWhenRequiredAndAreSkippedOtherwise) {
  const std::map<std::string, double> none;
  ThresholdDecision required =
      DecideThresholds(none, none, {{"acc_f", Comparison::kAtMost, 0.1, /*required=*/true}});
  EXPECT_FALSE(required.passed);
  EXPECT_EQ(required.checks[0], "acc_f missing: FAILED");
  ThresholdDecision optional =
      DecideThresholds(none, none, {{"acc_f", Comparison::kAtMost, 0.1, /*required=*/false}});
  EXPECT_TRUE(optional.passed);
  EXPECT_THAT(optional.checks[0], HasSubstr("skipped"));
  // A ratio needs the before value too.
  EXPECT_FALSE(
      DecideThresholds(none, {{"acc_f", 0.1}}, {{"acc_f", Comparison::kRatioAtMost, 0.5, true}})
          .passed);
  EXPECT_TRUE(DecideThresholds(none, none, {}).passed);
}

TEST(ThresholdsTest, NanNeverPasses) {
  const std::map<std::string, double> before = {{"x", 1.0}};
  const std::map<std::string, double> after = {{"x", std::nan("")}};
  for (Comparison c : {Comparison::kRatioAtMost, Comparison::kRatioAtLeast, Comparison::kAtMost,
                       Comparison::kAtLeast}) {
    EXPECT_FALSE(DecideThresholds(before, after, {{"x", c, 0.5}}).passed) << ComparisonName(c);
  }
}

TEST(ThresholdsTest, ValidationNamesTheBadThreshold) {
  const std::vector<std::string> known = {"acc_f", "acc_r"};
  UNL_EXPECT_OK(ValidateThresholds({{"acc_f", Comparison::kRatioAtMost, 0.1}}, known, "vision"));
  EXPECT_THAT(ValidateThresholds({{"acc_f", Comparison::kRatioAtMost, 0.1},
                                  {"forget.answer_probability", Comparison::kAtMost, 0.1}},
                                 known, "image_classifier"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("thresholds.checks[1].figure 'forget.answer_probability' is not "
                                 "a figure of image_classifier models (known: acc_f, acc_r)")));
  EXPECT_THAT(
      ValidateThresholds({{"acc_f", Comparison::kAtMost, std::numeric_limits<double>::infinity()}},
                         known, "x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite")));
  EXPECT_THAT(ValidateThresholds({{"acc_f", Comparison::kRatioAtLeast, -1.0}}, known, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(">= 0")));
  EXPECT_THAT(
      ValidateThresholds({{"acc_f", Comparison::kAtMost, 0.1}, {"acc_f", Comparison::kAtMost, 0.2}},
                         known, "x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeats acc_f at_most")));
}

TEST(ThresholdsTest, ComparisonNamesRoundTrip) {
  for (Comparison c : {Comparison::kRatioAtMost, Comparison::kRatioAtLeast, Comparison::kAtMost,
                       Comparison::kAtLeast}) {
    UNL_ASSERT_OK_AND_ASSIGN(Comparison parsed, ParseComparison(ComparisonName(c)));
    EXPECT_EQ(parsed, c);
  }
  EXPECT_THAT(ParseComparison("less"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ratio_at_most")));
}

}  // namespace
}  // namespace unlearning::core
