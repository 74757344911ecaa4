// SFD / SiD on a tiny random denoiser: parameters and data checks, the one-step generator the
// method publishes (one network evaluation, steps refused, saved and reloaded identically, with
// and without its teacher), score forgetting really moves the forget label's samples toward the
// override class's while plain SiD does not, the parent is untouched, a second request distils
// again from the original teacher with the union of forget classes, and cancellation.
#include "core/methods/sfd/sfd.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/common/status_macros.h"
#include "core/methods/method_registry.h"
#include "core/models/diffusion.h"
#include "core/models/one_step_generator.h"
#include "core/train/diffusion_train.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_diffusion.h"

namespace unlearning::core {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::ForgetClass;
using ::unlearning::testing::StatusIs;
using ::unlearning::testing::TinyDiffusionModel;

absl::StatusOr<Candidate> RunMethod(const std::string& name, const nlohmann::json& params,
                                    const std::shared_ptr<const Model>& parent,
                                    const ErasureData& data) {
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<UnlearningMethod> m,
                       MethodRegistry::Builtin().Create(name, params));
  UNL_RETURN_IF_ERROR(m->CheckParent(*parent));
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext ctx{parent.get(), torch::kCPU, &data, nullptr, &progress, &cancel, parent};
  return m->Run(ctx);
}

// A tiny teacher trained on three synthetic 8x8 classes a sample's pixels tell apart: 0 dark
// (0.1), 1 bright (0.9), 2 bright left half / dark right half; ±0.05 noise. A few seconds.
std::shared_ptr<const DiffusionModel> TrainedTinyTeacher() {
  std::unique_ptr<DiffusionModel> model = TinyDiffusionModel();
  torch::manual_seed(11);
  const int64_t per_class = 64;
  torch::Tensor images = torch::empty({3 * per_class, 1, 8, 8});
  images.narrow(0, 0, per_class).fill_(0.1);
  images.narrow(0, per_class, per_class).fill_(0.9);
  torch::Tensor split = images.narrow(0, 2 * per_class, per_class);
  split.fill_(0.1);
  split.narrow(3, 0, 4).fill_(0.9);
  images = (images + 0.05 * torch::randn_like(images)).clamp(0.0, 1.0);
  const torch::Tensor labels = torch::arange(3).repeat_interleave(per_class);
  DiffusionTrainOptions options;
  options.steps = 400;
  options.batch_size = 32;
  options.learning_rate = 5e-3;
  options.warmup_steps = 20;
  options.ema_decay = 0.0;
  absl::StatusOr<DiffusionTrainResult> trained =
      TrainDiffusion(model.get(), images, labels, options, nullptr, nullptr);
  EXPECT_TRUE(trained.ok()) << trained.status();
  return std::shared_ptr<const DiffusionModel>(std::move(model));
}

// Mean brightness in [0, 1] of 64 one-step samples of `label` ([0] overall, [1] left half minus
// right half).
std::pair<double, double> Brightness(const OneStepGenerator& g, int64_t label) {
  SampleOptions options;
  options.steps = 1;
  options.seed = 21;
  absl::StatusOr<torch::Tensor> images = g.Sample(torch::full({64}, label), options, nullptr);
  EXPECT_TRUE(images.ok()) << images.status();
  if (!images.ok()) return {0.0, 0.0};
  return {images->mean().item<double>(),
          (images->narrow(3, 0, 4).mean() - images->narrow(3, 4, 4).mean()).item<double>()};
}

const nlohmann::json kShort = {{"iterations", 40},
                               {"batch_size", 8},
                               {"forget_batch_size", 8},
                               {"generator_lr", 1e-3},
                               {"fake_score_lr", 1e-3},
                               {"ema_decay", 0.0},
                               {"seed", 3}};

TEST(SfdTest, ParametersAreRangeChecked) {
  const MethodRegistry& r = MethodRegistry::Builtin();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m, r.Create("sfd", {}));
  EXPECT_EQ(m->family(), ModelFamily::kDiffusion);
  EXPECT_EQ(m->artifact_kind(), ArtifactKind::kOneStepGenerator);
  const nlohmann::json p = m->EffectiveParams();
  EXPECT_EQ(p["alpha"], 1.2);
  EXPECT_EQ(p["t_min"], 38);
  EXPECT_EQ(p["t_max"], 712);
  EXPECT_EQ(p["init_timestep"], 440);
  EXPECT_EQ(p["adam_beta1"], 0.0);
  EXPECT_EQ(p["clip_grad_value"], 1.0);
  EXPECT_EQ(p["lambda_gf"], 1.0);
  EXPECT_EQ(m->TotalSteps(ForgetClass(0, 1)), p["iterations"].get<int64_t>());
  for (const auto& [key, bad] :
       std::vector<std::pair<std::string, nlohmann::json>>{{"iterations", 0},
                                                           {"batch_size", 0},
                                                           {"generator_lr", 0},
                                                           {"fake_score_lr", 2},
                                                           {"adam_beta1", 1.0},
                                                           {"alpha", -1},
                                                           {"lambda_sf", -0.1},
                                                           {"t_min", -1},
                                                           {"init_timestep", 0},
                                                           {"teacher_guidance", 21},
                                                           {"clip_grad_value", -1},
                                                           {"ema_decay", 1.0}}) {
    EXPECT_THAT(r.Create("sfd", {{key, bad}}).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sfd." + key)))
        << key;
  }
  EXPECT_THAT(r.Create("sfd", {{"t_min", 500}, {"t_max", 400}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("greater than t_min")));
  // Plain SiD has no forget coefficients.
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> sid, r.Create("sid", {}));
  EXPECT_EQ(sid->name(), "sid");
  EXPECT_FALSE(sid->EffectiveParams().contains("lambda_gf"));
  EXPECT_THAT(r.Create("sid", {{"lambda_gf", 1.0}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sid.lambda_gf")));
}

TEST(SfdTest, RequestsAreCheckedBeforeAnythingRuns) {
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m, SfdMethod::Create({}));
  ErasureData none;
  none.family = ModelFamily::kDiffusion;
  EXPECT_THAT(m->CheckData(none),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget_classes")));
  EXPECT_THAT(m->CheckData(ForgetClass(1, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("also a forget class")));
  UNL_EXPECT_OK(m->CheckData(ForgetClass(1, -1)));

  std::shared_ptr<const Model> teacher = TinyDiffusionModel();
  EXPECT_THAT(RunMethod("sfd", kShort, teacher, ForgetClass(3, 1)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget class 3 outside")));
  EXPECT_THAT(RunMethod("sfd", kShort, teacher, ForgetClass(0, 7)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("override class 7 outside")));
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> late,
                           SfdMethod::Create({{"t_max", 2000}}));
  EXPECT_THAT(late->CheckParent(*teacher),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1000 timesteps")));
  ErasureData all = ForgetClass(0, -1);
  all.generation.forget_classes = {0, 1, 2};
  EXPECT_THAT(RunMethod("sfd", kShort, teacher, all).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("every class")));
}

// The bars, stated before measuring, on a teacher whose classes the pixels tell apart (forget 0
// "dark" -> override 1 "bright"): after SFD the forget label draws bright images (mean >= 0.6) and
// the retained class 2 keeps its split (left - right >= 0.3); after plain SiD (same seed and
// budget) label 0 still draws dark images (mean <= 0.4). The parent is never modified.
TEST(SfdTest, ScoreForgettingMovesTheForgetLabelToTheOverrideClass) {
  std::shared_ptr<const DiffusionModel> teacher = TrainedTinyTeacher();
  std::unique_ptr<DiffusionModel> untouched = teacher->CloneDiffusion(torch::kCPU);
  UNL_ASSERT_OK_AND_ASSIGN(Candidate sfd, RunMethod("sfd", kShort, teacher, ForgetClass(0, 1)));
  nlohmann::json plain = kShort;
  plain.erase("forget_batch_size");
  UNL_ASSERT_OK_AND_ASSIGN(Candidate sid, RunMethod("sid", plain, teacher, ForgetClass(0, 1)));
  ASSERT_EQ(sfd.kind, ArtifactKind::kOneStepGenerator);
  const auto* g_sfd = dynamic_cast<const OneStepGenerator*>(sfd.model.get());
  const auto* g_sid = dynamic_cast<const OneStepGenerator*>(sid.model.get());
  ASSERT_NE(g_sfd, nullptr);
  ASSERT_NE(g_sid, nullptr);
  EXPECT_EQ(g_sfd->teacher().get(), teacher.get());
  EXPECT_THAT(g_sfd->config().forgotten_classes, ElementsAre(0));
  EXPECT_THAT(g_sfd->forgotten_classes(), ElementsAre(0));
  EXPECT_EQ(g_sfd->config().overrides.at(0), 1);
  EXPECT_TRUE(g_sid->config().forgotten_classes.empty());
  EXPECT_EQ(sfd.facts["network_evaluations_per_image"], 1);

  const auto [sfd_forget, sfd_forget_split] = Brightness(*g_sfd, 0);
  const auto [sfd_keep, sfd_keep_split] = Brightness(*g_sfd, 2);
  const auto [sid_forget, sid_forget_split] = Brightness(*g_sid, 0);
  std::printf("label 0 brightness: sfd %.3f, sid %.3f; label 2 split: sfd %.3f (mean %.3f)\n",
              sfd_forget, sid_forget, sfd_keep_split, sfd_keep);
  EXPECT_GE(sfd_forget, 0.6);
  EXPECT_GE(sfd_keep_split, 0.3);
  EXPECT_LE(sid_forget, 0.4);
  for (const auto& item : teacher->module()->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), untouched->module()->named_parameters()[item.key()]))
        << item.key();
  }
}

TEST(SfdTest, TheGeneratorSamplesInOneStepAndRoundTripsThroughItsDirectory) {
  std::shared_ptr<const DiffusionModel> teacher = TinyDiffusionModel();
  nlohmann::json few = kShort;
  few["iterations"] = 2;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate c, RunMethod("sfd", few, teacher, ForgetClass(2, -1)));
  const auto& g = dynamic_cast<const OneStepGenerator&>(*c.model);
  EXPECT_EQ(g.max_steps(), 1);
  EXPECT_EQ(g.architecture(), "OneStepGenerator");
  SampleOptions options;
  options.steps = 1;
  options.seed = 9;
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor images,
                           g.Sample(torch::tensor({0, 1, 2}), options, nullptr));
  EXPECT_THAT(images.sizes(), ElementsAre(3, 1, 8, 8));
  EXPECT_GE(images.min().item<float>(), 0.0f);
  EXPECT_LE(images.max().item<float>(), 1.0f);
  options.steps = 25;
  EXPECT_THAT(g.Sample(torch::tensor({0}), options, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("one-step generator")));
  options.steps = 1;
  EXPECT_THAT(g.Sample(torch::tensor({3}), options, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));

  const fs::path dir = fs::path(::testing::TempDir()) / "sfd_generator";
  fs::remove_all(dir);
  fs::create_directories(dir);
  UNL_ASSERT_OK(c.write(dir.string()));
  for (const char* f :
       {"model_index.json", "generator_config.json", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
        "online/unet/diffusion_pytorch_model.safetensors"}) {
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  }
  // On its own (an exported version) it samples identically but cannot be distilled again.
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<OneStepGenerator> alone,
                           OneStepGenerator::Load(dir.string(), torch::kCPU, nullptr));
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor again,
                           alone->Sample(torch::tensor({0, 1, 2}), options, nullptr));
  EXPECT_TRUE(torch::equal(images, again));
  EXPECT_THAT(alone->config().forgotten_classes, ElementsAre(2));
  EXPECT_EQ(alone->config().overrides.at(2), -1);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m, SfdMethod::Create({}));
  EXPECT_THAT(m->CheckParent(*alone),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("without the teacher")));
  // On its parent version it keeps the teacher.
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<OneStepGenerator> on_parent,
                           OneStepGenerator::Load(dir.string(), torch::kCPU, teacher));
  EXPECT_EQ(on_parent->teacher().get(), teacher.get());
  UNL_EXPECT_OK(m->CheckParent(*on_parent));
  // A malformed config names the file and key.
  std::ofstream(dir / "generator_config.json") << R"({"init_timestep": "440"})";
  EXPECT_THAT(OneStepGenerator::Load(dir.string(), torch::kCPU, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("generator_config.json: \"init_timestep\"")));
  fs::remove_all(dir);
}

// A second request on the generator distils again from the original teacher: the forget set is
// the union, the first override is kept, and the generator warm-starts from the first one.
TEST(SfdTest, ASecondRequestDistilsAgainFromTheTeacherWithTheUnion) {
  std::shared_ptr<const DiffusionModel> teacher = TinyDiffusionModel();
  nlohmann::json few = kShort;
  few["iterations"] = 3;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate first, RunMethod("sfd", few, teacher, ForgetClass(0, 1)));
  std::shared_ptr<const Model> first_model = std::move(first.model);
  UNL_ASSERT_OK_AND_ASSIGN(Candidate second, RunMethod("sfd", few, first_model, ForgetClass(2, 1)));
  const auto& g = dynamic_cast<const OneStepGenerator&>(*second.model);
  EXPECT_EQ(g.teacher().get(), teacher.get());
  EXPECT_THAT(g.config().forgotten_classes, ElementsAre(0, 2));
  EXPECT_EQ(g.config().overrides.at(0), 1);
  EXPECT_EQ(g.config().overrides.at(2), 1);
  EXPECT_EQ(second.facts["distilled_again"], true);
  // The override of a new request may not be a class an earlier request forgot.
  EXPECT_THAT(
      RunMethod("sfd", few, first_model, ForgetClass(1, 0)).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("which this request forgets")));
}

TEST(SfdTest, CancelledBeforeStartIsCancelled) {
  std::shared_ptr<const DiffusionModel> teacher = TinyDiffusionModel();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m, SfdMethod::Create(kShort));
  const ErasureData data = ForgetClass(0, 1);
  NullProgressSink progress;
  CancellationToken cancel;
  cancel.Cancel();
  MethodContext ctx{teacher.get(), torch::kCPU, &data, nullptr, &progress, &cancel, teacher};
  EXPECT_THAT(m->Run(ctx).status(), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

}  // namespace
}  // namespace unlearning::core
