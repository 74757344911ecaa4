// Representation-level figures: attribute sites, the linear attribute probe, and the point of the
// seed paper "Are We Truly Forgetting?": a candidate that only changes its output layer hides the
// forget answers from the logits, yet its features keep them (CKA 1, probe accuracy unchanged).
#include "core/verify/representation.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "core/data/tofu_generator.h"
#include "core/models/causal_lm.h"
#include "core/verify/text_verification.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

TextExample Item(const std::string& entity, const std::string& question, const std::string& answer,
                 std::vector<std::string> perturbed) {
  TextExample e;
  e.entity = entity;
  e.question = question;
  e.answer = answer;
  e.perturbed_answers = std::move(perturbed);
  return e;
}

TEST(RepresentationTest, AttributeSitesCutAtTheSharedWordsOfTheAnswers) {
  const std::vector<TextExample> examples = {
      Item("Ann Lee", "Where was Ann Lee born?", "Ann was born in Oslo.",
           {"Ann was born in Oulu.", "Ann was born in Lima."}),  // "O" shared: cut back to a word
      Item("Ann Lee", "What does Ann Lee do?", "Ann is a potter.", {}),  // no perturbed answers
      Item("", "Where was Bo born?", "Bo was born in Rome.",
           {"Bo was born in Riga."}),                                   // no entity
      Item("Cy Ng", "In what year was Cy Ng born?", "1950", {"1961"}),  // nothing shared
      Item("Cy Ng", "Where was Cy Ng born?", "Cy was born in New York City!",
           {"Cy was born in Lima."}),
  };
  const std::vector<AttributeSite> sites = AttributeSites(examples);
  ASSERT_EQ(sites.size(), 2u);
  EXPECT_EQ(sites[0].example, 0u);
  EXPECT_EQ(sites[0].kind, "Where was {} born?");
  EXPECT_EQ(sites[0].answer_head, "Ann was born in ");
  EXPECT_EQ(sites[0].value, "Oslo");
  EXPECT_EQ(sites[1].example, 4u);
  EXPECT_EQ(sites[1].kind, "Where was {} born?");  // the same kind as Ann's
  EXPECT_EQ(sites[1].value, "New York City");

  // The generator's data has a site for every item.
  TofuOptions options;
  options.entities = 6;
  options.questions_per_entity = 4;
  options.seed = 2;
  TofuDataset data = GenerateTofu(options).value();
  EXPECT_EQ(AttributeSites(data.retain).size(), data.retain.size());
}

// States that encode the value linearly (plus noise) are read back on unseen sites far above
// chance; states unrelated to the value are read at about chance.
TEST(RepresentationTest, ProbeReadsLinearlyEncodedValuesAndNotNoise) {
  torch::manual_seed(7);
  const std::vector<std::string> kinds = {"Where was {} born?", "What does {} do?"};
  const int64_t values_per_kind = 5, dims = 16;
  torch::Tensor codes = torch::randn({2 * values_per_kind, dims});  // one direction per value
  auto make = [&](int64_t n, bool informative) {
    std::vector<AttributeSite> sites;
    torch::Tensor states = torch::randn({n, dims}) * 0.5;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t kind = i % 2;
      const int64_t value = (i / 2) % values_per_kind;
      AttributeSite site;
      site.kind = kinds[kind];
      site.value = "v" + std::to_string(value);
      sites.push_back(site);
      if (informative) states[i] += codes[kind * values_per_kind + value];
    }
    return std::make_pair(states, sites);
  };
  auto [train_states, train_sites] = make(100, true);
  UNL_ASSERT_OK_AND_ASSIGN(AttributeProbe probe, AttributeProbe::Train(train_states, train_sites));
  auto [test_states, test_sites] = make(60, true);
  auto [noise_states, noise_sites] = make(60, false);
  EXPECT_EQ(probe.Covered(test_sites), 60);
  EXPECT_NEAR(probe.Chance(test_sites), 1.0 / values_per_kind, 1e-12);
  EXPECT_GT(probe.Accuracy(test_states, test_sites), 0.9);
  EXPECT_LT(probe.Accuracy(noise_states, noise_sites), 0.45);

  // A value the probe never saw is not scored; too few sites is an error.
  AttributeSite unseen;
  unseen.kind = kinds[0];
  unseen.value = "elsewhere";
  EXPECT_FALSE(probe.Covers(unseen));
  EXPECT_TRUE(std::isnan(probe.Accuracy(torch::zeros({1, dims}), {unseen})));
  EXPECT_THAT(AttributeProbe::Train(torch::zeros({1, dims}), {unseen}),
              ::unlearning::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                              ::testing::HasSubstr(">= 2 sites")));
}

TextProbes Probes() {
  TofuOptions options;
  options.entities = 12;
  options.questions_per_entity = 4;
  options.forget_fraction = 0.25;
  options.holdout_fraction = 0.25;
  options.seed = 5;
  TofuDataset data = GenerateTofu(options).value();
  TextProbes probes;
  probes.forget = data.forget;
  probes.retain = data.retain;
  probes.holdout = data.holdout;
  return probes;
}

// A candidate whose only change is a new output layer: the logits move (the forget answers'
// probability changes), the features do not: CKA 1 and the same probe accuracy as the parent.
// A candidate with re-initialised blocks changes the features: CKA falls below 1.
TEST(RepresentationTest, OutputLayerChangesDoNotHideKnowledgeFromTheFeatures) {
  std::unique_ptr<CausalLm> parent = ::unlearning::testing::TinyCausalLm(3);
  std::unique_ptr<CausalLm> head_only = parent->CloneLm(torch::kCPU);
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(11);
    head_only->module()->named_parameters()["lm_head.weight"].normal_(0.0, 0.2);
  }
  std::unique_ptr<CausalLm> rebuilt = ::unlearning::testing::TinyCausalLm(4);
  const TextProbes probes = Probes();
  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport report,
                           VerifyText(*parent, *head_only, probes, {}, nullptr));
  const FigureValue* probability = report.Find("forget.answer_probability");
  ASSERT_NE(probability, nullptr);
  EXPECT_GT(std::abs(probability->after - probability->before), 0.1 * probability->before);
  const FigureValue* cka = report.Find("repr.forget_cka");
  const FigureValue* probe = report.Find("repr.attribute_probe_accuracy");
  const FigureValue* chance = report.Find("repr.attribute_probe_chance");
  const FigureValue* n = report.Find("repr.attribute_probe_n");
  ASSERT_NE(cka, nullptr);
  ASSERT_NE(probe, nullptr);
  ASSERT_NE(chance, nullptr);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(cka->before, 1.0);
  EXPECT_NEAR(cka->after, 1.0, 1e-6);
  EXPECT_EQ(probe->after, probe->before);
  EXPECT_GT(n->after, 0.0);
  EXPECT_GT(chance->after, 0.0);
  EXPECT_LT(chance->after, 1.0);
  EXPECT_EQ(TextFigureTier("repr.forget_cka"), Tier::kT0);
  EXPECT_EQ(TextFigureTier("repr.attribute_probe_holdout"), Tier::kT1);

  UNL_ASSERT_OK_AND_ASSIGN(VerificationReport other,
                           VerifyText(*parent, *rebuilt, probes, {}, nullptr));
  ASSERT_NE(other.Find("repr.forget_cka"), nullptr);
  EXPECT_LT(other.Find("repr.forget_cka")->after, 0.9);
}

}  // namespace
}  // namespace unlearning::core
