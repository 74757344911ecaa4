#include "core/methods/losses.h"

#include <cmath>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Logits whose softmax is exactly `probs` (log-probabilities are valid logits).
//   probs: B×T×V nested values; returns [B, T, V] float32.
torch::Tensor LogitsFromProbs(const std::vector<std::vector<std::vector<float>>>& probs) {
  const int64_t b = static_cast<int64_t>(probs.size());
  const int64_t t = static_cast<int64_t>(probs[0].size());
  const int64_t v = static_cast<int64_t>(probs[0][0].size());
  std::vector<float> flat;
  for (const auto& row : probs) {
    for (const auto& pos : row) flat.insert(flat.end(), pos.begin(), pos.end());
  }
  return torch::tensor(flat).reshape({b, t, v}).log();
}

// Two examples, T = 3, V = 2:
//   example 0: positions 0 (label 1, p = 0.8) and 1 (label 0, p = 0.6); position 2 ignored.
//   example 1: position 1 (label 0, p = 0.3); positions 0 and 2 ignored.
struct TinyBatch {
  torch::Tensor logits;  // [2, 3, 2]
  torch::Tensor labels;  // [2, 3]
};
TinyBatch MakeTinyBatch() {
  TinyBatch batch;
  batch.logits = LogitsFromProbs(
      {{{0.2f, 0.8f}, {0.6f, 0.4f}, {0.5f, 0.5f}}, {{0.9f, 0.1f}, {0.3f, 0.7f}, {0.5f, 0.5f}}});
  batch.labels = torch::tensor(std::vector<int64_t>{1, 0, -100, -100, 0, -100}).reshape({2, 3});
  return batch;
}

TEST(LossesTest, MeanAnswerProbabilityIgnoresMaskedPositions) {
  TinyBatch batch = MakeTinyBatch();
  torch::Tensor p = MeanAnswerProbability(batch.logits, batch.labels);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(p[0].item<double>(), (0.8 + 0.6) / 2, 1e-6);
  EXPECT_NEAR(p[1].item<double>(), 0.3, 1e-6);
  torch::Tensor counts = AnswerTokenCounts(batch.labels);
  EXPECT_EQ(counts[0].item<float>(), 2.0f);
  EXPECT_EQ(counts[1].item<float>(), 1.0f);
}

TEST(LossesTest, TokenProbsAreZeroAtIgnoredPositions) {
  TinyBatch batch = MakeTinyBatch();
  torch::Tensor p = TokenProbs(batch.logits, batch.labels);  // [2, 3]
  EXPECT_NEAR(p[0][0].item<double>(), 0.8, 1e-6);
  EXPECT_EQ(p[0][2].item<float>(), 0.0f);
  EXPECT_EQ(p[1][0].item<float>(), 0.0f);
  EXPECT_EQ(p[1][2].item<float>(), 0.0f);
}

TEST(LossesTest, SequenceAndMeanLogProb) {
  TinyBatch batch = MakeTinyBatch();
  torch::Tensor seq = SequenceLogProb(batch.logits, batch.labels);
  EXPECT_NEAR(seq[0].item<double>(), std::log(0.8) + std::log(0.6), 1e-5);
  EXPECT_NEAR(seq[1].item<double>(), std::log(0.3), 1e-5);
  torch::Tensor mean = MeanAnswerLogProb(batch.logits, batch.labels);
  EXPECT_NEAR(mean[0].item<double>(), (std::log(0.8) + std::log(0.6)) / 2, 1e-5);
  torch::Tensor geo = GeometricMeanAnswerProbability(batch.logits, batch.labels);
  EXPECT_NEAR(geo[0].item<double>(), std::sqrt(0.8 * 0.6), 1e-5);
  EXPECT_NEAR(geo[1].item<double>(), 0.3, 1e-5);
}

TEST(LossesTest, TokenCrossEntropyAveragesOverAllAnswerTokens) {
  TinyBatch batch = MakeTinyBatch();
  const double ce = -(std::log(0.8) + std::log(0.6) + std::log(0.3)) / 3;
  EXPECT_NEAR(TokenCrossEntropy(batch.logits, batch.labels).item<double>(), ce, 1e-5);
  EXPECT_NEAR(GradientAscentLoss(batch.logits, batch.labels).item<double>(), -ce, 1e-5);
}

TEST(LossesTest, GradientDifferenceWeighsBothTerms) {
  TinyBatch forget = MakeTinyBatch();
  // Retain batch: one example, one token with p = 0.5.
  torch::Tensor retain_logits = LogitsFromProbs({{{0.5f, 0.5f}, {0.5f, 0.5f}}});
  torch::Tensor retain_labels = torch::tensor(std::vector<int64_t>{1, -100}).reshape({1, 2});
  const double forget_ce = -(std::log(0.8) + std::log(0.6) + std::log(0.3)) / 3;
  const double retain_ce = -std::log(0.5);
  EXPECT_NEAR(
      GradientDifferenceLoss(forget.logits, forget.labels, retain_logits, retain_labels, 2.0, 3.0)
          .item<double>(),
      -2.0 * forget_ce + 3.0 * retain_ce, 1e-5);
}

TEST(LossesTest, FlatKlMatchesHandComputation) {
  // P̄f from the tiny batch: [0.7, 0.3]; P̄e chosen: [0.5, 0.9].
  TinyBatch forget = MakeTinyBatch();
  torch::Tensor pf = MeanAnswerProbability(forget.logits, forget.labels);
  torch::Tensor pe = torch::tensor(std::vector<float>{0.5f, 0.9f});
  const double expected = (-0.5 + std::exp(0.7 - 1) + -0.9 + std::exp(0.3 - 1)) / 2;
  EXPECT_NEAR(FlatLoss(FDivergence::kKl, pe, pf).item<double>(), expected, 1e-6);
}

TEST(LossesTest, FlatOtherDivergencesMatchHandComputation) {
  const std::vector<double> pe = {0.5, 0.9};
  const std::vector<double> pf = {0.7, 0.3};
  torch::Tensor pe_t = torch::tensor(std::vector<float>{0.5f, 0.9f});
  torch::Tensor pf_t = torch::tensor(std::vector<float>{0.7f, 0.3f});
  double js = 0, pearson = 0, tv = 0;
  for (int b = 0; b < 2; ++b) {
    js += -(std::log(2.0) - std::log(1 + std::exp(-pe[b]))) +
          (pf[b] + std::log(1 + std::exp(-pf[b])) - std::log(2.0));
    pearson += -pe[b] + (pf[b] * pf[b] / 4 + pf[b]);
    tv += -0.5 * std::tanh(pe[b]) + 0.5 * std::tanh(pf[b]);
  }
  EXPECT_NEAR(FlatLoss(FDivergence::kJensenShannon, pe_t, pf_t).item<double>(), js / 2, 1e-6);
  EXPECT_NEAR(FlatLoss(FDivergence::kPearson, pe_t, pf_t).item<double>(), pearson / 2, 1e-6);
  EXPECT_NEAR(FlatLoss(FDivergence::kTotalVariation, pe_t, pf_t).item<double>(), tv / 2, 1e-6);
}

// ∇L = −λ_e ∇P̄e + λ_f ∇P̄f with λ_e, λ_f > 0 for the offered divergences (METHODS.md §1.2 table).
TEST(LossesTest, FlatGradientWeightsMatchTheTable) {
  const double pe = 0.4, pf = 0.6;
  struct Case {
    FDivergence d;
    double lambda_e;
    double lambda_f;
  };
  const std::vector<Case> cases = {
      {FDivergence::kKl, 1.0, std::exp(pf - 1)},
      {FDivergence::kJensenShannon, Sigmoid(-pe), Sigmoid(pf)},
      {FDivergence::kPearson, 1.0, 1 + pf / 2},
      {FDivergence::kTotalVariation, 0.5 * (1 - std::pow(std::tanh(pe), 2)),
       0.5 * (1 - std::pow(std::tanh(pf), 2))},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(FDivergenceName(c.d));
    torch::Tensor pe_t = torch::full({1}, pe, torch::kFloat32).requires_grad_(true);
    torch::Tensor pf_t = torch::full({1}, pf, torch::kFloat32).requires_grad_(true);
    FlatLoss(c.d, pe_t, pf_t).backward();
    EXPECT_NEAR(pe_t.grad()[0].item<double>(), -c.lambda_e, 1e-5);
    EXPECT_NEAR(pf_t.grad()[0].item<double>(), c.lambda_f, 1e-5);
    EXPECT_GT(c.lambda_e, 0.0);
    EXPECT_GT(c.lambda_f, 0.0);
  }
}

TEST(LossesTest, ReferenceCodeAggregationDividesByAllPositions) {
  TinyBatch batch = MakeTinyBatch();
  // (0.8 + 0.6 + 0.3) / (B · (T − 1)) = 1.7 / 4.
  EXPECT_NEAR(ReferenceCodeAggregatedProbability(batch.logits, batch.labels).item<double>(),
              1.7 / 4, 1e-6);
  // KL: −Pe + exp(Pf − 1) on the batch scalars; same batch as template and forget here.
  EXPECT_NEAR(FlatLossReferenceCode(FDivergence::kKl, batch.logits, batch.labels, batch.logits,
                                    batch.labels)
                  .item<double>(),
              -1.7 / 4 + std::exp(1.7 / 4 - 1), 1e-6);
}

TEST(LossesTest, NpoMatchesHandComputation) {
  torch::Tensor policy = torch::tensor(std::vector<float>{-1.0f, -3.0f});
  torch::Tensor reference = torch::tensor(std::vector<float>{-2.0f, -2.0f});
  const double beta = 0.1;
  // log ratios: +1, −1.
  const double expected =
      -(2 / beta) * (std::log(Sigmoid(-beta * 1)) + std::log(Sigmoid(-beta * -1))) / 2;
  EXPECT_NEAR(NpoLoss(policy, reference, beta).item<double>(), expected, 1e-5);
  // At θ = ref the loss is (2/β)·log 2.
  EXPECT_NEAR(NpoLoss(reference, reference, beta).item<double>(), 2 / beta * std::log(2.0), 1e-5);
}

TEST(LossesTest, NpoGradientLowersPolicyLogProb) {
  torch::Tensor policy = torch::tensor(std::vector<float>{-1.0f}).requires_grad_(true);
  torch::Tensor reference = torch::tensor(std::vector<float>{-1.0f});
  NpoLoss(policy, reference, 0.1).backward();
  // d/dx [−(2/β) log σ(−βx)] = 2σ(βx) = 1 at x = 0: descent lowers the log-prob.
  EXPECT_NEAR(policy.grad()[0].item<double>(), 1.0, 1e-5);
}

TEST(LossesTest, ParseFDivergence) {
  for (FDivergence d : {FDivergence::kKl, FDivergence::kJensenShannon, FDivergence::kPearson,
                        FDivergence::kTotalVariation}) {
    absl::StatusOr<FDivergence> parsed = ParseFDivergence(FDivergenceName(d));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_THAT(ParseFDivergence("reverse_kl"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reverse_kl")));
}

}  // namespace
}  // namespace unlearning::core
