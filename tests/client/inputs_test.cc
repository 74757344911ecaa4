// Unit tests of unlearnctl's local inputs: JSONL examples, templates, --param
// mapping, request ids.
#include "client/inputs.h"

#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <nlohmann/json.hpp>

#include "tests/testing/status_matchers.h"

namespace unlearning::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// Writes `content` to a fresh file under the test's temporary directory and
// returns its path.
std::string WriteFile(const std::string& name, const std::string& content) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << content;
  return path;
}

TEST(ReadExamplesJsonl, ReadsTofuRecordsAndSkipsBlankLines) {
  std::string path = WriteFile("ok.jsonl",
                               "{\"question\": \"Q1\", \"answer\": \"A1\", "
                               "\"paraphrased_questions\": [\"P1\", \"P2\"],"
                               " \"perturbed_answers\": [\"W1\"], \"extra\": 3}\n"
                               "\n"
                               "{\"question\": \"Q2\", \"answer\": \"A2\", "
                               "\"paraphrased_question\": \"P3\","
                               " \"perturbed_answer\": [\"W2\", \"W3\"]}\n");
  auto examples = ReadExamplesJsonl(path);
  UNL_ASSERT_OK(examples.status());
  ASSERT_EQ(examples->size(), 2u);
  EXPECT_EQ((*examples)[0].question(), "Q1");
  EXPECT_EQ((*examples)[0].answer(), "A1");
  EXPECT_THAT((*examples)[0].paraphrased_questions(), ElementsAre("P1", "P2"));
  EXPECT_THAT((*examples)[0].perturbed_answers(), ElementsAre("W1"));
  EXPECT_THAT((*examples)[1].paraphrased_questions(), ElementsAre("P3"));
  EXPECT_THAT((*examples)[1].perturbed_answers(), ElementsAre("W2", "W3"));
}

TEST(ReadExamplesJsonl, ErrorsNameFileAndLine) {
  std::string bad_json =
      WriteFile("bad.jsonl", "{\"question\": \"Q\", \"answer\": \"A\"}\n{oops\n");
  EXPECT_THAT(
      ReadExamplesJsonl(bad_json).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad_json + ":2: invalid JSON")));
  std::string missing = WriteFile("missing.jsonl", "\n\n{\"question\": \"Q\"}\n");
  EXPECT_THAT(
      ReadExamplesJsonl(missing).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(missing + ":3: missing \"answer\"")));
  std::string empty_answer = WriteFile("empty.jsonl", "{\"question\": \"Q\", \"answer\": \" \"}\n");
  EXPECT_THAT(ReadExamplesJsonl(empty_answer).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(":1: \"answer\" is empty")));
  std::string wrong_type = WriteFile(
      "type.jsonl", "{\"question\": \"Q\", \"answer\": \"A\", \"perturbed_answers\": [1]}\n");
  EXPECT_THAT(ReadExamplesJsonl(wrong_type).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("perturbed_answers")));
  EXPECT_THAT(ReadExamplesJsonl(::testing::TempDir() + "/does_not_exist.jsonl").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does_not_exist.jsonl")));
  EXPECT_THAT(ReadExamplesJsonl(WriteFile("blank.jsonl", "\n\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no examples")));
}

TEST(ReadTemplates, TextAndJsonl) {
  auto text = ReadTemplates(WriteFile("t.txt", "I don't know.\n\n  No idea.  \n"));
  UNL_ASSERT_OK(text.status());
  EXPECT_THAT(*text, ElementsAre("I don't know.", "No idea."));
  auto jsonl =
      ReadTemplates(WriteFile("t.jsonl", "\"I can't say.\"\n{\"answer\": \"Unknown.\"}\n"));
  UNL_ASSERT_OK(jsonl.status());
  EXPECT_THAT(*jsonl, ElementsAre("I can't say.", "Unknown."));
  EXPECT_THAT(ReadTemplates(WriteFile("bad_t.jsonl", "\"ok\"\n42\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad_t.jsonl:2:")));
}

TEST(BuildMethodParams, MapsTypedKeysOntoTheMethodMessage) {
  auto flat = BuildMethodParams(
      "flat", {"learning_rate=0.001", "epochs=3", "batch_size=4", "max_steps=100", "seed=42",
               "divergence=js", "reference_code_aggregation=true", "use_builtin_templates=false"});
  UNL_ASSERT_OK(flat.status());
  ASSERT_TRUE(flat->has_flat());
  const v1::FlatParams& f = flat->flat();
  EXPECT_DOUBLE_EQ(f.training().learning_rate(), 0.001);
  EXPECT_EQ(f.training().epochs(), 3);
  EXPECT_EQ(f.training().batch_size(), 4);
  EXPECT_EQ(f.training().max_steps(), 100);
  EXPECT_EQ(f.training().seed(), 42u);
  EXPECT_FALSE(f.training().has_weight_decay());  // unset keys stay unset (server default)
  EXPECT_EQ(f.divergence(), v1::FlatParams::DIVERGENCE_JENSEN_SHANNON);
  EXPECT_TRUE(f.reference_code_aggregation());
  ASSERT_TRUE(f.has_use_builtin_templates());
  EXPECT_FALSE(f.use_builtin_templates());

  auto npo = BuildMethodParams("npo", {"beta=0.2", "retain_weight=1.5"});
  UNL_ASSERT_OK(npo.status());
  ASSERT_TRUE(npo->has_npo());
  EXPECT_DOUBLE_EQ(npo->npo().beta(), 0.2);
  EXPECT_DOUBLE_EQ(npo->npo().retain_weight(), 1.5);

  auto gd = BuildMethodParams("gradient_difference", {"forget_weight=2", "weight_decay=0"});
  UNL_ASSERT_OK(gd.status());
  EXPECT_DOUBLE_EQ(gd->gradient_difference().forget_weight(), 2.0);
  EXPECT_TRUE(gd->gradient_difference().training().has_weight_decay());

  // No params: the oneof is still set, so the server knows the method.
  auto ga = BuildMethodParams("gradient_ascent", {});
  UNL_ASSERT_OK(ga.status());
  EXPECT_TRUE(ga->has_gradient_ascent());

  auto full_enum = BuildMethodParams("flat", {"divergence=DIVERGENCE_PEARSON"});
  UNL_ASSERT_OK(full_enum.status());
  EXPECT_EQ(full_enum->flat().divergence(), v1::FlatParams::DIVERGENCE_PEARSON);

  auto good = BuildMethodParams("flat", {"good_answers=retain", "lr_schedule=constant"});
  UNL_ASSERT_OK(good.status());
  EXPECT_EQ(good->flat().good_answers(), v1::FlatParams::GOOD_ANSWERS_RETAIN);
  EXPECT_EQ(good->flat().lr_schedule(), v1::FlatParams::LR_SCHEDULE_CONSTANT);
  EXPECT_THAT(BuildMethodParams("flat", {"good_answers=refusals"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("templates, retain")));
}

TEST(BuildMethodParams, RejectsUnknownKeysWithTheValidOnes) {
  auto status = BuildMethodParams("npo", {"bogus=1"}).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("unknown parameter 'bogus' for method npo (valid: "
                                         "batch_size, beta, epochs, learning_rate, max_grad_norm, "
                                         "max_steps, retain_weight, seed, stop_at_holdout_level, "
                                         "stop_check_every, stop_probability_ratio, "
                                         "weight_decay)")));
  // A key of another method is unknown too.
  EXPECT_THAT(BuildMethodParams("flat", {"beta=0.1"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'beta' for method flat")));
  // "training" is a message, not a key.
  EXPECT_THAT(BuildMethodParams("flat", {"training=1"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown parameter")));
}

TEST(BuildMethodParams, RejectsBadValuesAndMethods) {
  EXPECT_THAT(BuildMethodParams("flat", {"epochs=2.5"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected an integer")));
  EXPECT_THAT(BuildMethodParams("flat", {"seed=-1"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-negative")));
  EXPECT_THAT(BuildMethodParams("flat", {"learning_rate=fast"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a number")));
  EXPECT_THAT(BuildMethodParams("flat", {"divergence=hellinger"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("kl, jensen_shannon, pearson, total_variation")));
  EXPECT_THAT(BuildMethodParams("flat", {"reference_code_aggregation=maybe"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("true or false")));
  EXPECT_THAT(BuildMethodParams("flat", {"epochs"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected key=value")));
  EXPECT_THAT(BuildMethodParams("", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("typed: flat, gradient_ascent, gradient_difference, npo")));
  EXPECT_THAT(BuildMethodParams("class_forgetting", {"steps"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected key=value")));
}

TEST(BuildMethodParams, AMethodWithoutATypedMessageIsSentByName) {
  auto named = BuildMethodParams("class_forgetting", {"steps=40", "learning_rate=2e-4", "x=abc"});
  ASSERT_TRUE(named.ok()) << named.status();
  ASSERT_TRUE(named->has_named());
  EXPECT_EQ(named->named().name(), "class_forgetting");
  EXPECT_EQ(nlohmann::json::parse(named->named().params_json()),
            nlohmann::json({{"steps", 40}, {"learning_rate", 2e-4}, {"x", "abc"}}));
}

TEST(ParseThresholdSpec, ParsesAndNamesMistakes) {
  auto t = ParseThresholdSpec("acc_f:ratio_at_most:0.2");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->figure(), "acc_f");
  EXPECT_EQ(t->comparison(), v1::COMPARISON_RATIO_AT_MOST);
  EXPECT_DOUBLE_EQ(t->bound(), 0.2);
  EXPECT_EQ(ParseThresholdSpec("mia.loss_auc:at_least:0.4")->comparison(), v1::COMPARISON_AT_LEAST);
  EXPECT_THAT(ParseThresholdSpec("acc_f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FIGURE:COMPARISON:BOUND")));
  EXPECT_THAT(ParseThresholdSpec("acc_f:below:0.2").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ratio_at_most")));
  EXPECT_THAT(ParseThresholdSpec("acc_f:at_most:x").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a number")));
}

TEST(ValidParamKeys, ListsTrainingAndMethodKeys) {
  EXPECT_THAT(ValidParamKeys("gradient_ascent"),
              ElementsAre("batch_size", "epochs", "learning_rate", "max_grad_norm", "max_steps",
                          "seed", "stop_at_holdout_level", "stop_check_every",
                          "stop_probability_ratio", "weight_decay"));
  EXPECT_TRUE(ValidParamKeys("nope").empty());
}

TEST(RandomRequestId, IsAValidDistinctUuid) {
  const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = RandomRequestId();
    EXPECT_TRUE(std::regex_match(id, uuid)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace unlearning::client
