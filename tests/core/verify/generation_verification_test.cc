#include "core/verify/generation_verification.h"

#include <cmath>

#include <gtest/gtest.h>

namespace unlearning::core {
namespace {

TEST(FrechetDistanceTest, ZeroForTheSameSetAndTheSquaredShiftForATranslation) {
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({500, 4}, torch::kFloat64);
  EXPECT_NEAR(FrechetDistance(x, x), 0.0, 1e-8);
  const torch::Tensor shift = torch::tensor({1.0, -2.0, 0.5, 0.0}, torch::kFloat64);
  EXPECT_NEAR(FrechetDistance(x, x + shift), 1.0 + 4.0 + 0.25, 1e-8);
  // Scaling by 2: covariance C -> 4C and mean m -> 2m, FD = |m|^2 + tr(C) + tr(4C) - 2 tr(2C)
  // = |m|^2 + tr(C).
  const double trace = ((x - x.mean(0)).t().mm(x - x.mean(0)) / 499).trace().item<double>();
  EXPECT_NEAR(FrechetDistance(x, x * 2.0), trace + x.mean(0).pow(2).sum().item<double>(), 1e-6);
  EXPECT_TRUE(std::isnan(FrechetDistance(x.slice(0, 0, 1), x)));
}

}  // namespace
}  // namespace unlearning::core
