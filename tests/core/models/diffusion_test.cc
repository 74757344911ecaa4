#include "core/models/diffusion.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/io/safetensors.h"
#include "core/models/unet.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

// The C++ UNet computes in float32 like the Python mirror; differences come only from the order
// of floating-point operations (convolution algorithms), far below this.
constexpr double kGoldenTolerance = 1e-5;

std::string MakeTempDir(const std::string& name) {
  static int counter = 0;
  fs::path dir = fs::path(::testing::TempDir()) / ("diff_" + std::to_string(::getpid()) + "_" +
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

// A small 8x8 single-channel model with 3 real classes (+ the null class), random non-zero
// weights everywhere (conv_out too, so outputs depend on every layer).
std::unique_ptr<DiffusionModel> TinyModel(uint64_t seed = 0) {
  UNet2DConfig c;
  c.sample_size = 8;
  c.block_out_channels = {8, 16};
  c.norm_num_groups = 4;
  c.num_class_embeds = 4;
  c.null_class_id = 3;
  c.id2label = {{0, "zero"}, {1, "one"}, {2, "two"}};
  absl::StatusOr<UNet2DConfig> valid = UNet2DConfig::FromJson(c.ToJson());
  EXPECT_TRUE(valid.ok()) << valid.status();
  auto model = DiffusionModel::Create(*valid, DDPMSchedulerConfig{}, torch::kCPU, seed);
  torch::NoGradGuard no_grad;
  model->module()->named_parameters()["conv_out.weight"].normal_(0.0, 0.1);
  return model;
}

class DiffusionModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    golden_dir_ = new std::string(MakeTempDir("golden"));
    const std::string cmd = std::string("/usr/bin/python3 ") + UNL_SOURCE_DIR +
                            "/tests/golden/gen_golden_unet.py " + *golden_dir_ + " 2>&1";
    generator_status_ = std::system(cmd.c_str());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*golden_dir_);
    delete golden_dir_;
  }
  void SetUp() override {
    ASSERT_EQ(generator_status_, 0) << "tests/golden/gen_golden_unet.py failed";
  }

  static std::string Variant(const std::string& name) { return *golden_dir_ + "/" + name; }

  static std::unique_ptr<DiffusionModel> LoadOrDie(const std::string& dir) {
    absl::StatusOr<std::unique_ptr<DiffusionModel>> model = DiffusionModel::Load(dir, torch::kCPU);
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? std::move(*model) : nullptr;
  }

  static std::string* golden_dir_;
  static int generator_status_;
};
std::string* DiffusionModelTest::golden_dir_ = nullptr;
int DiffusionModelTest::generator_status_ = -1;

class GoldenTest : public DiffusionModelTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(GoldenTest, MatchesPythonReference) {
  std::unique_ptr<DiffusionModel> model = LoadOrDie(Variant(GetParam()));
  ASSERT_NE(model, nullptr);
  UNL_ASSERT_OK_AND_ASSIGN(SafetensorsFile golden,
                           ReadSafetensors(Variant(GetParam()) + "/golden.safetensors"));
  torch::NoGradGuard no_grad;
  torch::Tensor pred =
      model->PredictNoise(golden.tensors.at("sample"), golden.tensors.at("timesteps"),
                          golden.tensors.at("class_labels"));
  const torch::Tensor& expected = golden.tensors.at("noise_pred");
  ASSERT_EQ(pred.sizes(), expected.sizes());
  const double diff = MaxAbsDiff(pred, expected);
  std::cout << GetParam() << ": max |eps - reference| = " << diff << "\n";
  EXPECT_LT(diff, kGoldenTolerance);
  // The fixture is not degenerate: the prediction varies and depends on the label.
  EXPECT_GT(expected.std().item<double>(), 0.1);
  torch::Tensor other_labels =
      (golden.tensors.at("class_labels") + 1) % model->unet_config().num_class_embeds;
  EXPECT_GT(MaxAbsDiff(model->PredictNoise(golden.tensors.at("sample"),
                                           golden.tensors.at("timesteps"), other_labels),
                       expected),
            1e-3);
}

INSTANTIATE_TEST_SUITE_P(Variants, GoldenTest, ::testing::Values("small", "deep"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

TEST_F(DiffusionModelTest, ParameterNamesAreExactlyDiffusers) {
  std::unique_ptr<DiffusionModel> model = LoadOrDie(Variant("deep"));
  ASSERT_NE(model, nullptr);
  UNL_ASSERT_OK_AND_ASSIGN(
      SafetensorsFile weights,
      ReadSafetensors(Variant("deep") + "/unet/diffusion_pytorch_model.safetensors"));
  std::set<std::string> file_names;
  for (const auto& [name, t] : weights.tensors) file_names.insert(name);
  std::set<std::string> module_names;
  for (const auto& item : model->module()->named_parameters()) module_names.insert(item.key());
  EXPECT_EQ(module_names, file_names);
  for (const char* name :
       {"conv_in.weight", "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
        "class_embedding.weight", "down_blocks.0.resnets.1.norm1.weight",
        "down_blocks.1.resnets.0.conv_shortcut.weight", "down_blocks.1.downsamplers.0.conv.weight",
        "mid_block.resnets.1.time_emb_proj.weight", "up_blocks.0.resnets.2.conv2.bias",
        "up_blocks.1.upsamplers.0.conv.weight", "conv_norm_out.weight", "conv_out.bias"}) {
    EXPECT_TRUE(module_names.count(name)) << name;
  }
  EXPECT_FALSE(module_names.count("down_blocks.2.downsamplers.0.conv.weight"));
  EXPECT_FALSE(module_names.count("up_blocks.2.upsamplers.0.conv.weight"));
  EXPECT_EQ(model->family(), ModelFamily::kDiffusion);
  EXPECT_EQ(model->architecture(), "UNet2DModel");
  EXPECT_EQ(model->AsImageSampler(), model.get());
  EXPECT_EQ(model->AsImageClassifier(), nullptr);
  EXPECT_EQ(model->num_classes(), 4);
  EXPECT_EQ(model->class_name(2), "class2");
  EXPECT_EQ(model->image_spec().channels, 2);
  EXPECT_EQ(model->image_spec().height, 12);
  EXPECT_EQ(model->max_steps(), 1000);
}

TEST(DDPMSchedulerTest, AlphasCumprodMatchesClosedForm) {
  DDPMSchedulerConfig s;
  torch::Tensor abar = s.AlphasCumprod();
  ASSERT_EQ(abar.size(0), 1000);
  double prod = 1.0;
  double worst = 0.0;
  for (int64_t t = 0; t < 1000; ++t) {
    const double beta = 1e-4 + (0.02 - 1e-4) * static_cast<double>(t) / 999.0;
    prod *= 1.0 - beta;
    worst = std::max(worst, std::abs(abar[t].item<double>() - prod) / prod);
  }
  EXPECT_LT(worst, 1e-10);
  // SFD's t_init (METHODS.md §3.2): ᾱ_440 = 0.1377, σ = sqrt(1/ᾱ - 1) ≈ 2.50.
  EXPECT_NEAR(abar[440].item<double>(), 0.1377, 5e-4);
  EXPECT_NEAR(std::sqrt(1.0 / abar[440].item<double>() - 1.0), 2.50, 0.01);
  EXPECT_NEAR(abar[0].item<double>(), 1.0 - 1e-4, 1e-12);
}

TEST(DDPMSchedulerTest, SamplingTimestepsAreTrailing) {
  DDPMSchedulerConfig s;
  std::vector<int64_t> all = s.SamplingTimesteps(1000);
  ASSERT_EQ(all.size(), 1000u);
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(all[i], 999 - i);
  EXPECT_EQ(s.SamplingTimesteps(1), std::vector<int64_t>{999});
  std::vector<int64_t> fifty = s.SamplingTimesteps(50);
  ASSERT_EQ(fifty.size(), 50u);
  EXPECT_EQ(fifty.front(), 999);
  EXPECT_EQ(fifty[1], 979);
  EXPECT_EQ(fifty.back(), 19);
}

// Found by tests/fuzz/fuzz_model_config (corpus/fuzz_model_config/unet_70_levels): 2^(levels - 1)
// was computed before the level count was bounded (a shift by 69 bits, undefined behaviour).
TEST(UNet2DConfigTest, RefusesTooManyLevels) {
  nlohmann::json json = UNet2DConfig{}.ToJson();
  json.erase("down_block_types");
  json.erase("up_block_types");
  json["block_out_channels"] = std::vector<int64_t>(70, 8);
  EXPECT_THAT(UNet2DConfig::FromJson(json),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 16 levels")));
}

TEST(DDPMSchedulerTest, RejectsBadConfigNamingTheKey) {
  nlohmann::json good = DDPMSchedulerConfig{}.ToJson();
  UNL_EXPECT_OK(DDPMSchedulerConfig::FromJson(good));
  auto expect_bad = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json j = good;
    j[key] = value;
    EXPECT_THAT(DDPMSchedulerConfig::FromJson(j),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(key)))
        << key << " = " << value.dump();
  };
  expect_bad("beta_schedule", "squaredcos_cap_v2");
  expect_bad("prediction_type", "v_prediction");
  expect_bad("num_train_timesteps", 1);
  expect_bad("num_train_timesteps", "1000");
  expect_bad("beta_start", 0.0);
  expect_bad("beta_end", 1e-5);
  expect_bad("variance_type", "learned");
  expect_bad("clip_sample", "yes");
}

// With the exact ε of a known x0, both samplers must return x0 (DDIM is exact at every step;
// the ancestral sampler's last step has posterior mean x0 and zero variance).
TEST(RunDiffusionSamplerTest, OracleEpsilonRecoversX0) {
  DDPMSchedulerConfig s;
  const torch::Tensor abar = s.AlphasCumprod();
  at::Generator data_gen = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::Tensor x0 =
      at::rand({2, 1, 4, 4}, data_gen, torch::TensorOptions().dtype(torch::kFloat32)) * 1.8 - 0.9;
  auto oracle = [&](const torch::Tensor& x_t, int64_t t) {
    const double a = abar[t].item<double>();
    return (x_t - x0 * std::sqrt(a)) / std::sqrt(1.0 - a);
  };
  for (bool ddim : {true, false}) {
    for (int64_t steps : {1000, 37}) {
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
      torch::Tensor x_T =
          at::randn({2, 1, 4, 4}, gen, torch::TensorOptions().dtype(torch::kFloat32));
      UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor out,
                               RunDiffusionSampler(s, oracle, x_T, steps, ddim, gen, nullptr));
      EXPECT_LT(MaxAbsDiff(out, x0), 1e-4) << (ddim ? "ddim " : "ancestral ") << steps;
    }
  }
  // A wrong oracle (ε of another x0) does not: the check can fail.
  torch::Tensor other = x0.flip(0);
  auto wrong = [&](const torch::Tensor& x_t, int64_t t) {
    const double a = abar[t].item<double>();
    return (x_t - other * std::sqrt(a)) / std::sqrt(1.0 - a);
  };
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor out, RunDiffusionSampler(s, wrong, at::zeros({2, 1, 4, 4}),
                                                                  1000, true, gen, nullptr));
  EXPECT_GT(MaxAbsDiff(out, x0), 0.1);
}

TEST(DiffusionModelSaveTest, SaveLoadRoundTrip) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  const std::string dir = MakeTempDir("roundtrip");
  UNL_ASSERT_OK(model->Save(dir));
  for (const char* f :
       {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json"}) {
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  }
  EXPECT_EQ(ReadJson(dir + "/model_index.json")["_class_name"], "DDPMPipeline");
  EXPECT_EQ(ReadJson(dir + "/unet/config.json")["_class_name"], "UNet2DModel");
  EXPECT_EQ(ReadJson(dir + "/scheduler/scheduler_config.json")["_class_name"], "DDPMScheduler");
  EXPECT_TRUE(DiffusionModel::Recognises(dir));
  EXPECT_FALSE(DiffusionModel::Recognises(MakeTempDir("empty")));

  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DiffusionModel> loaded,
                           DiffusionModel::Load(dir, torch::kCPU));
  EXPECT_EQ(loaded->unet_config().ToJson(), model->unet_config().ToJson());
  EXPECT_EQ(loaded->scheduler_config().ToJson(), model->scheduler_config().ToJson());
  EXPECT_EQ(loaded->num_parameters(), model->num_parameters());
  EXPECT_EQ(loaded->class_name(1), "one");
  EXPECT_EQ(loaded->class_name(7), "7");
  auto loaded_params = loaded->module()->named_parameters();
  for (const auto& item : model->module()->named_parameters()) {
    EXPECT_TRUE(item.value().equal(loaded_params[item.key()])) << item.key();
  }
  SampleOptions opts;
  opts.steps = 5;
  opts.guidance_scale = 2.0;
  torch::Tensor labels = torch::tensor({0, 2}, torch::kInt64);
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor a, model->Sample(labels, opts, nullptr));
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor b, loaded->Sample(labels, opts, nullptr));
  EXPECT_TRUE(a.equal(b));
}

TEST(DiffusionModelSaveTest, CloneIsDeepAndEqual) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> clone, model->Clone(torch::kCPU));
  auto* typed = dynamic_cast<DiffusionModel*>(clone.get());
  ASSERT_NE(typed, nullptr);
  torch::Tensor x = torch::randn({2, 1, 8, 8});
  torch::Tensor t = torch::tensor({5, 900}, torch::kInt64);
  torch::Tensor y = torch::tensor({1, 3}, torch::kInt64);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(model->PredictNoise(x, t, y).equal(typed->PredictNoise(x, t, y)));
  typed->module()->named_parameters()["conv_in.weight"].add_(1.0);
  EXPECT_FALSE(model->PredictNoise(x, t, y).equal(typed->PredictNoise(x, t, y)));
}

TEST_F(DiffusionModelTest, LoadReportsMissingFilesAsNotFound) {
  EXPECT_THAT(DiffusionModel::Load(Variant("nope"), torch::kCPU),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("unet/config.json")));
  std::string dir = CopyDir(Variant("small"), "noweights");
  fs::remove(dir + "/unet/diffusion_pytorch_model.safetensors");
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("diffusion_pytorch_model")));
  dir = CopyDir(Variant("small"), "nosched");
  fs::remove(dir + "/scheduler/scheduler_config.json");
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("scheduler_config.json")));
}

TEST_F(DiffusionModelTest, LoadRejectsBadConfigNamingTheKey) {
  const std::string dir = CopyDir(Variant("small"), "badconfig");
  const nlohmann::json good = ReadJson(dir + "/unet/config.json");
  UNL_EXPECT_OK(DiffusionModel::Load(dir, torch::kCPU));
  auto expect_bad = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json j = good;
    j[key] = value;
    WriteJson(dir + "/unet/config.json", j);
    EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(key)))
        << key << " = " << value.dump();
  };
  expect_bad("_class_name", "UNet2DConditionModel");
  expect_bad("act_fn", "gelu");
  expect_bad("down_block_types", {"AttnDownBlock2D", "DownBlock2D"});
  expect_bad("up_block_types", {"UpBlock2D"});
  expect_bad("block_out_channels", {8, 6});  // groups 4 do not divide 6
  expect_bad("norm_num_groups", 3);
  expect_bad("sample_size", 7);  // not divisible by 2
  expect_bad("sample_size", -8);
  expect_bad("add_attention", true);
  expect_bad("time_embedding_type", "fourier");
  expect_bad("class_embed_type", "timestep");
  expect_bad("num_class_embeds", "4");
  expect_bad("null_class_id", 4);
  expect_bad("layers_per_block", 0);
  nlohmann::json no_attention_key = good;
  no_attention_key.erase("add_attention");  // diffusers' default is true
  WriteJson(dir + "/unet/config.json", no_attention_key);
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("add_attention")));
  WriteJson(dir + "/unet/config.json", good);
  nlohmann::json sched = ReadJson(dir + "/scheduler/scheduler_config.json");
  sched["beta_schedule"] = "scaled_linear";
  WriteJson(dir + "/scheduler/scheduler_config.json", sched);
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beta_schedule")));
}

TEST_F(DiffusionModelTest, LoadRejectsMissingOrMisshapedTensor) {
  const std::string dir = CopyDir(Variant("small"), "badweights");
  const std::string path = dir + "/unet/diffusion_pytorch_model.safetensors";
  UNL_ASSERT_OK_AND_ASSIGN(SafetensorsFile file, ReadSafetensors(path));
  std::map<std::string, torch::Tensor> tensors = file.tensors;
  tensors.erase("up_blocks.0.resnets.1.conv_shortcut.weight");
  UNL_ASSERT_OK(WriteSafetensors(path, tensors));
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing tensor up_blocks.0.resnets.1.conv_shortcut.weight")));
  tensors = file.tensors;
  tensors["class_embedding.weight"] = torch::zeros({3, 32});
  UNL_ASSERT_OK(WriteSafetensors(path, tensors));
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("class_embedding.weight has shape [3, 32]")));
  std::ofstream(path, std::ios::trunc) << "garbage";
  EXPECT_THAT(DiffusionModel::Load(dir, torch::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(DiffusionSampleTest, RejectsBadStepsLabelsAndSampler) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  torch::Tensor labels = torch::tensor({0, 1}, torch::kInt64);
  SampleOptions opts;
  for (int64_t steps : {0, -1, 1001}) {
    opts.steps = steps;
    EXPECT_THAT(model->Sample(labels, opts, nullptr),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("steps must be in [1, 1000], got " + std::to_string(steps))));
  }
  opts.steps = 2;
  // The null class is not a real class.
  EXPECT_THAT(model->Sample(torch::tensor({0, 3}, torch::kInt64), opts, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label 3 outside [0, 3)")));
  EXPECT_THAT(model->Sample(torch::tensor({-1}, torch::kInt64), opts, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label -1")));
  EXPECT_THAT(model->Sample(torch::tensor({0.0f}), opts, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("int64")));
  EXPECT_THAT(model->Sample(torch::zeros({0}, torch::kInt64), opts, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  opts.sampler = "euler";
  EXPECT_THAT(model->Sample(labels, opts, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("euler")));
  opts.sampler = "ddim";
  opts.guidance_scale = std::nan("");
  EXPECT_THAT(model->Sample(labels, opts, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("guidance_scale")));
}

TEST(DiffusionSampleTest, DeterministicForASeed) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  torch::Tensor labels = torch::tensor({0, 1, 2, 2}, torch::kInt64);
  for (const char* sampler : {"ddim", "ancestral"}) {
    SampleOptions opts;
    opts.steps = 4;
    opts.sampler = sampler;
    opts.guidance_scale = 3.0;
    opts.seed = 42;
    UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor a, model->Sample(labels, opts, nullptr));
    UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor b, model->Sample(labels, opts, nullptr));
    EXPECT_EQ(a.sizes(), (std::vector<int64_t>{4, 1, 8, 8}));
    EXPECT_EQ(a.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(a.equal(b)) << sampler;
    EXPECT_GE(a.min().item<float>(), 0.0f);
    EXPECT_LE(a.max().item<float>(), 1.0f);
    opts.seed = 43;
    UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor c, model->Sample(labels, opts, nullptr));
    EXPECT_GT(MaxAbsDiff(a, c), 1e-3) << sampler;
    opts.seed = 42;
    opts.guidance_scale = 1.0;
    UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor d, model->Sample(labels, opts, nullptr));
    EXPECT_GT(MaxAbsDiff(a, d), 1e-4) << "guidance has no effect with " << sampler;
  }
}

TEST(DiffusionSampleTest, CancelledTokenStopsSampling) {
  std::unique_ptr<DiffusionModel> model = TinyModel();
  CancellationToken cancel;
  cancel.Cancel();
  EXPECT_THAT(model->Sample(torch::tensor({0}, torch::kInt64), SampleOptions{}, &cancel),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("step 0")));
}

}  // namespace
}  // namespace unlearning::core
