#include "core/app/family_registry.h"

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/models/causal_lm.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_lm.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}
void WriteJson(const std::string& path, const nlohmann::json& json) {
  std::ofstream(path) << json.dump();
}

TEST(FamilyRegistryTest, RecognisesAndLoadsTheCausalLmFamily) {
  server::testing::TempDir tmp;
  const std::string dir = tmp.Join("lm");
  std::filesystem::create_directories(dir);
  UNL_ASSERT_OK(unlearning::testing::TinyCausalLm(1)->Save(dir));

  const FamilyRegistry& registry = FamilyRegistry::Builtin();
  UNL_ASSERT_OK_AND_ASSIGN(const FamilySpec* spec, registry.Recognise(dir));
  EXPECT_EQ(spec->family, ModelFamily::kCausalLm);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model, registry.Load(dir, torch::kCPU));
  EXPECT_EQ(model->family(), ModelFamily::kCausalLm);
  EXPECT_NE(dynamic_cast<CausalLm*>(model.get()), nullptr);
  EXPECT_EQ(model->AsImageClassifier(), nullptr);
  EXPECT_EQ(model->AsImageSampler(), nullptr);

  nlohmann::json config = ReadJson(dir + "/config.json");
  config["architectures"] = {"MistralForCausalLM"};
  config["model_type"] = "mistral";
  WriteJson(dir + "/config.json", config);
  EXPECT_THAT(registry.Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported model architecture 'MistralForCausalLM'")));
  config.erase("architectures");
  config["model_type"] = "llama";
  WriteJson(dir + "/config.json", config);
  UNL_EXPECT_OK(registry.Load(dir, torch::kCPU));
  EXPECT_THAT(registry.Load(dir + "/nope", torch::kCPU),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no model config")));
}

TEST(FamilyRegistryTest, ProbesAreReadAndABadProbeFileIsNamed) {
  server::testing::TempDir tmp;
  const std::string dir = tmp.path();
  const FamilySpec* spec = *FamilyRegistry::Builtin().Find(ModelFamily::kCausalLm);
  UNL_ASSERT_OK_AND_ASSIGN(ModelProbes none, spec->load_probes(dir));
  EXPECT_TRUE(none.text_retain.empty());
  std::filesystem::create_directories(dir + "/probes");
  std::ofstream(dir + "/probes/retain.jsonl") << R"({"question":"Q?","answer":"A."})"
                                              << "\n";
  UNL_ASSERT_OK_AND_ASSIGN(ModelProbes some, spec->load_probes(dir));
  ASSERT_EQ(some.text_retain.size(), 1u);
  EXPECT_EQ(some.text_retain[0].answer, "A.");
  std::ofstream(dir + "/probes/holdout.jsonl") << "{not json\n";
  EXPECT_THAT(spec->load_probes(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holdout.jsonl")));
}

TEST(FamilyRegistryTest, UnknownFamilyIsNotFound) {
  FamilyRegistry empty;
  EXPECT_THAT(empty.Find(ModelFamily::kDiffusion),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("diffusion")));
}

}  // namespace
}  // namespace unlearning::core
