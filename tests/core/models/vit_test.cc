#include "core/models/vit.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/io/safetensors.h"
#include "core/models/model.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// The C++ model computes in float32 with the same ops as the reference; differences come only
// from the order of floating-point operations.
constexpr double kTolerance = 1e-5;

std::string MakeTempDir(const std::string& name) {
  static int counter = 0;
  fs::path dir = fs::path(::testing::TempDir()) / ("vit_" + std::to_string(::getpid()) + "_" +
                                                   std::to_string(counter++) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void WriteJson(const std::string& path, const nlohmann::json& json) {
  std::ofstream out(path);
  out << json.dump(2);
}

std::string CopyDir(const std::string& from, const std::string& name) {
  const std::string to = MakeTempDir(name);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  return to;
}

ViTConfig TinyConfig() {
  ViTConfig c;
  c.image_size = 28;
  c.patch_size = 7;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 24;
  c.id2label = {"a", "b", "c"};
  return c;
}

// Runs tests/golden/gen_golden_vit.py once for the whole suite.
class VitTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    golden_dir_ = new std::string(MakeTempDir("golden"));
    const std::string cmd = std::string("/usr/bin/python3 ") + UNL_SOURCE_DIR +
                            "/tests/golden/gen_golden_vit.py " + *golden_dir_ + " 2>&1";
    generator_status_ = std::system(cmd.c_str());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*golden_dir_);
    delete golden_dir_;
  }
  void SetUp() override {
    ASSERT_EQ(generator_status_, 0) << "tests/golden/gen_golden_vit.py failed";
  }

  static std::string Variant(const std::string& name) { return *golden_dir_ + "/" + name; }

  static SafetensorsFile Golden(const std::string& variant) {
    absl::StatusOr<SafetensorsFile> file =
        ReadSafetensors(Variant(variant) + "/golden.safetensors");
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? *file : SafetensorsFile{};
  }

  static std::unique_ptr<VitClassifier> LoadOrDie(const std::string& dir) {
    absl::StatusOr<std::unique_ptr<VitClassifier>> vit = VitClassifier::Load(dir, torch::kCPU);
    EXPECT_TRUE(vit.ok()) << vit.status();
    return vit.ok() ? std::move(*vit) : nullptr;
  }

  // Loads `dir` after `edit` changed its config.json.
  static absl::Status LoadWithConfig(const std::string& name,
                                     const std::function<void(nlohmann::json&)>& edit) {
    const std::string dir = CopyDir(Variant("base"), name);
    nlohmann::json config = ReadJson(dir + "/config.json");
    edit(config);
    WriteJson(dir + "/config.json", config);
    return VitClassifier::Load(dir, torch::kCPU).status();
  }

  // Loads `dir` after `edit` changed its weights.
  static absl::Status LoadWithWeights(
      const std::string& name,
      const std::function<void(std::map<std::string, torch::Tensor>&)>& edit) {
    const std::string dir = CopyDir(Variant("base"), name);
    absl::StatusOr<SafetensorsFile> file = ReadSafetensors(dir + "/model.safetensors");
    EXPECT_TRUE(file.ok()) << file.status();
    edit(file->tensors);
    EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", file->tensors, {}).ok());
    return VitClassifier::Load(dir, torch::kCPU).status();
  }

  static std::string* golden_dir_;
  static int generator_status_;
};
std::string* VitTest::golden_dir_ = nullptr;
int VitTest::generator_status_ = -1;

void ExpectMatchesGolden(const VitClassifier& vit, const SafetensorsFile& golden) {
  const torch::Tensor& images = golden.tensors.at("images");
  torch::Tensor logits = vit.ClassifyLogits(images);
  torch::Tensor features = vit.Features(images);
  ASSERT_EQ(logits.sizes(), golden.tensors.at("logits").sizes());
  ASSERT_EQ(features.sizes(), golden.tensors.at("features").sizes());
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  const double logit_diff = MaxAbsDiff(logits, golden.tensors.at("logits"));
  const double feature_diff = MaxAbsDiff(features, golden.tensors.at("features"));
  std::cout << "max |logits - reference| = " << logit_diff
            << ", max |features - reference| = " << feature_diff << "\n";
  EXPECT_LT(logit_diff, kTolerance);
  EXPECT_LT(feature_diff, kTolerance);
  // The fixture is not degenerate: outputs vary across classes, images and feature dimensions.
  EXPECT_GT(golden.tensors.at("logits").std().item<double>(), 0.1);
  EXPECT_GT(golden.tensors.at("features").std().item<double>(), 0.1);
}

TEST_F(VitTest, MatchesPythonReference) {
  std::unique_ptr<VitClassifier> vit = LoadOrDie(Variant("base"));
  ASSERT_NE(vit, nullptr);
  ExpectMatchesGolden(*vit, Golden("base"));
}

TEST_F(VitTest, MatchesPythonReferenceRgbWithoutQkvBias) {
  std::unique_ptr<VitClassifier> vit = LoadOrDie(Variant("rgb"));
  ASSERT_NE(vit, nullptr);
  EXPECT_FALSE(vit->config().qkv_bias);
  EXPECT_EQ(vit->image_spec().channels, 3);
  EXPECT_EQ(vit->image_spec().height, 12);
  ExpectMatchesGolden(*vit, Golden("rgb"));
}

TEST_F(VitTest, NormalisationIsApplied) {
  // Without the preprocessor file the HF defaults (mean = std = 0.5) apply, which changes the
  // logits: the model really uses the preprocessor's statistics.
  const std::string dir = CopyDir(Variant("base"), "no_preprocessor");
  fs::remove(dir + "/preprocessor_config.json");
  std::unique_ptr<VitClassifier> vit = LoadOrDie(dir);
  ASSERT_NE(vit, nullptr);
  EXPECT_THAT(vit->preprocessor().image_mean, ::testing::ElementsAre(0.5));
  const SafetensorsFile golden = Golden("base");
  EXPECT_GT(
      MaxAbsDiff(vit->ClassifyLogits(golden.tensors.at("images")), golden.tensors.at("logits")),
      1e-3);
}

TEST_F(VitTest, ParameterNamesAreHuggingFaceNames) {
  std::unique_ptr<VitClassifier> vit = LoadOrDie(Variant("base"));
  ASSERT_NE(vit, nullptr);
  std::set<std::string> names;
  for (const auto& item : vit->module()->named_parameters()) names.insert(item.key());
  std::set<std::string> expected;
  absl::StatusOr<SafetensorsFile> weights = ReadSafetensors(Variant("base") + "/model.safetensors");
  ASSERT_TRUE(weights.ok());
  for (const auto& [name, tensor] : weights->tensors) expected.insert(name);
  EXPECT_EQ(names, expected);
  EXPECT_TRUE(names.count("vit.encoder.layer.1.attention.attention.query.bias"));
  EXPECT_TRUE(names.count("vit.embeddings.patch_embeddings.projection.weight"));
  EXPECT_EQ(names.size(), 4u + 16u * 2u + 4u);
  int64_t total = 0;
  for (const auto& [name, tensor] : weights->tensors) total += tensor.numel();
  EXPECT_EQ(vit->num_parameters(), total);
}

TEST_F(VitTest, SaveLoadRoundTripIsExact) {
  std::unique_ptr<VitClassifier> vit = LoadOrDie(Variant("base"));
  ASSERT_NE(vit, nullptr);
  const std::string dir = MakeTempDir("roundtrip");
  ASSERT_THAT(vit->Save(dir), ::unlearning::testing::IsOk());
  for (const char* file : {"config.json", "model.safetensors", "preprocessor_config.json"}) {
    EXPECT_TRUE(fs::exists(dir + "/" + file)) << file;
  }
  const nlohmann::json config = ReadJson(dir + "/config.json");
  EXPECT_EQ(config["architectures"][0], "ViTForImageClassification");
  EXPECT_EQ(config["model_type"], "vit");
  EXPECT_EQ(config["id2label"]["0"], "zero");
  EXPECT_EQ(config["label2id"]["four"], 4);
  EXPECT_EQ(config["hidden_act"], "gelu");
  EXPECT_TRUE(VitClassifier::Recognises(config));
  const nlohmann::json pre = ReadJson(dir + "/preprocessor_config.json");
  EXPECT_EQ(pre["image_processor_type"], "ViTImageProcessor");
  EXPECT_DOUBLE_EQ(pre["image_mean"][0].get<double>(), 0.286);
  EXPECT_DOUBLE_EQ(pre["rescale_factor"].get<double>(), 1.0 / 255.0);

  std::unique_ptr<VitClassifier> again = LoadOrDie(dir);
  ASSERT_NE(again, nullptr);
  const torch::Tensor images = Golden("base").tensors.at("images");
  EXPECT_TRUE(torch::equal(vit->ClassifyLogits(images), again->ClassifyLogits(images)));
  EXPECT_TRUE(torch::equal(vit->Features(images), again->Features(images)));
  EXPECT_EQ(again->class_name(2), "two");
  EXPECT_EQ(again->class_name(7), "7");
}

TEST_F(VitTest, SaveToMissingDirectoryIsNotFound) {
  std::unique_ptr<VitClassifier> vit = LoadOrDie(Variant("base"));
  ASSERT_NE(vit, nullptr);
  EXPECT_THAT(vit->Save(MakeTempDir("gone") + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST_F(VitTest, MissingFilesAreNotFound) {
  const std::string no_config = CopyDir(Variant("base"), "no_config");
  fs::remove(no_config + "/config.json");
  EXPECT_THAT(VitClassifier::Load(no_config, torch::kCPU).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("config.json")));
  const std::string no_weights = CopyDir(Variant("base"), "no_weights");
  fs::remove(no_weights + "/model.safetensors");
  EXPECT_THAT(VitClassifier::Load(no_weights, torch::kCPU).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.safetensors")));
}

TEST_F(VitTest, BadConfigsAreInvalidArgumentNamingTheKey) {
  struct Case {
    const char* name;
    std::function<void(nlohmann::json&)> edit;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"zero_patch", [](nlohmann::json& c) { c["patch_size"] = 0; }, "\"patch_size\" = 0"},
      {"indivisible", [](nlohmann::json& c) { c["patch_size"] = 5; },
       "\"patch_size\" = 5: does not divide image_size 28"},
      {"heads", [](nlohmann::json& c) { c["num_attention_heads"] = 5; },
       "\"num_attention_heads\" = 5: does not divide hidden_size 32"},
      {"act", [](nlohmann::json& c) { c["hidden_act"] = "relu"; }, "\"hidden_act\" = \"relu\""},
      {"string_size", [](nlohmann::json& c) { c["hidden_size"] = "big"; }, "\"hidden_size\""},
      {"labels",
       [](nlohmann::json& c) {
         c["id2label"] = {{"0", "a"}, {"2", "b"}};
       },
       "\"id2label\""},
      {"num_labels", [](nlohmann::json& c) { c["num_labels"] = 3; }, "\"num_labels\" = 3"},
      {"dtype", [](nlohmann::json& c) { c["torch_dtype"] = "int8"; }, "\"torch_dtype\""},
      {"arch", [](nlohmann::json& c) { c["architectures"] = {"LlamaForCausalLM"}; },
       "is not ViTForImageClassification"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(LoadWithConfig(c.name, c.edit),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expected)))
        << c.name;
  }
  // The same rules hold for Create.
  ViTConfig config = TinyConfig();
  config.patch_size = 0;
  EXPECT_THAT(VitClassifier::Create(config, torch::kCPU, 0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("patch_size")));
}

TEST_F(VitTest, BadPreprocessorIsInvalidArgument) {
  const std::string dir = CopyDir(Variant("base"), "bad_pre");
  nlohmann::json pre = ReadJson(dir + "/preprocessor_config.json");
  pre["image_std"] = {0.0};
  WriteJson(dir + "/preprocessor_config.json", pre);
  EXPECT_THAT(VitClassifier::Load(dir, torch::kCPU).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"image_std\"")));
  pre["image_std"] = {0.3, 0.3, 0.3};  // three values for one channel
  WriteJson(dir + "/preprocessor_config.json", pre);
  EXPECT_THAT(VitClassifier::Load(dir, torch::kCPU).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 1 numbers")));
}

TEST_F(VitTest, MissingOrMisshapedTensorIsInvalidArgumentNamingIt) {
  EXPECT_THAT(
      LoadWithWeights("missing", [](auto& t) { t.erase("vit.encoder.layer.1.output.dense.bias"); }),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("missing tensor vit.encoder.layer.1.output.dense.bias")));
  EXPECT_THAT(LoadWithWeights("shape",
                              [](auto& t) {
                                t["vit.embeddings.position_embeddings"] = torch::zeros({1, 10, 32});
                              }),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("vit.embeddings.position_embeddings has shape [1, 10, 32]")));
  EXPECT_THAT(
      LoadWithWeights("dtype",
                      [](auto& t) { t["classifier.bias"] = torch::zeros({5}, torch::kInt64); }),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("classifier.bias")));
}

TEST_F(VitTest, RecognisesItsConfigsOnly) {
  EXPECT_TRUE(VitClassifier::Recognises(ReadJson(Variant("base") + "/config.json")));
  EXPECT_TRUE(VitClassifier::Recognises({{"model_type", "vit"}}));
  EXPECT_FALSE(VitClassifier::Recognises(
      {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}}));
  EXPECT_FALSE(VitClassifier::Recognises(
      {{"model_type", "vit"}, {"architectures", {"ViTForMaskedImageModeling"}}}));
  EXPECT_FALSE(VitClassifier::Recognises(nlohmann::json::array()));
}

TEST(VitCreateTest, IsSeededAndFollowsHuggingFaceInit) {
  auto a = VitClassifier::Create(TinyConfig(), torch::kCPU, 7);
  auto b = VitClassifier::Create(TinyConfig(), torch::kCPU, 7);
  auto c = VitClassifier::Create(TinyConfig(), torch::kCPU, 8);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto pa = (*a)->module()->named_parameters();
  auto pb = (*b)->module()->named_parameters();
  auto pc = (*c)->module()->named_parameters();
  const std::string w = "vit.encoder.layer.0.intermediate.dense.weight";
  EXPECT_TRUE(torch::equal(pa[w], pb[w]));
  EXPECT_FALSE(torch::equal(pa[w], pc[w]));
  EXPECT_NEAR(pa[w].std().item<double>(), 0.02, 0.004);
  EXPECT_LE(pa[w].abs().max().item<double>(), 0.04 + 1e-7);  // truncated at 2 std
  EXPECT_TRUE(torch::equal(pa["vit.layernorm.weight"], torch::ones({16})));
  EXPECT_TRUE(torch::equal(pa["classifier.bias"], torch::zeros({3})));

  const VitClassifier& vit = **a;
  EXPECT_EQ(vit.family(), ModelFamily::kImageClassifier);
  EXPECT_EQ(vit.architecture(), "ViTForImageClassification");
  EXPECT_EQ(vit.AsImageClassifier(), static_cast<const ImageClassifier*>(&vit));
  EXPECT_EQ(vit.AsImageSampler(), nullptr);
  EXPECT_EQ(vit.num_classes(), 3);
  EXPECT_EQ(vit.class_name(1), "b");
  EXPECT_EQ(vit.Features(torch::rand({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 16}));
}

TEST(VitCreateTest, FfnLinearsCarryLoraWithoutChangingOutputsAndSaveFoldsIt) {
  auto created = VitClassifier::Create(TinyConfig(), torch::kCPU, 3);
  ASSERT_TRUE(created.ok());
  VitClassifier& vit = **created;
  auto ffn = vit.module()->ffn_linears();
  ASSERT_EQ(ffn.size(), 4u);
  EXPECT_EQ(ffn[0].first, "vit.encoder.layer.0.intermediate.dense");
  EXPECT_EQ(ffn[3].first, "vit.encoder.layer.1.output.dense");
  const torch::Tensor images = torch::rand({4, 1, 28, 28});
  const torch::Tensor before = vit.ClassifyLogits(images);
  for (auto& [name, linear] : ffn) linear->EnableLora(/*rank=*/4, /*alpha=*/4.0);
  EXPECT_TRUE(torch::allclose(vit.ClassifyLogits(images), before));
  std::set<std::string> names;
  for (const auto& item : vit.module()->named_parameters()) names.insert(item.key());
  EXPECT_TRUE(names.count("vit.encoder.layer.1.intermediate.dense.lora_A"));
  EXPECT_TRUE(names.count("vit.encoder.layer.0.output.dense.lora_B"));
  EXPECT_FALSE(names.count("vit.encoder.layer.0.attention.attention.query.lora_A"));
  // A non-zero B now changes the outputs; Save folds the delta into the plain weights, and a
  // clone keeps the LoRA state.
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, linear] : ffn) linear->lora_b().normal_(0.0, 0.05);
  }
  const torch::Tensor adapted = vit.ClassifyLogits(images);
  EXPECT_GT(MaxAbsDiff(adapted, before), 1e-4);
  std::unique_ptr<VitClassifier> clone = vit.CloneVit(torch::kCPU);
  EXPECT_TRUE(clone->module()->ffn_linears()[0].second->lora_enabled());
  EXPECT_TRUE(torch::equal(clone->ClassifyLogits(images), adapted));
  const std::string dir = MakeTempDir("lora");
  ASSERT_TRUE(vit.Save(dir).ok());
  auto loaded = VitClassifier::Load(dir, torch::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE((*loaded)->module()->ffn_linears()[0].second->lora_enabled());
  EXPECT_LT(MaxAbsDiff((*loaded)->ClassifyLogits(images), adapted), 1e-5);
}

TEST(VitCreateTest, CloneIsDeepAndIndependent) {
  auto created = VitClassifier::Create(TinyConfig(), torch::kCPU, 1);
  ASSERT_TRUE(created.ok());
  absl::StatusOr<std::unique_ptr<Model>> clone = (*created)->Clone(torch::kCPU);
  ASSERT_TRUE(clone.ok());
  const ImageClassifier* classifier = (*clone)->AsImageClassifier();
  ASSERT_NE(classifier, nullptr);
  const torch::Tensor images = torch::rand({2, 1, 28, 28});
  EXPECT_TRUE(torch::equal(classifier->ClassifyLogits(images), (*created)->ClassifyLogits(images)));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : (*created)->module()->parameters()) p.add_(0.1);
  }
  EXPECT_FALSE(
      torch::equal(classifier->ClassifyLogits(images), (*created)->ClassifyLogits(images)));
}

TEST(ViTConfigTest, ToJsonFromJsonRoundTrips) {
  ViTConfig c = TinyConfig();
  c.qkv_bias = false;
  c.layer_norm_eps = 1e-6;
  c.torch_dtype = "bfloat16";
  const nlohmann::json json = c.ToJson();
  EXPECT_EQ(json["id2label"], nlohmann::json({{"0", "a"}, {"1", "b"}, {"2", "c"}}));
  absl::StatusOr<ViTConfig> back = ViTConfig::FromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), json);
  EXPECT_EQ(back->num_patches(), 16);
  // HF defaults when id2label is absent: num_labels (2) labels "LABEL_i".
  nlohmann::json bare = json;
  bare.erase("id2label");
  absl::StatusOr<ViTConfig> defaults = ViTConfig::FromJson(bare);
  ASSERT_TRUE(defaults.ok());
  EXPECT_THAT(defaults->id2label, ::testing::ElementsAre("LABEL_0", "LABEL_1"));
}

// Found by tests/fuzz/fuzz_model_config (corpus/fuzz_model_config/vit_huge_num_channels): the
// preprocessor's per-channel lists were allocated for any positive num_channels.
TEST(ViTConfigTest, RefusesAbsurdChannelCount) {
  nlohmann::json json = TinyConfig().ToJson();
  json["num_channels"] = int64_t{1} << 40;
  EXPECT_THAT(ViTConfig::FromJson(json),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_channels")));
  json["num_channels"] = 64;
  EXPECT_TRUE(ViTConfig::FromJson(json).ok());
}

}  // namespace
}  // namespace unlearning::core
