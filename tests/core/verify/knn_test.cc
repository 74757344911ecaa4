// KnnAccuracy, the vision verifier's representation-leak figure (knn.forget).
#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/verify/vision_verification.h"

namespace unlearning::core {
namespace {

TEST(KnnAccuracyTest, SeparatedClustersAreFoundAndMixedOnesAreNot) {
  torch::manual_seed(0);
  // Two classes around opposite directions: every query's neighbours share its label.
  const torch::Tensor centre = torch::randn({1, 8});
  const torch::Tensor ref =
      torch::cat({centre + 0.1 * torch::randn({20, 8}), -centre + 0.1 * torch::randn({20, 8})});
  const torch::Tensor ref_labels =
      torch::cat({torch::zeros({20}, torch::kLong), torch::ones({20}, torch::kLong)});
  const torch::Tensor query =
      torch::cat({centre + 0.1 * torch::randn({5, 8}), -centre + 0.1 * torch::randn({5, 8})});
  const torch::Tensor query_labels =
      torch::cat({torch::zeros({5}, torch::kLong), torch::ones({5}, torch::kLong)});
  EXPECT_DOUBLE_EQ(KnnAccuracy(ref, ref_labels, query, query_labels, 5), 1.0);
  // Labelled the other way round, every vote is wrong.
  EXPECT_DOUBLE_EQ(KnnAccuracy(ref, ref_labels, query, 1 - query_labels, 5), 0.0);
  // Scale does not matter (cosine similarity).
  EXPECT_DOUBLE_EQ(KnnAccuracy(ref * 7.0, ref_labels, query, query_labels, 5), 1.0);
  // Queries of class 0 sitting in class 1's cluster: their features moved.
  EXPECT_DOUBLE_EQ(KnnAccuracy(ref, ref_labels, -centre + 0.1 * torch::randn({4, 8}),
                               torch::zeros({4}, torch::kLong), 5),
                   0.0);
  EXPECT_TRUE(std::isnan(
      KnnAccuracy(ref, ref_labels, torch::zeros({0, 8}), torch::zeros({0}, torch::kLong), 5)));
}

}  // namespace
}  // namespace unlearning::core
