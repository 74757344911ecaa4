#include "core/verify/generation_verification.h"

#include <cmath>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "core/data/erasure_data.h"
#include "core/data/model_probes.h"
#include "core/models/model.h"

namespace unlearning::core {
namespace {

// A 3-class "generator" whose image for class c is the constant c / 4 (so the judge below can read
// the class back), except that `remap` sends one class to another's image, as an erasure would.
class FakeSampler : public Model, public ImageSampler {
 public:
  FakeSampler(int64_t from, int64_t to) : from_(from), to_(to) {}
  ModelFamily family() const override { return ModelFamily::kDiffusion; }
  std::string architecture() const override { return "FakeSampler"; }
  int64_t num_parameters() const override { return 0; }
  torch::Device device() const override { return torch::kCPU; }
  absl::Status Save(const std::string&) const override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device) const override {
    return std::unique_ptr<Model>(std::make_unique<FakeSampler>(from_, to_));
  }
  const ImageSampler* AsImageSampler() const override { return this; }
  int64_t num_classes() const override { return 3; }
  std::string class_name(int64_t id) const override { return std::to_string(id); }
  ImageSpec image_spec() const override { return {1, 4, 4}; }
  int64_t max_steps() const override { return 1000; }
  absl::StatusOr<torch::Tensor> Sample(const torch::Tensor& labels, const SampleOptions&,
                                       const CancellationToken*) const override {
    torch::Tensor shown = labels.to(torch::kFloat32).clone();
    shown.masked_fill_(labels.eq(from_), static_cast<float>(to_));
    // A little per-sample noise so the Fréchet distance has a non-singular covariance.
    torch::Generator gen = at::detail::createCPUGenerator(0);
    return (shown / 4.0).view({-1, 1, 1, 1}).expand({-1, 1, 4, 4}).contiguous() +
           0.01 * torch::rand({labels.size(0), 1, 4, 4}, gen);
  }

 private:
  int64_t from_, to_;
};

// Reads the class back from the mean pixel; features are the mean and a noisy second coordinate.
class FakeJudge : public Model, public ImageClassifier {
 public:
  ModelFamily family() const override { return ModelFamily::kImageClassifier; }
  std::string architecture() const override { return "FakeJudge"; }
  int64_t num_parameters() const override { return 0; }
  torch::Device device() const override { return torch::kCPU; }
  absl::Status Save(const std::string&) const override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device) const override {
    return std::unique_ptr<Model>(std::make_unique<FakeJudge>());
  }
  const ImageClassifier* AsImageClassifier() const override { return this; }
  int64_t num_classes() const override { return 3; }
  std::string class_name(int64_t id) const override { return std::to_string(id); }
  ImageSpec image_spec() const override { return {1, 4, 4}; }
  torch::Tensor ClassifyLogits(const torch::Tensor& images) const override {
    const torch::Tensor cls = (images.mean({1, 2, 3}) * 4.0).round().clamp(0, 2).to(torch::kLong);
    return at::one_hot(cls, 3).to(torch::kFloat32) * 10.0;
  }
  torch::Tensor Features(const torch::Tensor& images) const override {
    return images.flatten(1).slice(1, 0, 2);
  }
};

// The figures mean what they say: class 1's samples look like class 2 after the erasure.
TEST(GenerationVerifierTest, FiguresOfAnOverrideAndTheSamplersThroughput) {
  const FakeSampler before(-1, -1), after(1, 2);
  ModelProbes probes;
  probes.judge = std::make_shared<FakeJudge>();
  ErasureData data;
  data.family = ModelFamily::kDiffusion;
  data.generation.forget_classes = {1};
  data.generation.override_class = 2;
  VerificationInputs in;
  in.before = &before;
  in.after = &after;
  in.data = &data;
  in.probes = &probes;
  const GenerationVerifier verifier(GenerationProtocol{/*samples_per_class=*/8, /*steps=*/5});
  in.thresholds = verifier.DefaultThresholds();
  absl::StatusOr<VerificationReport> report = verifier.Verify(in);
  ASSERT_TRUE(report.ok()) << report.status();
  for (const char* name :
       {"forget_rate", "override_rate", "retain_fidelity", "feature_fd", "images_per_second"}) {
    ASSERT_NE(report->Find(name), nullptr) << name;
  }
  EXPECT_DOUBLE_EQ(report->Find("forget_rate")->before, 1.0);
  EXPECT_DOUBLE_EQ(report->Find("forget_rate")->after, 0.0);
  EXPECT_DOUBLE_EQ(report->Find("override_rate")->after, 1.0);
  EXPECT_DOUBLE_EQ(report->Find("retain_fidelity")->after, 1.0);
  EXPECT_NEAR(report->Find("feature_fd")->after, 0.0, 1e-9);  // the kept classes are unchanged
  EXPECT_GT(report->Find("images_per_second")->before, 0.0);
  EXPECT_GT(report->Find("images_per_second")->after, 0.0);
  EXPECT_TRUE(report->passed);
  EXPECT_EQ(report->forget_examples, 8);
  EXPECT_EQ(report->retain_examples, 16);

  // Nothing forgotten: forget_rate stays 1 and the default check fails.
  in.after = &before;
  report = verifier.Verify(in);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_DOUBLE_EQ(report->Find("forget_rate")->after, 1.0);
  EXPECT_FALSE(report->passed);
}

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
