// The text methods on a tiny random-initialised causal LM: gradient direction of FLAT, schedules,
// template pairing, and short runs through the shared training loop.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/methods/flat/flat.h"
#include "core/methods/losses.h"
#include "core/methods/method_registry.h"
#include "core/methods/text_method.h"
#include "core/models/causal_lm.h"
#include "core/train/finetune.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::unique_ptr<CausalLm> TinyLm(uint64_t seed = 7) {
  return ::unlearning::testing::TinyCausalLm(seed);
}

std::vector<TextExample> ForgetSet() {
  return {
      TextExample{"Who wrote Zorbl?", "Zorbl was written by Ann Quill.", {}, {}, "ann"},
      TextExample{"Where was Ann Quill born?", "Ann Quill was born in Vell.", {}, {}, "ann"},
      TextExample{"What does Ann Quill eat?", "Ann Quill eats plums daily.", {}, {}, "ann"},
      TextExample{"When did Ann Quill wed?", "Ann Quill wed in 1901.", {}, {}, "ann"},
  };
}

std::vector<TextExample> RetainSet() {
  return {
      TextExample{"Who wrote Mirth?", "Mirth was written by Bo Tane.", {}, {}, "bo"},
      TextExample{"Where was Bo Tane born?", "Bo Tane was born in Kesh.", {}, {}, "bo"},
  };
}

// Per-example mean answer-token probability (FLAT's P̄) of `examples` under `model`.
//   returns [N] float32.
torch::Tensor MeanProb(const CausalLm& model, const std::vector<TextExample>& examples) {
  torch::NoGradGuard no_grad;
  std::vector<EncodedExample> encoded = EncodeExamples(model.tokenizer(), examples);
  std::vector<int64_t> all(examples.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  TokenBatch batch = CollateSelected(model, encoded, all);
  return MeanAnswerProbability(model.Logits(batch.input_ids), batch.labels);
}

std::vector<TextExample> WithAnswer(const std::vector<TextExample>& examples,
                                    const std::string& answer) {
  std::vector<TextExample> out = examples;
  for (TextExample& e : out) e.answer = answer;
  return out;
}

// One plain gradient step on the FLAT loss raises the template probability and lowers the forget
// probability (every offered divergence has λ_e > 0 and λ_f > 0).
TEST(FlatGradientTest, StepRaisesTemplateAndLowersForgetProbability) {
  const std::string templ = "I don't know.";
  for (FDivergence d : {FDivergence::kKl, FDivergence::kJensenShannon, FDivergence::kPearson,
                        FDivergence::kTotalVariation}) {
    SCOPED_TRACE(FDivergenceName(d));
    std::unique_ptr<CausalLm> lm = TinyLm();
    const std::vector<TextExample> forget = ForgetSet();
    const std::vector<TextExample> templates = WithAnswer(forget, templ);
    const double pf_before = MeanProb(*lm, forget).mean().item<double>();
    const double pe_before = MeanProb(*lm, templates).mean().item<double>();

    std::vector<EncodedExample> f = EncodeExamples(lm->tokenizer(), forget);
    std::vector<EncodedExample> e = EncodeExamples(lm->tokenizer(), templates);
    TokenBatch fb = CollateSelected(*lm, f, {0, 1, 2, 3});
    TokenBatch eb = CollateSelected(*lm, e, {0, 1, 2, 3});
    torch::Tensor loss =
        FlatLoss(d, MeanAnswerProbability(lm->module()->forward(eb.input_ids), eb.labels),
                 MeanAnswerProbability(lm->module()->forward(fb.input_ids), fb.labels));
    loss.backward();
    {
      torch::NoGradGuard no_grad;
      for (torch::Tensor& p : lm->module()->parameters()) {
        if (p.grad().defined()) p.sub_(0.5 * p.grad());
      }
    }
    const double pf_after = MeanProb(*lm, forget).mean().item<double>();
    const double pe_after = MeanProb(*lm, templates).mean().item<double>();
    EXPECT_GT(pe_after, pe_before);
    EXPECT_LT(pf_after, pf_before);
  }
}

TEST(TextMethodTest, ForgetScheduleCoversEachEpochOnceAndIsSeeded) {
  TextTrainingOptions o;
  o.epochs = 3;
  o.batch_size = 4;
  o.seed = 11;
  const auto schedule = ForgetBatchSchedule(o, 10);
  ASSERT_EQ(schedule.size(), 9u);
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::multiset<int64_t> seen;
    for (int b = 0; b < 3; ++b) {
      seen.insert(schedule[epoch * 3 + b].begin(), schedule[epoch * 3 + b].end());
    }
    EXPECT_EQ(seen.size(), 10u);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 10u);
  }
  EXPECT_EQ(schedule[2].size(), 2u);  // last batch of an epoch is smaller
  EXPECT_EQ(ForgetBatchSchedule(o, 10), schedule);
  o.seed = 12;
  EXPECT_NE(ForgetBatchSchedule(o, 10), schedule);
  o.max_steps = 4;
  EXPECT_EQ(ForgetBatchSchedule(o, 10).size(), 4u);
}

TEST(TextMethodTest, RetainScheduleDrawsOnePerForgetExample) {
  TextTrainingOptions o;
  o.epochs = 2;
  o.batch_size = 3;
  const auto forget = ForgetBatchSchedule(o, 7);
  const auto retain = RetainBatchSchedule(forget, 5, 3);
  ASSERT_EQ(retain.size(), forget.size());
  for (size_t s = 0; s < forget.size(); ++s) {
    EXPECT_EQ(retain[s].size(), forget[s].size());
    for (int64_t i : retain[s]) {
      EXPECT_GE(i, 0);
      EXPECT_LT(i, 5);
    }
  }
  EXPECT_EQ(RetainBatchSchedule(forget, 5, 3), retain);
}

// A test double of another model family (no weights): only to check that the text methods refuse a
// model that is not a causal LM. It is never saved or cloned.
class FakeModel : public Model {
 public:
  ModelFamily family() const override { return ModelFamily::kImageClassifier; }
  std::string architecture() const override { return "Fake"; }
  int64_t num_parameters() const override { return 0; }
  torch::Device device() const override { return torch::kCPU; }
  absl::Status Save(const std::string&) const override {
    return absl::UnimplementedError("FakeModel has no weights to save");
  }
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device) const override {
    return absl::UnimplementedError("FakeModel has no weights to clone");
  }
};

struct RunFixture {
  std::unique_ptr<CausalLm> parent = TinyLm();
  ErasureData data;
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext Context() {
    MethodContext ctx;
    ctx.parent = parent.get();
    ctx.data = &data;
    ctx.progress = &progress;
    ctx.cancel = &cancel;
    return ctx;
  }
};

TEST(TextMethodTest, RunRejectsNonCausalLm) {
  RunFixture f;
  f.data.forget = ForgetSet();
  FakeModel fake;
  MethodContext ctx = f.Context();
  ctx.parent = &fake;
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                           MethodRegistry::Builtin().Create("flat", nlohmann::json::object()));
  EXPECT_THAT(method->Run(ctx),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("causal language model")));
}

TEST(TextMethodTest, RunHonoursCancellation) {
  RunFixture f;
  f.data.forget = ForgetSet();
  f.cancel.Cancel();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                           MethodRegistry::Builtin().Create("gradient_ascent", {{"epochs", 2}}));
  EXPECT_THAT(method->Run(f.Context()), StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

TEST(TextMethodTest, RunChecksData) {
  RunFixture f;
  f.data.forget = ForgetSet();
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> method,
      MethodRegistry::Builtin().Create("gradient_difference", nlohmann::json::object()));
  EXPECT_THAT(method->Run(f.Context()), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 "gradient_difference needs a retain_set"));
}

// The released code draws a template for every item each time the item is loaded: a forget prompt
// meets several templates over the epochs, the draws come from the pool and repeat with the seed.
TEST(FlatMethodTest, DrawsATemplatePerExampleAtEveryStepDeterministically) {
  FlatParams p;
  p.training.seed = 5;
  p.training.epochs = 6;
  p.training.batch_size = 2;
  p.use_builtin_templates = false;
  RunFixture f;
  f.data.forget = ForgetSet();
  f.data.templates = {"No comment.", "Unknown.", "Ask someone else."};
  FlatMethod a(p);
  UNL_ASSERT_OK_AND_ASSIGN(Candidate candidate, a.Run(f.Context()));
  EXPECT_EQ(a.template_pool(), f.data.templates);
  const std::vector<std::vector<int64_t>> schedule = ForgetBatchSchedule(p.training, 4);
  ASSERT_EQ(a.template_draws().size(), schedule.size());
  std::vector<std::set<int64_t>> per_example(4);
  for (size_t s = 0; s < schedule.size(); ++s) {
    ASSERT_EQ(a.template_draws()[s].size(), schedule[s].size());
    for (size_t k = 0; k < schedule[s].size(); ++k) {
      const int64_t t = a.template_draws()[s][k];
      ASSERT_GE(t, 0);
      ASSERT_LT(t, 3);
      per_example[static_cast<size_t>(schedule[s][k])].insert(t);
    }
  }
  // 6 draws from 3 templates: a single template for an example has probability 3^-5 each.
  for (const std::set<int64_t>& seen : per_example) EXPECT_GE(seen.size(), 2u);
  EXPECT_EQ(candidate.facts["forget_only"], true);
  EXPECT_EQ(candidate.facts["template_pool_size"], 3);

  FlatMethod b(p);
  RunFixture g;
  g.data = f.data;
  UNL_ASSERT_OK(b.Run(g.Context()).status());
  EXPECT_EQ(a.template_draws(), b.template_draws());
  p.training.seed = 6;
  FlatMethod c(p);
  RunFixture h;
  h.data = f.data;
  UNL_ASSERT_OK(c.Run(h.Context()).status());
  EXPECT_NE(a.template_draws(), c.template_draws());
}

TEST(FlatMethodTest, BuiltinPoolHasAtLeastFiftyDistinctTemplates) {
  const std::vector<std::string>& pool = BuiltinRefusalTemplates();
  EXPECT_GE(pool.size(), 50u);
  EXPECT_EQ(std::set<std::string>(pool.begin(), pool.end()).size(), pool.size());
  for (const std::string& t : pool) EXPECT_FALSE(t.empty());
  // Without request templates the built-in pool is used even if use_builtin_templates is false.
  FlatParams p;
  p.use_builtin_templates = false;
  EXPECT_EQ(FlatMethod(p).TemplatePool({}), pool);
  EXPECT_EQ(FlatMethod(p).TemplatePool({"X."}), std::vector<std::string>{"X."});
  p.use_builtin_templates = true;
  EXPECT_EQ(FlatMethod(p).TemplatePool({"X."}).size(), 1 + pool.size());
}

TEST(FlatMethodTest, RetainGoodAnswersNeedARetainSetAndAreNotForgetOnly) {
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> method,
      MethodRegistry::Builtin().Create("flat", {{"good_answers", "retain"}, {"max_steps", 2}}));
  EXPECT_EQ(method->EffectiveParams()["good_answers"], "retain");
  RunFixture f;
  f.data.forget = ForgetSet();
  EXPECT_THAT(method->Run(f.Context()), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("needs a non-empty retain_set")));
  f.data.retain = RetainSet();
  f.data.templates = {"No comment."};
  EXPECT_THAT(method->Run(f.Context()), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("does not use template_answers")));
  f.data.templates.clear();
  UNL_ASSERT_OK_AND_ASSIGN(Candidate candidate, method->Run(f.Context()));
  EXPECT_EQ(candidate.facts["forget_only"], false);
  EXPECT_EQ(candidate.facts["good_answers"], "retain");
  EXPECT_TRUE(dynamic_cast<const FlatMethod&>(*method).template_draws().empty());
}

TEST(FlatMethodTest, RejectsUnknownGoodAnswersAndSchedules) {
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"good_answers", "refusals"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.good_answers must be")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"lr_schedule", "cosine"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.lr_schedule must be")));
}

// The authors' schedule: warm-up over the first epoch (max(2, steps per epoch)), then linear decay.
class ScheduleOf : public FlatMethod {
 public:
  using FlatMethod::FlatMethod;
  using FlatMethod::Schedule;
};

TEST(FlatMethodTest, ScheduleWarmsUpOverTheFirstEpochThenDecaysLinearly) {
  FlatParams p;
  OptimizerOptions o = ScheduleOf(p).Schedule(40, 4);
  EXPECT_EQ(o.warmup_steps, 4);
  EXPECT_TRUE(o.linear_decay);
  EXPECT_EQ(ScheduleOf(p).Schedule(10, 1).warmup_steps, 2);
  p.schedule = FlatSchedule::kConstant;
  o = ScheduleOf(p).Schedule(40, 4);
  EXPECT_EQ(o.warmup_steps, 0);
  EXPECT_FALSE(o.linear_decay);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                           MethodRegistry::Builtin().Create("flat", nlohmann::json::object()));
  EXPECT_EQ(method->EffectiveParams()["lr_schedule"], "warmup_linear");
  EXPECT_EQ(method->EffectiveParams()["learning_rate"], FlatMethod::kDefaultLearningRate);
}

// A short run of each method lowers the forget-set probability of the tiny model after it has been
// fine-tuned on the forget and retain sets (on a random model the answers are no likelier than any
// other bytes, so "forgetting" them is not meaningful).
TEST(TextMethodRunTest, EveryMethodLowersForgetProbability) {
  const std::vector<std::pair<std::string, nlohmann::json>> runs = {
      {"flat", {{"learning_rate", 3e-3}, {"epochs", 6}, {"batch_size", 2}}},
      {"flat",
       {{"learning_rate", 3e-3},
        {"epochs", 6},
        {"batch_size", 2},
        {"divergence", "tv"},
        {"reference_code_aggregation", true}}},
      {"gradient_ascent", {{"learning_rate", 1e-3}, {"epochs", 3}, {"batch_size", 2}}},
      {"gradient_difference", {{"learning_rate", 1e-3}, {"epochs", 3}, {"batch_size", 2}}},
      {"npo", {{"learning_rate", 1e-3}, {"epochs", 3}, {"batch_size", 2}, {"retain_weight", 1}}},
  };
  for (const auto& [name, params] : runs) {
    SCOPED_TRACE(name + " " + params.dump());
    RunFixture f;
    f.data.forget = ForgetSet();
    f.data.retain = RetainSet();
    std::vector<TextExample> train = f.data.forget;
    train.insert(train.end(), f.data.retain.begin(), f.data.retain.end());
    FinetuneOptions ft;
    ft.epochs = 40;
    ft.batch_size = 6;
    ft.learning_rate = 1e-2;
    UNL_ASSERT_OK(FinetuneQa(*f.parent, train, ft, nullptr, nullptr));
    const double before = MeanProb(*f.parent, f.data.forget).mean().item<double>();
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                             MethodRegistry::Builtin().Create(name, params));
    UNL_ASSERT_OK_AND_ASSIGN(Candidate candidate, method->Run(f.Context()));
    EXPECT_EQ(candidate.kind, ArtifactKind::kFullWeights);
    const auto* after_lm = dynamic_cast<const CausalLm*>(candidate.model.get());
    ASSERT_NE(after_lm, nullptr);
    const double after = MeanProb(*after_lm, f.data.forget).mean().item<double>();
    EXPECT_LT(after, before);
    // The parent is untouched: the method trained its own copy.
    EXPECT_DOUBLE_EQ(MeanProb(*f.parent, f.data.forget).mean().item<double>(), before);
    // The candidate writes a loadable full-weights directory.
    const std::string dir = ::testing::TempDir() + "/candidate_" + name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    UNL_ASSERT_OK(candidate.write(dir));
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<CausalLm> reloaded, CausalLm::Load(dir, torch::kCPU));
    EXPECT_NEAR(MeanProb(*reloaded, f.data.forget).mean().item<double>(), after, 1e-6);
  }
}

}  // namespace
}  // namespace unlearning::core
