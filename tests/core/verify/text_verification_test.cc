#include "core/verify/text_verification.h"

#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "core/data/erasure_data.h"
#include "core/data/model_probes.h"
#include "core/data/text_example.h"
#include "core/data/tofu_generator.h"
#include "core/models/causal_lm.h"
#include "core/text/tokenizer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::unique_ptr<CausalLm> TinyModel(uint64_t seed) {
  return ::unlearning::testing::TinyCausalLm(seed);
}

TextProbes SmallProbes() {
  TofuOptions options;
  options.entities = 10;
  options.questions_per_entity = 3;
  options.forget_fraction = 0.2;
  options.holdout_fraction = 0.2;
  options.seed = 5;
  TofuDataset data = GenerateTofu(options).value();
  TextProbes probes;
  probes.forget = data.forget;
  probes.retain.assign(data.retain.begin(), data.retain.begin() + 6);
  probes.holdout = data.holdout;
  return probes;
}

// Fine-tunes `model` in place on `examples` (full batch, AdamW) for `steps` steps.
void Train(CausalLm* model, const std::vector<TextExample>& examples, int steps) {
  std::vector<EncodedExample> encoded;
  for (const TextExample& e : examples) {
    encoded.push_back(EncodeQa(model->tokenizer(), e.question, e.answer));
  }
  TokenBatch batch = Collate(encoded, model->tokenizer().pad_id());
  torch::optim::AdamW optimizer(model->module()->parameters(),
                                torch::optim::AdamWOptions(3e-3).weight_decay(0.0));
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    torch::Tensor logits = model->module()->forward(batch.input_ids);  // [B, T, V]
    torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), batch.labels.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex));
    loss.backward();
    optimizer.step();
  }
}

TEST(TextVerificationTest, FiguresAreInRange) {
  std::unique_ptr<CausalLm> model = TinyModel(1);
  const TextProbes probes = SmallProbes();
  UNL_ASSERT_OK_AND_ASSIGN(auto figures, ComputeTextFigures(*model, probes, nullptr));
  for (const char* key :
       {"forget.answer_probability", "forget.rouge_l_recall",
        "forget.paraphrase_answer_probability", "forget.truth_ratio", "retain.answer_probability",
        "retain.rouge_l_recall", "retain.truth_ratio", "holdout.answer_probability",
        "holdout.rouge_l_recall", "holdout.truth_ratio", "mia.loss_auc", "mia.min_k_auc"}) {
    ASSERT_EQ(figures.count(key), 1u) << key;
    EXPECT_GE(figures[key], 0.0) << key;
    EXPECT_LE(figures[key], 1.0) << key;
  }
  // A random byte-level model spreads mass over 259 tokens: far from certain about any answer.
  EXPECT_GT(figures["forget.answer_probability"], 0.0);
  EXPECT_LT(figures["forget.answer_probability"], 0.5);
}

TEST(TextVerificationTest, ScoresArePerExampleAndConsistent) {
  std::unique_ptr<CausalLm> model = TinyModel(2);
  const TextProbes probes = SmallProbes();
  UNL_ASSERT_OK_AND_ASSIGN(ExampleScores scores,
                           ScoreExamples(*model, probes.forget, /*with_rouge=*/false, nullptr));
  ASSERT_EQ(scores.answer_probability.size(), probes.forget.size());
  ASSERT_EQ(scores.mean_nll.size(), probes.forget.size());
  ASSERT_EQ(scores.min_k_log_prob.size(), probes.forget.size());
  EXPECT_TRUE(scores.rouge_l_recall.empty());
  for (size_t i = 0; i < probes.forget.size(); ++i) {
    EXPECT_NEAR(scores.answer_probability[i], std::exp(-scores.mean_nll[i]), 1e-9);
    // The lowest 20% of log-probs average below the overall mean.
    EXPECT_LE(scores.min_k_log_prob[i], -scores.mean_nll[i] + 1e-9);
  }
  // Batching must not change the figures: scoring one example alone gives the same value.
  UNL_ASSERT_OK_AND_ASSIGN(ExampleScores single,
                           ScoreExamples(*model, {probes.forget[3]}, false, nullptr));
  EXPECT_NEAR(single.answer_probability[0], scores.answer_probability[3], 1e-5);
}

// Mean answer-token log-probability of (question, answer) by one plain full forward.
double PlainMeanLogProb(const CausalLm& model, const std::string& question,
                        const std::string& answer) {
  EncodedExample e = EncodeQa(model.tokenizer(), question, answer, /*add_eos=*/false);
  torch::Tensor ids = torch::tensor(e.ids, torch::kInt64).view({1, -1});
  torch::Tensor lp = torch::log_softmax(model.Logits(ids)[0], -1);  // [T, V]
  double sum = 0.0;
  for (size_t t = static_cast<size_t>(e.answer_start); t < e.ids.size(); ++t) {
    sum += lp[static_cast<int64_t>(t) - 1][e.ids[t]].item<double>();
  }
  return sum / static_cast<double>(e.ids.size() - static_cast<size_t>(e.answer_start));
}

// Answers scored against their question's prompt, prefilled once and shared through the KV cache,
// equal a plain full forward of each (question, answer): answer probabilities and truth ratios.
TEST(TextVerificationTest, SharedPromptScoringEqualsPlainForwards) {
  std::unique_ptr<CausalLm> model = TinyModel(6);
  const TextProbes probes = SmallProbes();
  UNL_ASSERT_OK_AND_ASSIGN(ExampleScores scores,
                           ScoreExamples(*model, probes.retain, /*with_rouge=*/false, nullptr));
  for (size_t i = 0; i < probes.retain.size(); ++i) {
    const TextExample& e = probes.retain[i];
    const double correct = std::exp(PlainMeanLogProb(*model, e.question, e.answer));
    EXPECT_NEAR(scores.answer_probability[i], correct, 1e-5 * correct) << i;
    ASSERT_FALSE(e.perturbed_answers.empty());
    double wrong = 0.0;
    for (const std::string& a : e.perturbed_answers) {
      wrong += std::exp(PlainMeanLogProb(*model, e.question, a));
    }
    wrong /= static_cast<double>(e.perturbed_answers.size());
    EXPECT_NEAR(scores.truth_ratio[i], wrong / (correct + 1e-10), 1e-4 * scores.truth_ratio[i])
        << i;
  }
}

TEST(TextVerificationTest, TrainingOnForgetSetRaisesForgetFigures) {
  std::unique_ptr<CausalLm> before = TinyModel(3);
  std::unique_ptr<CausalLm> after = before->CloneLm(torch::kCPU);
  const TextProbes probes = SmallProbes();
  Train(after.get(), probes.forget, 40);

  VerificationThresholds thresholds;  // forget ratio <= 0.5: a model that learned must fail
  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport report,
                           VerifyText(*before, *after, probes, thresholds.List(), nullptr));
  const FigureValue* forget = report.Find("forget.answer_probability");
  ASSERT_NE(forget, nullptr);
  EXPECT_GT(forget->after, 2.0 * forget->before);
  const FigureValue* mia = report.Find("mia.loss_auc");
  ASSERT_NE(mia, nullptr);
  EXPECT_GT(mia->after, 0.8);  // the trained-on forget set now separates from holdout
  const FigureValue* kl = report.Find("retain.collateral_kl");
  ASSERT_NE(kl, nullptr);
  EXPECT_EQ(kl->before, 0.0);
  EXPECT_GT(kl->after, 0.0);
  EXPECT_FALSE(report.passed);
  ASSERT_FALSE(report.checks.empty());
  EXPECT_THAT(report.checks[0], HasSubstr("forget.answer_probability ratio"));
  EXPECT_THAT(report.checks[0], HasSubstr("FAILED"));
  EXPECT_EQ(report.forget_examples, static_cast<int>(probes.forget.size()));
  EXPECT_EQ(report.holdout_examples, static_cast<int>(probes.holdout.size()));
  for (size_t i = 1; i < report.figures.size(); ++i) {
    EXPECT_LT(report.figures[i - 1].name, report.figures[i].name);
  }

  // Swapping roles (the trained model "unlearned" back to random) passes the forget check.
  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport reverse,
                           VerifyText(*after, *before, probes, thresholds.List(), nullptr));
  EXPECT_THAT(reverse.checks[0], HasSubstr(": ok"));
}

TEST(TextVerificationTest, CollateralKlIsZeroForIdenticalModels) {
  std::unique_ptr<CausalLm> model = TinyModel(4);
  std::unique_ptr<CausalLm> copy = model->CloneLm(torch::kCPU);
  std::unique_ptr<CausalLm> other = TinyModel(5);
  const TextProbes probes = SmallProbes();
  UNL_ASSERT_OK_AND_ASSIGN(double same, CollateralKl(*model, *copy, probes.retain, nullptr));
  EXPECT_NEAR(same, 0.0, 1e-6);
  UNL_ASSERT_OK_AND_ASSIGN(double different, CollateralKl(*model, *other, probes.retain, nullptr));
  EXPECT_GT(different, 1e-4);
  EXPECT_THAT(CollateralKl(*model, *copy, {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retain")));
}

TEST(TextVerificationTest, OptionalProbeSetsAndErrors) {
  std::unique_ptr<CausalLm> model = TinyModel(6);
  TextProbes probes = SmallProbes();
  probes.retain.clear();
  probes.holdout.clear();
  UNL_ASSERT_OK_AND_ASSIGN(auto figures, ComputeTextFigures(*model, probes, nullptr));
  EXPECT_EQ(figures.count("forget.answer_probability"), 1u);
  EXPECT_EQ(figures.count("retain.answer_probability"), 0u);
  EXPECT_EQ(figures.count("mia.loss_auc"), 0u);
  probes.forget.clear();
  EXPECT_THAT(ComputeTextFigures(*model, probes, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget")));
}

TEST(TextVerificationTest, HonoursCancellation) {
  std::unique_ptr<CausalLm> model = TinyModel(7);
  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(ComputeTextFigures(*model, SmallProbes(), &cancel),
              StatusIs(absl::StatusCode::kCancelled, ::testing::_));
}

TEST(TextVerificationTest, UsesCachedBeforeFigures) {
  std::unique_ptr<CausalLm> model = TinyModel(8);
  TextProbes probes = SmallProbes();
  probes.retain.clear();
  std::unique_ptr<CausalLm> after = model->CloneLm(torch::kCPU);
  const std::map<std::string, double> cached = {{"forget.answer_probability", 1.0}};
  UNL_ASSERT_OK_AND_ASSIGN(
      VerificationReport report,
      VerifyText(*model, *after, probes, VerificationThresholds{}.List(), nullptr, &cached));
  const FigureValue* forget = report.Find("forget.answer_probability");
  ASSERT_NE(forget, nullptr);
  EXPECT_EQ(forget->before, 1.0);  // taken from the cache, not recomputed
  EXPECT_TRUE(report.passed);      // random model's probability is far below 0.5 of 1.0
}

TEST(TextVerificationTest, RepetitionRateSeparatesLoopsFromProse) {
  EXPECT_GT(RepetitionRate("tttttttttttttttttttttttttttttttttttttt"), 0.9);
  EXPECT_LT(RepetitionRate("Lentas was born in Nairobi."), 0.05);
  EXPECT_EQ(RepetitionRate("abc"), 0.0);  // shorter than one 4-gram pair
}

TEST(TextVerificationTest, TiersAndComparisonsOfAReport) {
  // The parent memorised forget + retain; the candidate is a fresh random model.
  std::unique_ptr<CausalLm> parent = TinyModel(2);
  TextProbes probes = SmallProbes();
  std::vector<TextExample> train = probes.forget;
  train.insert(train.end(), probes.retain.begin(), probes.retain.end());
  Train(parent.get(), train, 60);
  std::unique_ptr<CausalLm> candidate = TinyModel(3);
  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport report, VerifyText(*parent, *candidate, probes,
                                                                 DefaultTextThresholds(), nullptr));
  ASSERT_EQ(report.tiers.size(), 3u);
  EXPECT_TRUE(report.tiers[0].computed);
  EXPECT_TRUE(report.tiers[1].computed);
  EXPECT_FALSE(report.tiers[2].computed);  // no reference model
  EXPECT_THAT(report.tiers[2].basis, HasSubstr("no reference model"));
  EXPECT_EQ(report.suite_sha256.size(), 64u);
  const FigureValue* ks = report.Find("unseen.answer_probability_ks_d");
  ASSERT_NE(ks, nullptr);
  EXPECT_EQ(ks->tier, Tier::kT1);
  // The parent's forget set stands out from its holdout set; the random model's does not stand
  // out as much (compared with the parent's holdout behaviour).
  EXPECT_GT(ks->before, 0.8);
  const FigureValue* ratio = report.Find("unseen.answer_probability_ratio");
  ASSERT_NE(ratio, nullptr);
  EXPECT_GT(ratio->before, 1.5);  // memorised: far likelier than never-seen data
  const FigureValue* privleak = report.Find("mia.privleak");
  ASSERT_NE(privleak, nullptr);
  EXPECT_NEAR(privleak->before, (report.Find("mia.loss_auc")->before - 0.5) / 0.5, 1e-12);
  EXPECT_EQ(report.Find("retain.model_utility")->tier, Tier::kT0);
  EXPECT_EQ(report.Find("forget.answer_plausibility")->tier, Tier::kT1);
  // A random model answers with noise: the parent finds its answers far less plausible than
  // its own answers to never-seen questions, and the gibberish check refuses it.
  EXPECT_LT(report.Find("forget.answer_plausibility")->after, -1.5);
  EXPECT_FALSE(report.passed);

  // T2 with a reference that never saw the forget set: forget quality is computed.
  std::unique_ptr<CausalLm> reference = TinyModel(2);
  Train(reference.get(), probes.retain, 60);
  probes.reference = reference.get();
  for (const TextExample& e : probes.forget) probes.reference_unseen.insert(e.question);
  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport t2,
                           VerifyText(*parent, *candidate, probes, {}, nullptr));
  ASSERT_TRUE(t2.tiers[2].computed);
  const FigureValue* fq = t2.Find("forget_quality.ks_p");
  ASSERT_NE(fq, nullptr);
  EXPECT_EQ(fq->tier, Tier::kT2);
  EXPECT_LT(fq->before, 0.05);  // the parent's truth ratios differ from the reference's
  ASSERT_NE(t2.Find("mia.privleak_reference"), nullptr);
  // A reference that saw one forget example does not apply.
  probes.reference_unseen.erase(probes.forget[0].question);
  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport partial,
                           VerifyText(*parent, *candidate, probes, {}, nullptr));
  EXPECT_FALSE(partial.tiers[2].computed);
  EXPECT_EQ(partial.Find("forget_quality.ks_p"), nullptr);
}

TEST(TextVerifierTest, AlreadyAbsentWhenTheParentMeetsTheThresholds) {
  // A parent that never trained on the forget set (it knows only the retain set): its forget set
  // looks like its holdout set, so the request's T1 checks already hold.
  std::shared_ptr<CausalLm> parent = TinyModel(4);
  TextProbes probes = SmallProbes();
  Train(parent.get(), probes.retain, 60);
  ErasureData data;
  data.forget = probes.forget;
  ModelProbes model_probes;
  model_probes.text_retain = probes.retain;
  model_probes.text_holdout = probes.holdout;
  TextVerifier verifier;
  VerificationInputs in;
  in.before = parent.get();
  in.data = &data;
  in.probes = &model_probes;
  in.thresholds = {{"unseen.answer_probability_ratio", Comparison::kAtMost, 1.5, true},
                   {"mia.privleak", Comparison::kAbsAtMost, 0.5, true}};
  UNL_ASSERT_OK_AND_ASSIGN(std::optional<VerificationReport> absent,
                           verifier.CheckAlreadyAbsent(in));
  ASSERT_TRUE(absent.has_value());
  EXPECT_TRUE(absent->already_absent);
  EXPECT_TRUE(absent->passed);

  // The same parent after memorising the forget set: not absent, the method must run.
  Train(parent.get(), probes.forget, 60);
  in.parent_key = "";  // no cache
  UNL_ASSERT_OK_AND_ASSIGN(absent, verifier.CheckAlreadyAbsent(in));
  EXPECT_FALSE(absent.has_value());

  // Checks without an "as if never seen" figure are no evidence of absence (a ratio against
  // itself always holds; an AUC <= 1 always holds).
  in.thresholds = {{"forget.answer_probability", Comparison::kRatioAtMost, 1.0, true},
                   {"mia.loss_auc", Comparison::kAtMost, 1.0, false}};
  UNL_ASSERT_OK_AND_ASSIGN(absent, verifier.CheckAlreadyAbsent(in));
  EXPECT_FALSE(absent.has_value());

  // Without holdout probes there is no T1 evidence: never "already absent".
  model_probes.text_holdout.clear();
  in.thresholds = {{"unseen.answer_probability_ratio", Comparison::kAtMost, 100.0, false}};
  UNL_ASSERT_OK_AND_ASSIGN(absent, verifier.CheckAlreadyAbsent(in));
  EXPECT_FALSE(absent.has_value());
}

// --- The pure threshold decision on hand-built figure maps. ---

std::map<std::string, double> Figures(double forget, double retain, double mia) {
  return {{"forget.answer_probability", forget},
          {"retain.answer_probability", retain},
          {"mia.loss_auc", mia}};
}

TEST(DecideThresholdsTest, PassesWhenEveryCheckHolds) {
  VerificationThresholds t{0.5, 0.8, 0.7};
  ThresholdDecision d =
      DecideThresholds(Figures(0.5, 0.6, 0.9), Figures(0.02, 0.57, 0.55), t.List());
  EXPECT_TRUE(d.passed);
  ASSERT_EQ(d.checks.size(), 3u);
  EXPECT_EQ(d.checks[0], "forget.answer_probability ratio 0.040 <= 0.50: ok");
  EXPECT_EQ(d.checks[1], "retain.answer_probability ratio 0.950 >= 0.80: ok");
  EXPECT_EQ(d.checks[2], "mia.loss_auc 0.550 <= 0.70: ok");
}

TEST(DecideThresholdsTest, EachCheckCanFailAlone) {
  VerificationThresholds t{0.5, 0.8, 0.7};
  const auto before = Figures(0.5, 0.6, 0.9);
  ThresholdDecision forget = DecideThresholds(before, Figures(0.3, 0.6, 0.5), t.List());
  EXPECT_FALSE(forget.passed);
  EXPECT_THAT(forget.checks[0], HasSubstr("0.600 <= 0.50: FAILED"));
  ThresholdDecision retain = DecideThresholds(before, Figures(0.1, 0.3, 0.5), t.List());
  EXPECT_FALSE(retain.passed);
  EXPECT_THAT(retain.checks[1], HasSubstr("0.500 >= 0.80: FAILED"));
  ThresholdDecision mia = DecideThresholds(before, Figures(0.1, 0.6, 0.71), t.List());
  EXPECT_FALSE(mia.passed);
  EXPECT_THAT(mia.checks[2], HasSubstr("FAILED"));
  // Boundaries are inclusive.
  EXPECT_TRUE(DecideThresholds(before, Figures(0.25, 0.48, 0.7), t.List()).passed);
}

TEST(DecideThresholdsTest, AbsAtMostIsTwoSided) {
  const std::vector<Threshold> t = {{"mia.privleak", Comparison::kAbsAtMost, 0.5, true}};
  EXPECT_TRUE(DecideThresholds({}, {{"mia.privleak", 0.3}}, t).passed);
  EXPECT_TRUE(DecideThresholds({}, {{"mia.privleak", -0.4}}, t).passed);
  ThresholdDecision over = DecideThresholds({}, {{"mia.privleak", -0.5 - 1e-9 - 0.2}}, t);
  EXPECT_FALSE(over.passed);  // over-unlearning fails like memorisation
  EXPECT_EQ(over.checks[0], "|mia.privleak| 0.700 <= 0.50: FAILED");
  EXPECT_FALSE(DecideThresholds({}, {{"mia.privleak", 0.9}}, t).passed);
  EXPECT_FALSE(ValidateThresholds({{"mia.privleak", Comparison::kAbsAtMost, -1.0, true}},
                                  {"mia.privleak"}, "causal_lm")
                   .ok());
}

TEST(DecideThresholdsTest, MissingAndDegenerateFigures) {
  VerificationThresholds t{0.5, 0.8, 0.7};
  // No forget figure: fails.
  EXPECT_FALSE(DecideThresholds({}, {}, t.List()).passed);
  // No retain / holdout figures: those checks are skipped, not failed.
  const std::map<std::string, double> only_forget_before = {{"forget.answer_probability", 0.4}};
  const std::map<std::string, double> only_forget_after = {{"forget.answer_probability", 0.1}};
  ThresholdDecision d = DecideThresholds(only_forget_before, only_forget_after, t.List());
  EXPECT_TRUE(d.passed);
  EXPECT_THAT(d.checks[1], HasSubstr("skipped"));
  EXPECT_THAT(d.checks[2], HasSubstr("skipped"));
  // A disabled retain check (ratio 0) emits no line.
  t.min_retain_probability_ratio = 0.0;
  EXPECT_EQ(DecideThresholds(only_forget_before, only_forget_after, t.List()).checks.size(), 2u);
  // NaN never passes; before = 0 with after > 0 is an infinite ratio.
  EXPECT_FALSE(
      DecideThresholds(Figures(0.4, 0.5, 0.5), Figures(std::nan(""), 0.5, 0.5), t.List()).passed);
  EXPECT_FALSE(DecideThresholds(Figures(0.0, 0.5, 0.5), Figures(0.1, 0.5, 0.5), t.List()).passed);
}

}  // namespace
}  // namespace unlearning::core
