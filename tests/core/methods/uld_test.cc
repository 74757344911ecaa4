// ULD (METHODS.md §2): the assistant is the target's first K blocks sharing its tensors, the
// composite combines by logit difference with the relative-top filter, the artifact round-trips,
// requests stack, full-weight methods refuse a composite, and training the assistant makes the
// composite forget the forget set while a uniform assistant leaves everything else unchanged.
#include "core/methods/uld/uld.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/common/progress.h"
#include "core/data/text_example.h"
#include "core/io/files.h"
#include "core/methods/losses.h"
#include "core/methods/method_registry.h"
#include "core/models/logit_difference.h"
#include "core/train/finetune.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

torch::Tensor Ids(const std::vector<int64_t>& v) { return torch::tensor(v).view({1, -1}); }

std::string TempDir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("uld_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

TEST(UldAssistantTest, SharesTheTargetsTensorsAndStartsAsTheTruncatedTarget) {
  std::unique_ptr<CausalLm> target = testing::TinyCausalLm(3);
  UldAssistantConfig config;
  config.num_layers = 2;  // all of the tiny model's blocks: the assistant is the target at init
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<CausalLm> assistant,
                           MakeUldAssistant(*target, config, 7));
  const torch::Tensor ids = Ids({1, 40, 41, 42, 43});
  EXPECT_LT(MaxAbsDiff(assistant->Logits(ids), target->Logits(ids)), 1e-5);  // B = 0
  auto target_params = target->module()->named_parameters();
  int64_t trainable = 0;
  for (const auto& item : assistant->module()->named_parameters()) {
    if (IsLoraFactor(item.key())) {
      EXPECT_TRUE(item.value().requires_grad()) << item.key();
      trainable += item.value().numel();
      continue;
    }
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    EXPECT_EQ(item.value().data_ptr(), target_params[item.key()].data_ptr())
        << item.key() << " is a copy, not the target's tensor";
  }
  EXPECT_GT(trainable, 0);

  config.num_layers = 1;
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<CausalLm> one, MakeUldAssistant(*target, config, 7));
  EXPECT_EQ(one->config().num_hidden_layers, 1);
  EXPECT_GT(MaxAbsDiff(one->Logits(ids), target->Logits(ids)), 1e-3);
  config.num_layers = 3;
  EXPECT_THAT(MakeUldAssistant(*target, config, 7),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uld.num_layers")));
}

TEST(UldCombineTest, RelativeTopKeepsTheTopAndTokensWithinTheRateOfTheMax) {
  // log-probabilities relative to the max: 0, -1, -4, -6 (e^-4.6 ≈ rate 0.01).
  const torch::Tensor logits = torch::tensor({10.0, 9.0, 6.0, 4.0}).view({1, 4});
  const torch::Tensor keep = RelativeTopKeep(logits, 0.01);
  EXPECT_TRUE(keep[0][0].item<bool>());
  EXPECT_TRUE(keep[0][1].item<bool>());
  EXPECT_TRUE(keep[0][2].item<bool>());
  EXPECT_FALSE(keep[0][3].item<bool>());
  // k = max(1, rate·V): the top token is always kept, however flat the rest.
  EXPECT_TRUE(RelativeTopKeep(torch::tensor({0.0, -50.0}).view({1, 2}), 0.01)[0][0].item<bool>());
}

TEST(UldCombineTest, AUniformAssistantChangesNothingAndAPeakedOneLowersItsToken) {
  std::unique_ptr<CausalLm> target_lm = testing::TinyCausalLm(3);
  std::shared_ptr<const CausalLm> target(std::move(target_lm));
  std::shared_ptr<const CausalLm> assistant(testing::TinyCausalLm(4));
  UldAssistantConfig config;
  UNL_ASSERT_OK_AND_ASSIGN(auto composite, LogitDifferenceLm::Stack(target, {assistant, config}));
  const torch::Tensor t = torch::tensor({3.0, 2.5, 2.0, -9.0}).view({1, 4});
  // A constant (uniform) assistant at any offset: the logits are the target's.
  for (double offset : {-7.0, 0.0, 5.0}) {
    const torch::Tensor out = composite->Combine(t, {torch::full({1, 4}, offset)}, false);
    EXPECT_LT(MaxAbsDiff(out, t), 1e-6) << offset;
  }
  // Peaked on token 0: token 0 falls by α·(a0 − mean of kept), the filtered token 3 is untouched.
  const torch::Tensor peaked = torch::tensor({4.0, 0.0, 0.0, 100.0}).view({1, 4});
  const torch::Tensor out = composite->Combine(t, {peaked}, false);
  const double mean = 4.0 / 3.0;
  EXPECT_NEAR(out[0][0].item<double>(), 3.0 - 0.75 * (4.0 - mean), 1e-5);
  EXPECT_NEAR(out[0][1].item<double>(), 2.5 + 0.75 * mean, 1e-5);
  EXPECT_NEAR(out[0][3].item<double>(), -9.0, 1e-6);
  // Generation: the filtered token is at −1000 and can never be produced.
  EXPECT_NEAR(composite->Combine(t, {peaked}, true)[0][3].item<double>(), -1000.0, 1e-6);
}

// An assistant of `target` (seed 7) whose LoRA B factors are non-zero, so the LoRA factors
// matter (a fresh assistant equals the truncated target); in eval mode.
absl::StatusOr<std::shared_ptr<const CausalLm>> TrainedLookingAssistant(
    const CausalLm& target, const UldAssistantConfig& config) {
  absl::StatusOr<std::unique_ptr<CausalLm>> assistant = MakeUldAssistant(target, config, 7);
  if (!assistant.ok()) return assistant.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, linear] : (*assistant)->module()->lora_linears())
      linear->lora_b().normal_(0, 0.5);
  }
  (*assistant)->module()->eval();
  return std::shared_ptr<const CausalLm>(*std::move(assistant));
}

TEST(UldCompositeTest, DecodeStatesMatchFullLogitsAndTheArtifactRoundTrips) {
  std::shared_ptr<const CausalLm> target(testing::TinyCausalLm(3));
  UldAssistantConfig config;
  config.num_layers = 1;
  config.lora_rank = 4;
  UNL_ASSERT_OK_AND_ASSIGN(std::shared_ptr<const CausalLm> shared,
                           TrainedLookingAssistant(*target, config));
  UNL_ASSERT_OK_AND_ASSIGN(auto composite, LogitDifferenceLm::Stack(target, {shared, config}));
  const std::vector<int64_t> seq = {1, 40, 41, 42, 43, 44, 45};
  const torch::Tensor full = composite->Logits(Ids(seq));  // [1, 7, V]
  EXPECT_GT(MaxAbsDiff(full, target->Logits(Ids(seq))), 1e-3);
  std::unique_ptr<DecodeState> state = composite->NewDecodeState(1);
  ASSERT_TRUE(state->supports_padding());
  torch::Tensor step = state->Step(Ids({1, 40, 41, 42}));
  EXPECT_LT(MaxAbsDiff(step[0], full[0][3]), 1e-4);
  for (size_t i = 4; i < seq.size(); ++i) {
    step = state->Step(Ids({seq[i]}));
    EXPECT_LT(MaxAbsDiff(step[0], full[0][static_cast<int64_t>(i)]), 1e-4) << i;
  }

  const std::string dir = TempDir("roundtrip");
  UNL_ASSERT_OK(composite->Save(dir));
  EXPECT_TRUE(fs::exists(fs::path(dir) / "adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(fs::path(dir) / "adapter_config.json"));
  EXPECT_FALSE(fs::exists(fs::path(dir) / "model.safetensors")) << "the target must not be copied";
  UNL_ASSERT_OK_AND_ASSIGN(auto loaded, LogitDifferenceLm::LoadOnParent(dir, target));
  EXPECT_LT(MaxAbsDiff(loaded->Logits(Ids(seq)), full), 1e-5);

  // Requests stack: a second assistant on the loaded composite keeps the first.
  UNL_ASSERT_OK_AND_ASSIGN(auto stacked, LogitDifferenceLm::LoadOnParent(
                                             dir, std::shared_ptr<const Model>(std::move(loaded))));
  EXPECT_EQ(stacked->assistants().size(), 2u);
  EXPECT_EQ(&stacked->target(), target.get());

  // A corrupt artifact is an error naming what is wrong.
  std::ofstream(fs::path(dir) / "uld_config.json") << R"({"num_layers": 9})";
  EXPECT_THAT(LogitDifferenceLm::LoadOnParent(dir, target),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lora_rank")));
  fs::remove_all(dir);
}

// One question per person, each living in their own city.
std::vector<TextExample> People(const std::vector<std::string>& names,
                                const std::vector<std::string>& cities) {
  std::vector<TextExample> out;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& n = names[i];
    TextExample e;
    e.question = "Where does " + n + " live?";
    e.answer = n + " lives in " + cities[i] + ".";
    e.paraphrased_questions = {"In which city does " + n + " live?"};
    e.perturbed_answers = {n + " lives in Lima.", n + " lives in Rome."};
    out.push_back(e);
  }
  return out;
}

// Mean per-token answer probability of `examples` under `lm`.
double AnswerProbability(const LanguageModel& lm, const std::vector<TextExample>& examples) {
  std::vector<EncodedExample> encoded;
  for (const TextExample& e : examples)
    encoded.push_back(EncodeQa(lm.tokenizer(), e.question, e.answer));
  const TokenBatch batch = Collate(encoded, lm.pad_id(), lm.max_context());
  return GeometricMeanAnswerProbability(lm.Logits(batch.input_ids), batch.labels)
      .mean()
      .item<double>();
}

// Per-query settings: a view with another α / filter rate equals a composite built with them,
// shares the served composite (which is unchanged), and only accepts a subtraction at least as
// strong as the stored one.
TEST(UldCompositeTest, QuerySettingsOnlyStrengthenTheSubtraction) {
  std::shared_ptr<const CausalLm> target(testing::TinyCausalLm(3));
  UldAssistantConfig config;
  config.num_layers = 1;
  config.lora_rank = 4;
  config.alpha = 1.0;
  config.filter_rate = 0.1;
  UNL_ASSERT_OK_AND_ASSIGN(std::shared_ptr<const CausalLm> shared,
                           TrainedLookingAssistant(*target, config));
  UNL_ASSERT_OK_AND_ASSIGN(auto built, LogitDifferenceLm::Stack(target, {shared, config}));
  std::shared_ptr<const Model> served(std::move(built));
  const std::vector<int64_t> seq = {1, 40, 41, 42, 43, 44, 45};
  const torch::Tensor stored = served->AsLanguageModel()->Logits(Ids(seq));

  UNL_ASSERT_OK_AND_ASSIGN(auto view, LogitDifferenceLm::WithQuerySettings(served, 2.0, 0.01));
  UldAssistantConfig stronger = config;
  stronger.alpha = 2.0;
  stronger.filter_rate = 0.01;
  UNL_ASSERT_OK_AND_ASSIGN(auto expected, LogitDifferenceLm::Stack(target, {shared, stronger}));
  EXPECT_LT(MaxAbsDiff(view->Logits(Ids(seq)), expected->Logits(Ids(seq))), 1e-6);
  EXPECT_GT(MaxAbsDiff(view->Logits(Ids(seq)), stored), 1e-3);
  EXPECT_EQ(view->assistants()[0].model.get(), shared.get());  // no copy
  EXPECT_LT(MaxAbsDiff(served->AsLanguageModel()->Logits(Ids(seq)), stored), 1e-9);

  EXPECT_THAT(LogitDifferenceLm::WithQuerySettings(served, 0.5, std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alpha must be in [1, 4]")));
  EXPECT_THAT(LogitDifferenceLm::WithQuerySettings(served, 4.5, std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alpha")));
  EXPECT_THAT(LogitDifferenceLm::WithQuerySettings(served, std::nullopt, 0.2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("filter_rate must be in")));
  EXPECT_THAT(LogitDifferenceLm::WithQuerySettings(served, std::nullopt, 1e-5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("filter_rate")));
  EXPECT_THAT(LogitDifferenceLm::WithQuerySettings(target, 2.0, std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("uld method")));
}

TEST(UldMethodTest, TheCompositeForgetsTheForgetSetAndKeepsTheRest) {
  ErasureData data;
  data.forget = People({"Ana", "Bo", "Cy", "Di"}, {"Oslo", "Kyiv", "Quito", "Hanoi"});
  data.retain = People({"Ed", "Flo", "Gus", "Hal"}, {"Paris", "Dakar", "Seoul", "Perth"});
  const std::vector<TextExample> unseen =
      People({"Ivo", "Jan", "Kai", "Lu"}, {"Cairo", "Lagos", "Delhi", "Tunis"});
  // The target first memorises all twelve people (the assistant never sees the unseen four).
  std::unique_ptr<CausalLm> target = testing::TinyCausalLm(5, 64);
  std::vector<TextExample> all = data.forget;
  all.insert(all.end(), data.retain.begin(), data.retain.end());
  all.insert(all.end(), unseen.begin(), unseen.end());
  FinetuneOptions finetune;
  finetune.epochs = 150;
  finetune.batch_size = 12;
  finetune.learning_rate = 3e-3;
  finetune.warmup_epochs = 5;
  UNL_ASSERT_OK(FinetuneQa(*target, all, finetune, nullptr, nullptr).status());
  target->module()->eval();
  std::shared_ptr<const Model> parent(std::move(target));
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                           MethodRegistry::Builtin().Create("uld", {{"epochs", 150},
                                                                    {"batch_size", 4},
                                                                    {"num_layers", 1},
                                                                    {"seed", 1},
                                                                    {"learning_rate", 5e-3},
                                                                    {"alpha", 2.0}}));
  EXPECT_EQ(method->artifact_kind(), ArtifactKind::kAssistant);
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext ctx;
  ctx.parent = parent.get();
  ctx.parent_owner = parent;
  ctx.data = &data;
  ctx.progress = &progress;
  ctx.cancel = &cancel;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate candidate, method->Run(ctx));
  ASSERT_EQ(candidate.kind, ArtifactKind::kAssistant);
  const LanguageModel& before = *parent->AsLanguageModel();
  const LanguageModel& after = *candidate.model->AsLanguageModel();
  const double forget_before = AnswerProbability(before, data.forget);
  const double forget_after = AnswerProbability(after, data.forget);
  const double retain_before = AnswerProbability(before, data.retain);
  const double retain_after = AnswerProbability(after, data.retain);
  const double unseen_before = AnswerProbability(before, unseen);
  const double unseen_after = AnswerProbability(after, unseen);
  std::cout << "forget " << forget_before << " -> " << forget_after << ", retain " << retain_before
            << " -> " << retain_after << ", unseen " << unseen_before << " -> " << unseen_after
            << "\n";
  // The assistant learnt the forget answers, so subtracting it lowers them to below a quarter.
  EXPECT_LT(forget_after, 0.25 * forget_before);
  // The people its uniform term covered keep most of their answer probability (measured 87% at
  // α = 2 on this 64-wide toy; the paper's "no utility loss" is checked at demo scale).
  EXPECT_GT(retain_after, 0.8 * retain_before);
  // People it never saw are hit far less than the forget set (a 4-person retain set teaches the
  // assistant little about strangers; the demo-scale figures are in the behaviour tests).
  EXPECT_GT(unseen_after / unseen_before, 5.0 * forget_after / forget_before);
  EXPECT_FALSE(candidate.facts.value("target_trained", true));

  // A full-weight method refuses the composite, naming the way out.
  std::shared_ptr<const Model> composite(std::move(candidate.model));
  ctx.parent = composite.get();
  ctx.parent_owner = composite;
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> gd,
                           MethodRegistry::Builtin().Create("gradient_ascent", {{"epochs", 1}}));
  EXPECT_THAT(gd->Run(ctx), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("uld")));
}

TEST(UldMethodTest, ParametersAreRangeChecked) {
  EXPECT_THAT(UldMethod::Create({{"alpha", -1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uld.alpha")));
  EXPECT_THAT(UldMethod::Create({{"filter_rate", 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uld.filter_rate")));
  EXPECT_THAT(UldMethod::Create({{"lora_rank", 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uld.lora_rank")));
  EXPECT_THAT(UldMethod::Create({{"bogus", 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uld.bogus")));
  UNL_ASSERT_OK_AND_ASSIGN(auto method, UldMethod::Create(nlohmann::json::object()));
  ErasureData data;
  data.forget = People({"Ana"}, {"Oslo"});
  data.forget[0].perturbed_answers.clear();
  EXPECT_THAT(method->CheckData(data),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uniform term")));
}

TEST(UldLossTest, UniformKlIsZeroForUniformLogitsAndPositiveOtherwise) {
  const torch::Tensor mask = torch::ones({1, 2}, torch::kBool);
  EXPECT_NEAR(UniformKl(torch::zeros({1, 2, 5}), mask).item<double>(), 0.0, 1e-6);
  torch::Tensor peaked = torch::zeros({1, 2, 5});
  peaked[0][0][0] = 5.0;
  EXPECT_GT(UniformKl(peaked, mask).item<double>(), 0.1);
  // Masked positions do not count.
  const torch::Tensor first_only = torch::tensor({false, true}).view({1, 2});
  EXPECT_NEAR(UniformKl(peaked, first_only).item<double>(), 0.0, 1e-6);
}

}  // namespace
}  // namespace unlearning::core
