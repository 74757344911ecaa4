// GS-LoRA / GS-LoRA++ unit tests on a tiny random ViT (no demo model): the loss terms, the
// parameters, where the adapters go and what trains, the sparsity warm-up, and the adapter
// artifact (files, round trip, chains).
#include "core/methods/gs_lora/gs_lora.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/common/status_macros.h"
#include "core/io/files.h"
#include "core/io/safetensors.h"
#include "core/methods/method_registry.h"
#include "core/models/vit.h"
#include "core/models/vit_adapter.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

TEST(GsLoraLossTest, GroupLassoValueAndGradient) {
  torch::Tensor a = torch::tensor({3.0f, 0.0f}).requires_grad_(true);
  torch::Tensor b = torch::tensor({{4.0f}}).requires_grad_(true);
  torch::Tensor c = torch::tensor({1.0f, 2.0f, 2.0f}).requires_grad_(true);
  torch::Tensor zero = torch::zeros({4}).requires_grad_(true);
  // Groups {a, b}: sqrt(9 + 16) = 5; {c}: 3; {zero}: sqrt(eps).
  torch::Tensor loss = GroupLasso({{a, b}, {c}, {zero}}, 1e-12);
  EXPECT_NEAR(loss.item<double>(), 8.0 + 1e-6, 1e-5);
  loss.backward();
  // d/dW sqrt(Σ‖W‖²) = W / norm of its group.
  EXPECT_TRUE(at::allclose(a.grad(), torch::tensor({0.6f, 0.0f})));
  EXPECT_TRUE(at::allclose(b.grad(), torch::tensor({{0.8f}})));
  EXPECT_TRUE(at::allclose(c.grad(), torch::tensor({1.0f, 2.0f, 2.0f}) / 3.0));
  // The eps keeps the gradient of an all-zero group finite (zero).
  EXPECT_TRUE(zero.grad().isfinite().all().item<bool>());
  EXPECT_EQ(zero.grad().abs().sum().item<double>(), 0.0);
}

TEST(GsLoraLossTest, BoundedForgettingHingeIsZeroAboveTheBound) {
  torch::Tensor ce = torch::tensor(5.0f).requires_grad_(true);
  torch::Tensor above = Hinge(ce, 4.3);
  EXPECT_EQ(above.item<double>(), 0.0);
  above.backward();
  EXPECT_EQ(ce.grad().item<double>(), 0.0);  // no more ascent once CE_forget > BND
  torch::Tensor low = torch::tensor(1.0f).requires_grad_(true);
  torch::Tensor below = Hinge(low, 4.3);
  EXPECT_NEAR(below.item<double>(), 3.3, 1e-6);
  below.backward();
  EXPECT_EQ(low.grad().item<double>(), -1.0);  // minimising it raises CE_forget
  EXPECT_NEAR(DerivedBnd(10, 2.0), std::log(10.0) + 2.0, 1e-12);
}

TEST(GsLoraLossTest, PrototypeKlMatchesItsDefinition) {
  torch::manual_seed(1);
  const torch::Tensor protos = torch::randn({3, 5});
  const torch::Tensor emb = torch::randn({2, 5});
  const torch::Tensor labels = torch::tensor({2, 0}, torch::kLong);
  double expected = 0.0;
  for (int64_t i = 0; i < 2; ++i) {
    const torch::Tensor p = at::softmax(protos[labels[i].item<int64_t>()], 0);
    const torch::Tensor q = at::softmax(emb[i], 0);
    expected += (p * (p.log() - q.log())).sum().item<double>();
  }
  EXPECT_NEAR(PrototypeKl(emb, protos, labels).item<double>(), expected / 2.0, 1e-5);
  // Zero at the prototype itself.
  EXPECT_NEAR(PrototypeKl(protos, protos, torch::arange(3)).item<double>(), 0.0, 1e-6);
}

TEST(GsLoraParamsTest, DefaultsAndRangeChecks) {
  const MethodRegistry& registry = MethodRegistry::Builtin();
  UNL_ASSERT_OK_AND_ASSIGN(auto plain, registry.Create("gs_lora", nlohmann::json::object()));
  const nlohmann::json p = plain->EffectiveParams();
  EXPECT_EQ(p["rank"], 8);
  EXPECT_EQ(p["lora_alpha"], 1.0);
  EXPECT_GT(p["sparsity_warmup_epochs"].get<int64_t>(), 0);  // warm-up on by default
  EXPECT_FALSE(p.contains("prototype_forget_weight"));
  EXPECT_EQ(plain->artifact_kind(), ArtifactKind::kLoraAdapter);
  UNL_ASSERT_OK_AND_ASSIGN(auto plus, registry.Create("gs_lora_plus", {{"bnd_pro", 3.0}}));
  EXPECT_EQ(plus->name(), "gs_lora_plus");
  EXPECT_EQ(plus->EffectiveParams()["bnd_pro"], 3.0);

  EXPECT_THAT(registry.Create("gs_lora", {{"beta", -1}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gs_lora.beta must be in")));
  EXPECT_THAT(registry.Create("gs_lora", {{"learning_rate", 0}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("learning_rate")));
  EXPECT_THAT(registry.Create("gs_lora", {{"merge_after_tasks", -1}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("merge_after_tasks")));
  EXPECT_THAT(registry.Create("gs_lora", {{"replay_per_class", 0}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("replay_per_class")));
  EXPECT_THAT(registry.Create("gs_lora", {{"epochs", 3}, {"sparsity_warmup_epochs", 4}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most epochs")));
  // Prototype weights are GS-LoRA++ parameters only.
  EXPECT_THAT(registry.Create("gs_lora", {{"prototype_forget_weight", 0.1}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prototype_forget_weight")));
  EXPECT_THAT(registry.Create("gs_lora_plus", {{"prototype_retain_weight", 1000}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prototype_retain_weight")));
}

// A tiny random 3-class ViT and random labelled "training samples" of every class.
struct Fixture {
  std::unique_ptr<VitClassifier> vit;
  ModelProbes probes;
};
Fixture MakeFixture() {
  ViTConfig config;
  config.hidden_size = 16;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.intermediate_size = 32;
  config.id2label = {"a", "b", "c"};
  auto created = VitClassifier::Create(config, torch::kCPU, /*seed=*/3);
  EXPECT_TRUE(created.ok());
  Fixture f;
  f.vit = *std::move(created);
  torch::manual_seed(5);
  f.probes.images_train.images = torch::rand({60, 1, 28, 28});
  f.probes.images_train.labels = torch::arange(60, torch::kLong).remainder(3);
  return f;
}

absl::StatusOr<Candidate> RunMethod(const std::string& method, const nlohmann::json& params,
                                    const VitClassifier& parent, const ModelProbes& probes,
                                    std::vector<int64_t> forget) {
  UNL_ASSIGN_OR_RETURN(auto m, MethodRegistry::Builtin().Create(method, params));
  ErasureData data;
  data.family = ModelFamily::kImageClassifier;
  data.classes.forget_classes = std::move(forget);
  NullProgressSink progress;
  CancellationToken cancel;
  MethodContext ctx;
  ctx.parent = &parent;
  ctx.data = &data;
  ctx.probes = &probes;
  ctx.progress = &progress;
  ctx.cancel = &cancel;
  return m->Run(ctx);
}

const nlohmann::json kQuick = {{"epochs", 2},
                               {"steps_per_epoch", 3},
                               {"batch_size", 8},
                               {"sparsity_warmup_epochs", 1},
                               {"replay_per_class", 10}};

TEST(GsLoraAdapterTest, FreshAdaptersSitOnTheFfnOnlyAndChangeNothing) {
  at::set_num_threads(1);
  Fixture f = MakeFixture();
  const torch::Tensor images = f.probes.images_train.images.slice(0, 0, 8);
  const torch::Tensor before = f.vit->ClassifyLogits(images);
  std::unique_ptr<VitClassifier> copy = f.vit->CloneVit(torch::kCPU);
  ResetFfnAdapters(*copy, 8, 1.0);
  EXPECT_TRUE(at::equal(copy->ClassifyLogits(images), before));  // B = 0
  int64_t trainable = 0;
  for (const auto& item : copy->module()->named_parameters()) {
    const bool factor = IsLoraFactor(item.key());
    EXPECT_EQ(item.value().requires_grad(), factor) << item.key();
    if (factor) {
      ++trainable;
      EXPECT_THAT(item.key(), ::testing::AnyOf(HasSubstr("intermediate.dense.lora_"),
                                               HasSubstr("output.dense.lora_")));
      EXPECT_THAT(item.key(), ::testing::Not(HasSubstr("attention")));
    }
  }
  EXPECT_EQ(trainable, 2 * 2 * 2);  // 2 blocks x 2 FFN linears x {A, B}
  for (auto& [name, linear] : copy->module()->ffn_linears()) {
    EXPECT_DOUBLE_EQ(linear->lora_scale(), 1.0 / 8.0) << name;  // loralib: alpha 1, r 8
    EXPECT_EQ(linear->lora_a().size(0), 8);
    EXPECT_EQ(linear->lora_b().abs().sum().item<double>(), 0.0);
  }
}

TEST(GsLoraRunTest, OnlyTheAdaptersChange) {
  at::set_num_threads(1);
  Fixture f = MakeFixture();
  UNL_ASSERT_OK_AND_ASSIGN(Candidate c, RunMethod("gs_lora", kQuick, *f.vit, f.probes, {1}));
  EXPECT_EQ(c.kind, ArtifactKind::kLoraAdapter);
  const auto* out = dynamic_cast<const VitClassifier*>(c.model.get());
  ASSERT_NE(out, nullptr);
  auto parent_params = f.vit->module()->named_parameters();
  int64_t factors = 0;
  double b_norm = 0.0;
  for (const auto& item : out->module()->named_parameters()) {
    if (IsLoraFactor(item.key())) {
      ++factors;
      if (item.key().find("lora_B") != std::string::npos) {
        b_norm += item.value().abs().sum().item<double>();
      }
      continue;
    }
    EXPECT_TRUE(at::equal(item.value(), parent_params[item.key()])) << item.key();
  }
  EXPECT_EQ(factors, 8);
  EXPECT_GT(b_norm, 0.0);  // the adapters did train
  EXPECT_THAT(out->forgotten_classes(), ElementsAre(1));
  EXPECT_TRUE(f.vit->forgotten_classes().empty());
  EXPECT_FALSE(at::equal(out->ClassifyLogits(f.probes.images_train.images.slice(0, 0, 4)),
                         f.vit->ClassifyLogits(f.probes.images_train.images.slice(0, 0, 4))));
  EXPECT_EQ(c.facts["groups"], 2);
  EXPECT_EQ(c.facts["group_norms"].size(), 2u);
  EXPECT_NEAR(c.facts["bnd"].get<double>(), std::log(3.0) + 2.0, 1e-9);
}

double SumOfGroupNorms(const Candidate& c) {
  double s = 0.0;
  for (const auto& n : c.facts["group_norms"]) s += n.get<double>();
  return s;
}

TEST(GsLoraRunTest, SparsityWarmUpSwitchesTheGroupLassoOffThenOn) {
  at::set_num_threads(1);
  Fixture f = MakeFixture();
  nlohmann::json no_alpha = kQuick;
  no_alpha["alpha"] = 0.0;
  nlohmann::json warm_all = kQuick;  // alpha large, but warm-up for every epoch
  warm_all["alpha"] = 5.0;
  warm_all["sparsity_warmup_epochs"] = 2;
  nlohmann::json no_warm = warm_all;
  no_warm["sparsity_warmup_epochs"] = 0;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate a, RunMethod("gs_lora", no_alpha, *f.vit, f.probes, {1}));
  UNL_ASSERT_OK_AND_ASSIGN(Candidate b, RunMethod("gs_lora", warm_all, *f.vit, f.probes, {1}));
  UNL_ASSERT_OK_AND_ASSIGN(Candidate c, RunMethod("gs_lora", no_warm, *f.vit, f.probes, {1}));
  const auto ta = VitAdapterTensors(dynamic_cast<const VitClassifier&>(*a.model));
  const auto tb = VitAdapterTensors(dynamic_cast<const VitClassifier&>(*b.model));
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) EXPECT_TRUE(at::equal(t, tb.at(name))) << name;
  // With the group lasso on from the start the groups end smaller.
  EXPECT_LT(SumOfGroupNorms(c), 0.9 * SumOfGroupNorms(a));
}

TEST(GsLoraArtifactTest, WritesOnlyAdaptersAndReloadsTheSameModelAlongAChain) {
  at::set_num_threads(1);
  Fixture f = MakeFixture();
  const torch::Tensor images = f.probes.images_train.images.slice(0, 0, 16);
  const std::string root = ::testing::TempDir() + "/gs_lora_artifact";
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root + "/v2");
  std::filesystem::create_directories(root + "/v3");

  UNL_ASSERT_OK_AND_ASSIGN(Candidate first,
                           RunMethod("gs_lora_plus", kQuick, *f.vit, f.probes, {1}));
  UNL_ASSERT_OK(first.write(root + "/v2"));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(root + "/v2")) {
    files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  EXPECT_THAT(files, ElementsAre("adapter_config.json", "adapter_model.safetensors"));
  EXPECT_EQ(
      static_cast<int64_t>(std::filesystem::file_size(root + "/v2/" + kVitAdapterWeightsFile)),
      first.facts["adapter_bytes"].get<int64_t>());
  UNL_ASSERT_OK_AND_ASSIGN(SafetensorsFile file,
                           ReadSafetensors(root + "/v2/" + kVitAdapterWeightsFile));
  ASSERT_EQ(file.tensors.size(), 8u);
  ASSERT_EQ(file.tensors.count("vit.encoder.layer.1.intermediate.dense.lora_A.weight"), 1u);
  EXPECT_EQ(file.tensors["vit.encoder.layer.1.output.dense.lora_B.weight"].sizes(),
            (std::vector<int64_t>{16, 8}));

  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> v2,
                           LoadVitAdapter(root + "/v2", *f.vit, torch::kCPU));
  const auto& first_model = dynamic_cast<const VitClassifier&>(*first.model);
  EXPECT_TRUE(at::allclose(v2->ClassifyLogits(images), first_model.ClassifyLogits(images),
                           /*rtol=*/1e-5, /*atol=*/1e-5));
  EXPECT_THAT(v2->forgotten_classes(), ElementsAre(1));

  // The next request trains fresh adapters on the composite; its files reload on the reloaded v2.
  UNL_ASSERT_OK_AND_ASSIGN(Candidate second, RunMethod("gs_lora", kQuick, *v2, f.probes, {2}));
  UNL_ASSERT_OK(second.write(root + "/v3"));
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> v3,
                           LoadVitAdapter(root + "/v3", *v2, torch::kCPU));
  const auto& second_model = dynamic_cast<const VitClassifier&>(*second.model);
  EXPECT_TRUE(at::allclose(v3->ClassifyLogits(images), second_model.ClassifyLogits(images),
                           /*rtol=*/1e-5, /*atol=*/1e-5));
  EXPECT_THAT(v3->forgotten_classes(), ElementsAre(1, 2));
  UNL_ASSERT_OK_AND_ASSIGN(nlohmann::json config,
                           ReadJsonFile(root + "/v3/" + kVitAdapterConfigFile));
  EXPECT_EQ(config["r"], 8);
  EXPECT_EQ(config["unlearning_forget_classes"], nlohmann::json({2}));
  EXPECT_EQ(config["unlearning_forgotten_classes"], nlohmann::json({1, 2}));
  // v3 on the plain parent (v2's adapters missing) is a different model: the chain matters.
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> wrong,
                           LoadVitAdapter(root + "/v3", *f.vit, torch::kCPU));
  EXPECT_FALSE(
      at::allclose(wrong->ClassifyLogits(images), second_model.ClassifyLogits(images), 1e-5, 1e-5));

  // A damaged adapter is refused with the tensor named.
  file.tensors.erase("vit.encoder.layer.0.output.dense.lora_B.weight");
  UNL_ASSERT_OK(WriteSafetensors(root + "/v3/" + kVitAdapterWeightsFile, file.tensors));
  EXPECT_THAT(LoadVitAdapter(root + "/v3", *v2, torch::kCPU).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("vit.encoder.layer.0.output.dense.lora_B.weight")));
}

TEST(GsLoraArtifactTest, MergeChainPublishesSelfContainedWeights) {
  at::set_num_threads(1);
  Fixture f = MakeFixture();
  const torch::Tensor images = f.probes.images_train.images.slice(0, 0, 16);
  UNL_ASSERT_OK_AND_ASSIGN(Candidate first, RunMethod("gs_lora", kQuick, *f.vit, f.probes, {1}));
  const auto& composite = dynamic_cast<const VitClassifier&>(*first.model);
  nlohmann::json merge = kQuick;
  merge["merge_chain"] = true;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate merged, RunMethod("gs_lora", merge, composite, f.probes, {2}));
  EXPECT_EQ(merged.kind, ArtifactKind::kFullWeights);
  const std::string dir = ::testing::TempDir() + "/gs_lora_merged";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  UNL_ASSERT_OK(merged.write(dir));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + kVitAdapterWeightsFile));
  // The self-contained directory is the whole chain: it loads alone and answers as the candidate.
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> loaded,
                           VitClassifier::Load(dir, torch::kCPU));
  EXPECT_TRUE(at::allclose(loaded->ClassifyLogits(images),
                           dynamic_cast<const VitClassifier&>(*merged.model).ClassifyLogits(images),
                           1e-4, 1e-5));
  EXPECT_THAT(loaded->forgotten_classes(), ElementsAre(1, 2));
}

// merge_after_tasks = N: the request that would be the N-th adapter link on the last full-weights
// version is published as full weights instead; those weights answer as the adapter chain would
// (the same request published as an adapter and loaded on its parent), and the facts (the
// manifest's and the certificate's artifact facts) record the merge.
TEST(GsLoraArtifactTest, MergeAfterTasksFoldsTheChainAtTheNthRequest) {
  at::set_num_threads(1);
  Fixture f = MakeFixture();
  const torch::Tensor images = f.probes.images_train.images.slice(0, 0, 16);
  const std::string root = ::testing::TempDir() + "/gs_lora_merge_after";
  std::filesystem::remove_all(root);
  auto write = [&](const Candidate& c, const std::string& name) {
    const std::string dir = root + "/" + name;
    std::filesystem::create_directories(dir);
    EXPECT_TRUE(c.write(dir).ok());
    return dir;
  };
  nlohmann::json every2 = kQuick;
  every2["merge_after_tasks"] = 2;
  EXPECT_EQ(f.vit->adapter_chain_length(), 0);

  // Request 1: the first link, an adapter.
  UNL_ASSERT_OK_AND_ASSIGN(Candidate first, RunMethod("gs_lora", every2, *f.vit, f.probes, {1}));
  EXPECT_EQ(first.kind, ArtifactKind::kLoraAdapter);
  EXPECT_EQ(first.facts["adapter_chain_length"], 1);
  EXPECT_FALSE(first.facts.contains("merged_chain_length"));
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> v2,
                           LoadVitAdapter(write(first, "v2"), *f.vit, torch::kCPU));
  EXPECT_EQ(v2->adapter_chain_length(), 1);

  // Request 2 would be the second link: published as full weights.
  UNL_ASSERT_OK_AND_ASSIGN(Candidate merged, RunMethod("gs_lora", every2, *v2, f.probes, {2}));
  EXPECT_EQ(merged.kind, ArtifactKind::kFullWeights);
  EXPECT_EQ(merged.facts["merged_chain_length"], 2);
  EXPECT_EQ(merged.facts["merge_reason"], "merge_after_tasks");
  EXPECT_EQ(merged.facts["merged_adapter_config"]["unlearning_forget_classes"],
            nlohmann::json({2}));
  const std::string merged_dir = write(merged, "v3_merged");
  EXPECT_TRUE(std::filesystem::exists(merged_dir + "/model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(merged_dir + "/" + kVitAdapterWeightsFile));
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> v3_merged,
                           VitClassifier::Load(merged_dir, torch::kCPU));
  EXPECT_EQ(v3_merged->adapter_chain_length(), 0);
  EXPECT_THAT(v3_merged->forgotten_classes(), ElementsAre(1, 2));

  // The same request without merging (same seed): an adapter on v2, i.e. the chain v1 -> v2 -> v3.
  nlohmann::json never = kQuick;
  never["merge_after_tasks"] = 3;
  UNL_ASSERT_OK_AND_ASSIGN(Candidate linked, RunMethod("gs_lora", never, *v2, f.probes, {2}));
  EXPECT_EQ(linked.kind, ArtifactKind::kLoraAdapter);
  EXPECT_EQ(linked.facts["adapter_chain_length"], 2);
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<VitClassifier> v3_chain,
                           LoadVitAdapter(write(linked, "v3_chain"), *v2, torch::kCPU));
  EXPECT_EQ(v3_chain->adapter_chain_length(), 2);
  const torch::Tensor chain_logits = v3_chain->ClassifyLogits(images);
  EXPECT_TRUE(at::allclose(v3_merged->ClassifyLogits(images), chain_logits, 1e-4, 1e-5))
      << (v3_merged->ClassifyLogits(images) - chain_logits).abs().max().item<double>();
  // Not trivially equal: the second request changed the model.
  EXPECT_FALSE(at::allclose(v2->ClassifyLogits(images), chain_logits, 1e-4, 1e-5));
}

}  // namespace
}  // namespace unlearning::core
