#include "core/methods/method_registry.h"

#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

TEST(MethodRegistryTest, BuiltinHasTheTextMethodsAndTheVisionBaseline) {
  EXPECT_THAT(MethodRegistry::Builtin().names(),
              ElementsAre("class_forgetting", "flat", "gradient_ascent", "gradient_difference",
                          "gs_lora", "gs_lora_plus", "l2_finetune", "npo", "retain_finetune",
                          "score_override", "sfd", "sid", "uld"));
  for (const std::string& name : MethodRegistry::Builtin().names()) {
    const bool gs_lora = name == "gs_lora" || name == "gs_lora_plus";
    const bool sfd = name == "sfd" || name == "sid";
    const bool vision =
        gs_lora || name == "class_forgetting" || name == "retain_finetune" || name == "l2_finetune";
    const ModelFamily want = vision                            ? ModelFamily::kImageClassifier
                             : name == "score_override" || sfd ? ModelFamily::kDiffusion
                                                               : ModelFamily::kCausalLm;
    absl::StatusOr<ModelFamily> family = MethodRegistry::Builtin().FamilyOf(name);
    ASSERT_TRUE(family.ok()) << name;
    EXPECT_EQ(*family, want);
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                             MethodRegistry::Builtin().Create(name, nlohmann::json::object()));
    EXPECT_EQ(method->name(), name);
    EXPECT_EQ(method->family(), want);
    EXPECT_EQ(method->artifact_kind(), gs_lora         ? ArtifactKind::kLoraAdapter
                                       : name == "uld" ? ArtifactKind::kAssistant
                                       : sfd           ? ArtifactKind::kOneStepGenerator
                                                       : ArtifactKind::kFullWeights);
  }
}

TEST(MethodRegistryTest, ClassForgettingParametersAreChecked) {
  const MethodRegistry& r = MethodRegistry::Builtin();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> m,
                           r.Create("class_forgetting", {{"steps", 10}, {"retain_weight", 0}}));
  EXPECT_EQ(m->EffectiveParams()["steps"], 10);
  EXPECT_EQ(m->EffectiveParams()["replay_per_class"], 200);
  EXPECT_THAT(r.Create("class_forgetting", {{"steps", 0}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class_forgetting.steps")));
  EXPECT_THAT(r.Create("class_forgetting", {{"learning_rate", 0}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("learning_rate")));
  EXPECT_THAT(r.Create("class_forgetting", {{"epochs", 3}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("epochs")));
  ErasureData no_classes;
  no_classes.family = ModelFamily::kImageClassifier;
  EXPECT_THAT(m->CheckData(no_classes),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget_classes")));
  // The fine-tuning modes: one implementation, each mode's own keys only.
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> l2,
                           r.Create("l2_finetune", {{"l2_weight", 0.5}}));
  EXPECT_EQ(l2->name(), "l2_finetune");
  EXPECT_EQ(l2->EffectiveParams()["l2_weight"], 0.5);
  EXPECT_FALSE(l2->EffectiveParams().contains("forget_weight"));
  EXPECT_THAT(r.Create("l2_finetune", {{"l2_weight", -1}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("l2_finetune.l2_weight")));
  EXPECT_THAT(r.Create("retain_finetune", {{"forget_weight", 1}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget_weight")));
  EXPECT_THAT(r.Create("class_forgetting", {{"l2_weight", 1}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("l2_weight")));
}

TEST(MethodRegistryTest, UnknownMethodIsNotFound) {
  EXPECT_THAT(MethodRegistry::Builtin().Create("retrain", nlohmann::json::object()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("retrain")));
  EXPECT_THAT(MethodRegistry::Builtin().FamilyOf("retrain"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("flat")));
}

TEST(MethodRegistryTest, NullParamsTakeDefaults) {
  UNL_EXPECT_OK(MethodRegistry::Builtin().Create("npo", nlohmann::json()));
}

TEST(MethodParamsTest, UnknownKeyIsNamed) {
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"learning_rat", 0.1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.learning_rat")));
  // A key of another method is unknown too.
  EXPECT_THAT(MethodRegistry::Builtin().Create("gradient_ascent", {{"beta", 0.1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gradient_ascent.beta")));
}

TEST(MethodParamsTest, OutOfRangeNamesKeyRangeAndValue) {
  EXPECT_THAT(
      MethodRegistry::Builtin().Create("flat", {{"learning_rate", 5}}),
      StatusIs(absl::StatusCode::kInvalidArgument, "flat.learning_rate must be in (0, 1], got 5"));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"learning_rate", 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(0, 1]")));
  EXPECT_THAT(
      MethodRegistry::Builtin().Create("npo", {{"epochs", 0}}),
      StatusIs(absl::StatusCode::kInvalidArgument, "npo.epochs must be in [1, 1000], got 0"));
  EXPECT_THAT(MethodRegistry::Builtin().Create("npo", {{"beta", 0.0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("npo.beta")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("npo", {{"beta", 11}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("npo.beta")));
  EXPECT_THAT(
      MethodRegistry::Builtin().Create("gradient_difference", {{"forget_weight", 0}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gradient_difference.forget_weight")));
  EXPECT_THAT(
      MethodRegistry::Builtin().Create("gradient_difference", {{"retain_weight", 101}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gradient_difference.retain_weight")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("gradient_ascent", {{"batch_size", 1025}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch_size")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("gradient_ascent", {{"weight_decay", -0.1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight_decay")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("gradient_ascent", {{"max_grad_norm", 2e6}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_grad_norm")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("gradient_ascent", {{"max_steps", -1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_steps")));
}

TEST(MethodParamsTest, WrongTypesAreRejected) {
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"epochs", 2.5}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.epochs")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"learning_rate", "0.1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.learning_rate")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"use_builtin_templates", 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use_builtin_templates")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"divergence", "reverse_kl"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.divergence")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", {{"seed", -1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flat.seed")));
  EXPECT_THAT(MethodRegistry::Builtin().Create("flat", nlohmann::json::array()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON object")));
}

TEST(MethodParamsTest, EffectiveParamsListEveryKeyWithDefaults) {
  struct Case {
    std::string method;
    double learning_rate;
    int64_t epochs;
    std::vector<std::string> extra_keys;
  };
  const std::vector<Case> cases = {
      {"flat",
       5e-5,
       10,
       {"divergence", "reference_code_aggregation", "use_builtin_templates", "good_answers",
        "lr_schedule"}},
      {"gradient_ascent", 2e-5, 3, {}},
      {"gradient_difference", 5e-5, 5, {"forget_weight", "retain_weight"}},
      {"npo", 5e-5, 5, {"beta", "retain_weight"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method);
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                             MethodRegistry::Builtin().Create(c.method, nlohmann::json::object()));
    const nlohmann::json p = method->EffectiveParams();
    EXPECT_EQ(p.size(), 10 + c.extra_keys.size()) << p.dump();
    EXPECT_DOUBLE_EQ(p.at("learning_rate").get<double>(), c.learning_rate);
    EXPECT_EQ(p.at("epochs").get<int64_t>(), c.epochs);
    EXPECT_EQ(p.at("batch_size").get<int64_t>(), 8);
    EXPECT_DOUBLE_EQ(p.at("weight_decay").get<double>(), 0.01);
    EXPECT_DOUBLE_EQ(p.at("max_grad_norm").get<double>(), 1.0);
    EXPECT_EQ(p.at("max_steps").get<int64_t>(), 0);
    EXPECT_EQ(p.at("seed").get<uint64_t>(), 0u);
    EXPECT_FALSE(p.at("stop_at_holdout_level").get<bool>());
    EXPECT_DOUBLE_EQ(p.at("stop_probability_ratio").get<double>(), 1.0);
    EXPECT_EQ(p.at("stop_check_every").get<int64_t>(), 0);
    for (const std::string& key : c.extra_keys) EXPECT_TRUE(p.contains(key)) << key;
  }
}

TEST(MethodParamsTest, EffectiveParamsEchoGivenValues) {
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> flat,
      MethodRegistry::Builtin().Create("flat", {{"divergence", "tv"},
                                                {"learning_rate", 0.001},
                                                {"epochs", 2},
                                                {"seed", 42},
                                                {"reference_code_aggregation", true},
                                                {"use_builtin_templates", false}}));
  const nlohmann::json p = flat->EffectiveParams();
  EXPECT_EQ(p.at("divergence"), "tv");
  EXPECT_DOUBLE_EQ(p.at("learning_rate").get<double>(), 0.001);
  EXPECT_EQ(p.at("epochs").get<int64_t>(), 2);
  EXPECT_EQ(p.at("seed").get<uint64_t>(), 42u);
  EXPECT_EQ(p.at("reference_code_aggregation"), true);
  EXPECT_EQ(p.at("use_builtin_templates"), false);

  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> npo,
                           MethodRegistry::Builtin().Create("npo", nlohmann::json::object()));
  EXPECT_DOUBLE_EQ(npo->EffectiveParams().at("beta").get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(npo->EffectiveParams().at("retain_weight").get<double>(), 0.0);
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> gd,
      MethodRegistry::Builtin().Create("gradient_difference", nlohmann::json::object()));
  EXPECT_DOUBLE_EQ(gd->EffectiveParams().at("forget_weight").get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(gd->EffectiveParams().at("retain_weight").get<double>(), 1.0);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> flat_default,
                           MethodRegistry::Builtin().Create("flat", nlohmann::json::object()));
  EXPECT_EQ(flat_default->EffectiveParams().at("divergence"), "kl");
  EXPECT_EQ(flat_default->EffectiveParams().at("reference_code_aggregation"), false);
  EXPECT_EQ(flat_default->EffectiveParams().at("use_builtin_templates"), true);
}

TEST(MethodDataTest, GradientDifferenceNeedsRetainSet) {
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> gd,
      MethodRegistry::Builtin().Create("gradient_difference", nlohmann::json::object()));
  ErasureData data;
  data.forget.push_back(TextExample{"Who is X?", "X is Y.", {}, {}, ""});
  EXPECT_THAT(gd->CheckData(data), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "gradient_difference needs a retain_set"));
  data.retain.push_back(TextExample{"Who is Z?", "Z is W.", {}, {}, ""});
  UNL_EXPECT_OK(gd->CheckData(data));
}

TEST(MethodDataTest, EveryMethodNeedsAForgetSet) {
  ErasureData data;
  data.retain.push_back(TextExample{"Who is Z?", "Z is W.", {}, {}, ""});
  for (const std::string& name : MethodRegistry::Builtin().names()) {
    SCOPED_TRACE(name);
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> method,
                             MethodRegistry::Builtin().Create(name, nlohmann::json::object()));
    EXPECT_THAT(method->CheckData(data),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forget")));
  }
}

TEST(MethodDataTest, NpoWithRetainWeightNeedsRetainSet) {
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<UnlearningMethod> npo,
                           MethodRegistry::Builtin().Create("npo", {{"retain_weight", 1.0}}));
  ErasureData data;
  data.forget.push_back(TextExample{"Who is X?", "X is Y.", {}, {}, ""});
  EXPECT_THAT(npo->CheckData(data),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("retain_set")));
}

TEST(MethodDataTest, TotalStepsFollowEpochsBatchesAndMaxSteps) {
  ErasureData data;
  for (int i = 0; i < 10; ++i) data.forget.push_back(TextExample{"q", "a", {}, {}, ""});
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> ga,
      MethodRegistry::Builtin().Create("gradient_ascent", {{"epochs", 3}, {"batch_size", 4}}));
  EXPECT_EQ(ga->TotalSteps(data), 9);  // 3 epochs × ceil(10 / 4)
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<UnlearningMethod> capped,
      MethodRegistry::Builtin().Create("gradient_ascent",
                                       {{"epochs", 3}, {"batch_size", 4}, {"max_steps", 5}}));
  EXPECT_EQ(capped->TotalSteps(data), 5);
}

}  // namespace
}  // namespace unlearning::core
