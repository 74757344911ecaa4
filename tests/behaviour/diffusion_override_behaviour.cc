// Behaviour of the score_override baseline on the project's real diffusion model
// (tools/build_diffusion.sh, ctest fixture diffusion_model; UNL_DIFFUSION_DIR): the method runs
// with its default parameters through the erasure pipeline and the family's verifier, which
// samples every class with the pinned protocol and lets the model's shipped ViT judge them.
//
// Bars, stated before measuring (VERIFICATION.md "Diffusion models"):
//   before: the forget class is generated recognisably (forget_rate >= 0.7), so the test can fail
//   after, override class named: forget_rate <= 0.10, override_rate >= 0.70,
//          retain_fidelity >= 0.90 x before
//   after, no override class:    forget_rate <= 0.10, retain_fidelity >= 0.90 x before
//
// This file is not named *_test.cc on purpose: tests/CMakeLists.txt globs those into
// behaviour_tests, which requires only the demo model; tests/e2e/CMakeLists.txt builds this one
// into diffusion_behaviour_tests, which requires the diffusion_model fixture.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/app/erasure_pipeline.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

constexpr int64_t kForget = 7;    // Sneaker
constexpr int64_t kOverride = 5;  // Sandal

std::string ModelDir() {
  const char* env = std::getenv("UNL_DIFFUSION_DIR");
  const std::string root =
      env != nullptr && *env != '\0' ? env : std::string(UNL_SOURCE_DIR) + "/.cache/diffusion";
  return root + "/model";
}

class DiffusionOverrideBehaviour : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(2);
    const FamilyRegistry& families = FamilyRegistry::Builtin();
    absl::StatusOr<std::unique_ptr<Model>> model = families.Load(ModelDir(), torch::kCPU);
    ASSERT_TRUE(model.ok()) << model.status() << " (run tools/build_diffusion.sh)";
    model_ = *std::move(model);
    ASSERT_EQ(model_->family(), ModelFamily::kDiffusion);
    UNL_ASSERT_OK_AND_ASSIGN(spec_, families.Find(ModelFamily::kDiffusion));
    UNL_ASSERT_OK_AND_ASSIGN(probes_, spec_->load_probes(ModelDir()));
    ASSERT_NE(probes_.judge, nullptr) << "the model ships no judge/ (run tools/build_diffusion.sh)";
  }

  // Runs score_override (default parameters) and returns the figures {name: {before, after}}.
  std::map<std::string, std::pair<double, double>> Erase(int64_t override_class) {
    ErasureData data;
    data.family = ModelFamily::kDiffusion;
    data.generation.forget_classes = {kForget};
    data.generation.override_class = override_class;
    absl::StatusOr<ErasurePlan> plan =
        PlanErasure(MethodRegistry::Builtin(), FamilyRegistry::Builtin(), ModelFamily::kDiffusion,
                    "score_override", nlohmann::json::object(), data, {}, model_.get());
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return {};
    NullProgressSink progress;
    CancellationToken cancel;
    absl::StatusOr<ErasureOutcome> outcome =
        RunErasure(*plan, *model_, probes_, data, torch::kCPU, &progress, &cancel);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    if (!outcome.ok()) return {};
    std::map<std::string, std::pair<double, double>> out;
    for (const FigureValue& f : outcome->report.figures) {
      out[f.name] = {f.before, f.after};
      std::printf("  %-16s %.4f -> %.4f\n", f.name.c_str(), f.before, f.after);
    }
    std::printf("  method %.0f s, verification %.0f s, %lld steps, passed %d\n",
                outcome->method_seconds, outcome->verify_seconds,
                static_cast<long long>(outcome->steps), outcome->report.passed ? 1 : 0);
    return out;
  }

  std::unique_ptr<Model> model_;
  const FamilySpec* spec_ = nullptr;
  ModelProbes probes_;
};

TEST_F(DiffusionOverrideBehaviour, SneakerBecomesSandalOthersKeepTheirClass) {
  auto f = Erase(kOverride);
  ASSERT_EQ(f.count("forget_rate"), 1u);
  ASSERT_EQ(f.count("override_rate"), 1u);
  ASSERT_EQ(f.count("retain_fidelity"), 1u);
  EXPECT_GE(f["forget_rate"].first, 0.7);
  EXPECT_LE(f["forget_rate"].second, 0.10);
  EXPECT_GE(f["override_rate"].second, 0.70);
  EXPECT_GE(f["retain_fidelity"].second, 0.90 * f["retain_fidelity"].first);
}

TEST_F(DiffusionOverrideBehaviour, WithoutOverrideSneakerIsNoLongerDrawn) {
  auto f = Erase(-1);
  ASSERT_EQ(f.count("forget_rate"), 1u);
  ASSERT_EQ(f.count("retain_fidelity"), 1u);
  EXPECT_EQ(f.count("override_rate"), 0u);
  EXPECT_LE(f["forget_rate"].second, 0.10);
  EXPECT_GE(f["retain_fidelity"].second, 0.90 * f["retain_fidelity"].first);
}

}  // namespace
}  // namespace unlearning::core
