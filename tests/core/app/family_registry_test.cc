#include "core/app/family_registry.h"

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/models/causal_lm.h"
#include "core/models/one_step_generator.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_diffusion.h"
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
  config["architectures"] = {"GemmaForCausalLM"};
  config["model_type"] = "gemma";
  WriteJson(dir + "/config.json", config);
  EXPECT_THAT(registry.Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported model architecture 'GemmaForCausalLM'")));
  config.erase("architectures");
  config["model_type"] = "llama";
  WriteJson(dir + "/config.json", config);
  UNL_EXPECT_OK(registry.Load(dir, torch::kCPU));
  EXPECT_THAT(registry.Load(dir + "/nope", torch::kCPU),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no model config")));
}

// Qwen2 and Mistral checkpoints load through the same row (what `unlearnctl models load` and the
// server use), keep their architecture, and compute what the directory's model computes.
TEST(FamilyRegistryTest, LoadsQwen2AndMistralCheckpointsThroughTheCausalLmRow) {
  server::testing::TempDir tmp;
  const FamilyRegistry& registry = FamilyRegistry::Builtin();
  for (const char* model_type : {"qwen2", "mistral"}) {
    core::LlamaConfig config = unlearning::testing::TinyCausalLm(1)->config();
    config.model_type = model_type;
    config.sliding_window = 3;
    config.use_sliding_window = true;
    config.max_window_layers = 1;
    std::unique_ptr<CausalLm> lm =
        CausalLm::Create(config, std::make_unique<ByteTokenizer>(), torch::kCPU, 7);
    const std::string dir = tmp.Join(model_type);
    std::filesystem::create_directories(dir);
    UNL_ASSERT_OK(lm->Save(dir));
    UNL_ASSERT_OK_AND_ASSIGN(const FamilySpec* spec, registry.Recognise(dir));
    EXPECT_EQ(spec->family, ModelFamily::kCausalLm);
    UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model, registry.Load(dir, torch::kCPU));
    EXPECT_EQ(model->architecture(),
              std::string(model_type) == "qwen2" ? "Qwen2ForCausalLM" : "MistralForCausalLM");
    const auto* loaded = dynamic_cast<const CausalLm*>(model.get());
    ASSERT_NE(loaded, nullptr);
    EXPECT_EQ(loaded->config().ToJson(), lm->config().ToJson());
    const torch::Tensor ids =
        torch::tensor(std::vector<int64_t>{1, 5, 9, 13, 17, 21}).view({1, -1});
    EXPECT_TRUE(torch::equal(loaded->Logits(ids), lm->Logits(ids)));
    // Found by model_type alone too.
    nlohmann::json json = ReadJson(dir + "/config.json");
    json.erase("architectures");
    WriteJson(dir + "/config.json", json);
    UNL_EXPECT_OK(registry.Load(dir, torch::kCPU));
  }
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

// The diffusion row loads a teacher directory as a DiffusionModel and a one-step generator's
// directory as a OneStepGenerator: on its own (no teacher), or on its parent version, whose
// teacher it keeps (the parent may itself be a generator distilled from that teacher).
TEST(FamilyRegistryTest, DiffusionRowLoadsOneStepGeneratorsAloneAndOnTheirTeacher) {
  server::testing::TempDir tmp;
  std::shared_ptr<const DiffusionModel> teacher = ::unlearning::testing::TinyDiffusionModel();
  OneStepGenerator generator(teacher->CloneDiffusion(torch::kCPU), nullptr,
                             OneStepGeneratorConfig{}, teacher);
  const std::string teacher_dir = tmp.Join("teacher"), dir = tmp.Join("generator");
  std::filesystem::create_directories(teacher_dir);
  std::filesystem::create_directories(dir);
  UNL_ASSERT_OK(teacher->Save(teacher_dir));
  UNL_ASSERT_OK(generator.Save(dir));
  const FamilyRegistry& families = FamilyRegistry::Builtin();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> t, families.Load(teacher_dir, torch::kCPU));
  EXPECT_EQ(t->architecture(), "UNet2DModel");
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> alone, families.Load(dir, torch::kCPU));
  ASSERT_EQ(alone->architecture(), "OneStepGenerator");
  EXPECT_EQ(dynamic_cast<const OneStepGenerator&>(*alone).teacher(), nullptr);
  EXPECT_EQ(alone->AsImageSampler()->max_steps(), 1);

  const FamilySpec* spec = *families.Find(ModelFamily::kDiffusion);
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Model> on_teacher,
      spec->load_on_parent(ArtifactKind::kOneStepGenerator, dir, teacher, torch::kCPU));
  std::shared_ptr<const Model> first(std::move(on_teacher));
  EXPECT_EQ(dynamic_cast<const OneStepGenerator&>(*first).teacher().get(), teacher.get());
  UNL_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Model> on_generator,
      spec->load_on_parent(ArtifactKind::kOneStepGenerator, dir, first, torch::kCPU));
  EXPECT_EQ(dynamic_cast<const OneStepGenerator&>(*on_generator).teacher().get(), teacher.get());
  EXPECT_THAT(spec->load_on_parent(ArtifactKind::kLoraAdapter, dir, teacher, torch::kCPU),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("one_step_generator")));
}

}  // namespace
}  // namespace unlearning::core
