// The diffusion family's score-override baseline on a tiny random denoiser: parameters and data
// checks, the override objective really moves the forget label onto the teacher's override score
// while the retained labels and the null label stay with the teacher, the parent is untouched,
// and cancellation is honoured.
#include "core/methods/baselines/score_override.h"

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/methods/method_registry.h"
#include "core/models/diffusion.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_diffusion.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::unique_ptr<DiffusionModel> TinyModel() { return ::unlearning::testing::TinyDiffusionModel(); }

ErasureData Forget(int64_t forget, int64_t override_class) {
  return ::unlearning::testing::ForgetClass(forget, override_class);
}

// Mean squared distance between a's ε for label `la` and b's ε for label `lb` on fixed probe
// states x_t (seeded noise around a fixed image, timesteps spread over [0, T)).
double EpsDistance(const DiffusionModel& a, int64_t la, const DiffusionModel& b, int64_t lb) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(99);
  const torch::Tensor x0 = torch::rand({32, 1, 8, 8}) * 2.0 - 1.0;
  const torch::Tensor t = torch::linspace(0, 999, 32).to(torch::kLong);
  const torch::Tensor abar = a.alphas_cumprod().index_select(0, t).view({32, 1, 1, 1});
  const torch::Tensor x_t = abar.sqrt() * x0 + (1.0 - abar).sqrt() * torch::randn_like(x0);
  return (a.PredictNoise(x_t, t, torch::full({32}, la, torch::kLong)) -
          b.PredictNoise(x_t, t, torch::full({32}, lb, torch::kLong)))
      .pow(2)
      .mean()
      .item<double>();
}

TEST(ScoreOverrideTest, ParametersAreRangeChecked) {
  const MethodRegistry& r = MethodRegistry::Builtin();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m,
                           r.Create("score_override", {{"steps", 12}}));
  EXPECT_EQ(m->family(), ModelFamily::kDiffusion);
  EXPECT_EQ(m->artifact_kind(), ArtifactKind::kFullWeights);
  EXPECT_EQ(m->EffectiveParams()["steps"], 12);
  EXPECT_EQ(m->EffectiveParams()["pool_per_class"], 16);
  EXPECT_EQ(m->EffectiveParams()["lambda_retain"], 1.0);
  EXPECT_EQ(m->TotalSteps(Forget(0, 1)), 12);
  for (const auto& [key, bad] :
       std::vector<std::pair<std::string, nlohmann::json>>{{"learning_rate", 0},
                                                           {"steps", 0},
                                                           {"batch_size", 2000},
                                                           {"pool_per_class", 0},
                                                           {"pool_steps", 1001},
                                                           {"pool_guidance", -1},
                                                           {"lambda_retain", -0.5},
                                                           {"lambda_null", 1e4},
                                                           {"max_grad_norm", -1},
                                                           {"seed", -3}}) {
    EXPECT_THAT(r.Create("score_override", {{key, bad}}).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("score_override." + key)))
        << key;
  }
  EXPECT_THAT(r.Create("score_override", {{"epochs", 3}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("score_override.epochs")));
}

TEST(ScoreOverrideTest, DataNeedsForgetClassesAndAnOverrideItKeeps) {
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m,
                           ScoreOverrideMethod::Create(nlohmann::json::object()));
  ErasureData none;
  none.family = ModelFamily::kDiffusion;
  EXPECT_THAT(m->CheckData(none),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget_classes")));
  EXPECT_THAT(m->CheckData(Forget(1, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("also a forget class")));
  UNL_EXPECT_OK(m->CheckData(Forget(1, 2)));
  UNL_EXPECT_OK(m->CheckData(Forget(1, -1)));
}

// Margins stated before measuring: the forget label's distance to the teacher's override score
// falls to at most 30% of where it starts; the retained and null labels end within 30% of that
// starting distance of the teacher (they start at 0).
TEST(ScoreOverrideTest, ForgetLabelTakesTheOverrideScoreOthersStay) {
  std::unique_ptr<DiffusionModel> teacher = TinyModel();
  std::unique_ptr<DiffusionModel> untouched = teacher->CloneDiffusion(torch::kCPU);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m,
                           ScoreOverrideMethod::Create({{"steps", 120},
                                                        {"batch_size", 16},
                                                        {"pool_per_class", 4},
                                                        {"pool_steps", 5},
                                                        {"learning_rate", 3e-3}}));
  const ErasureData data = Forget(0, 1);
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext ctx;
  ctx.parent = teacher.get();
  ctx.data = &data;
  ctx.progress = &progress;
  ctx.cancel = &cancel;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate c, m->Run(ctx));
  EXPECT_EQ(c.kind, ArtifactKind::kFullWeights);
  EXPECT_EQ(c.facts["override_target"], 1);
  EXPECT_EQ(c.facts["pool_samples"], 12);
  const auto* student = dynamic_cast<const DiffusionModel*>(c.model.get());
  ASSERT_NE(student, nullptr);

  const double start = EpsDistance(*teacher, 0, *teacher, 1);
  ASSERT_GT(start, 1e-4) << "the tiny teacher's labels do not differ";
  const double forget_after = EpsDistance(*student, 0, *teacher, 1);
  const double retain_after = EpsDistance(*student, 2, *teacher, 2);
  const double override_after = EpsDistance(*student, 1, *teacher, 1);
  const double null_after = EpsDistance(*student, 3, *teacher, 3);
  EXPECT_LE(forget_after, 0.3 * start) << "start " << start;
  EXPECT_LE(retain_after, 0.3 * start) << "start " << start;
  EXPECT_LE(override_after, 0.3 * start) << "start " << start;
  EXPECT_LE(null_after, 0.3 * start) << "start " << start;
  // The parent is never modified.
  EXPECT_EQ(EpsDistance(*teacher, 0, *untouched, 0), 0.0);
}

TEST(ScoreOverrideTest, WithoutOverrideTheTargetIsARandomRetainedClass) {
  std::unique_ptr<DiffusionModel> teacher = TinyModel();
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> m,
      ScoreOverrideMethod::Create(
          {{"steps", 2}, {"batch_size", 4}, {"pool_per_class", 2}, {"pool_steps", 2}}));
  const ErasureData data = Forget(2, -1);
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext ctx{teacher.get(), torch::kCPU, &data, nullptr, &progress, &cancel, nullptr};
  UNL_ASSERT_OK_AND_ASSIGN(Candidate c, m->Run(ctx));
  EXPECT_EQ(c.facts["override_target"], "random_retained_class");
}

TEST(ScoreOverrideTest, CancelledBeforeStartIsCancelled) {
  std::unique_ptr<DiffusionModel> teacher = TinyModel();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m,
                           ScoreOverrideMethod::Create({{"steps", 50}, {"pool_per_class", 2}}));
  const ErasureData data = Forget(0, 1);
  NullProgressSink progress;
  CancellationToken cancel;
  cancel.Cancel();
  MethodContext ctx{teacher.get(), torch::kCPU, &data, nullptr, &progress, &cancel, nullptr};
  EXPECT_THAT(m->Run(ctx).status(), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

}  // namespace
}  // namespace unlearning::core
