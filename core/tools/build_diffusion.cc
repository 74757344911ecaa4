// unlearn-build-diffusion: trains a class-conditional diffusion model (diffusers DDPMPipeline
// layout, core/models/diffusion.h) on Fashion-MNIST, samples it to PNGs and judges its samples
// with a classifier.
//
//   unlearn-build-diffusion train --out DIR [--sample-size 28 --channels 16,32,64
//       --layers-per-block 1 --groups 8 --steps 1500 --batch-size 64 --lr 2e-3 --warmup 100
//       --ema 0.999 --label-dropout 0.1 --seed 0 --threads N --metrics FILE
//       --judge DIR|builtin-cnn --judge-per-class 50 --guidance 3 --sample-steps 50]
//   unlearn-build-diffusion sample --model DIR --out PNG_DIR [--per-class 8 --labels 0,3
//       --steps 50 --sampler ddim|ancestral --guidance 3 --seed 0 --threads N]
//   unlearn-build-diffusion judge --model DIR --judge DIR|builtin-cnn [--per-class 50 ...
//       --metrics FILE]
//
// `train` writes DIR (model_index.json, unet/, scheduler/) and FILE (default DIR/../metrics.json
// if --metrics is not given: DIR/metrics.json is avoided so DIR stays a clean pipeline) with the
// loss, time, parameter count and, with --judge, the judged accuracy overall and per class.
// --judge DIR loads any model directory whose family has the ImageClassifier capability through
// the family registry (core/app/family_registry.h); `builtin-cnn` trains a small throwaway CNN
// on the Fashion-MNIST training split first (about a minute) and uses that.
//
// Exit status: 0 on success, 1 on an error, 2 if the judged accuracy is below --min-accuracy
// (the model and metrics are still written).
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include "core/app/family_registry.h"
#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/common/status_macros.h"
#include "core/common/threads.h"
#include "core/common/torch_status.h"
#include "core/data/idx.h"
#include "core/io/png.h"
#include "core/models/diffusion.h"
#include "core/train/diffusion_train.h"

namespace unlearning::core {
namespace {

CancellationToken* g_cancel = nullptr;

extern "C" void HandleSigint(int) {
  if (g_cancel != nullptr) g_cancel->Cancel();
}

// Loads the judge model directory. The family registry dispatches on the directory's config, so
// any family with the ImageClassifier capability (the ViT classifier) works once registered.
using JudgeLoader =
    std::function<absl::StatusOr<std::unique_ptr<Model>>(const std::string&, torch::Device)>;
JudgeLoader DefaultJudgeLoader() {
  return [](const std::string& dir, torch::Device device) {
    return FamilyRegistry::Builtin().Load(dir, device);
  };
}

class PrintingSink : public ProgressSink {
 public:
  void OnProgress(const ProgressUpdate& u) override {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::printf("step %lld/%lld  loss %.4f  elapsed %.0fs  eta %.0fs\n",
                static_cast<long long>(u.step), static_cast<long long>(u.total_steps), u.loss,
                elapsed, u.eta_seconds);
    std::fflush(stdout);
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// ---- The throwaway judge: a two-conv CNN trained for a few epochs, used until the project's
// ViT classifier is available. ----

class TinyCnnImpl : public torch::nn::Module {
 public:
  TinyCnnImpl()
      : c1_(register_module("c1",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)))),
        c2_(register_module("c2",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))),
        f1_(register_module("f1", torch::nn::Linear(64 * 7 * 7, 128))),
        f2_(register_module("f2", torch::nn::Linear(128, 10))) {}
  //   x: [B, 1, 28, 28] in [0, 1]; returns [B, 128] features.
  torch::Tensor features(const torch::Tensor& x) {
    torch::Tensor h = at::max_pool2d(at::relu(c1_(x)), {2, 2});
    h = at::max_pool2d(at::relu(c2_(h)), {2, 2});
    return at::relu(f1_(h.flatten(1)));
  }
  torch::Tensor forward(const torch::Tensor& x) { return f2_(features(x)); }

 private:
  torch::nn::Conv2d c1_, c2_;
  torch::nn::Linear f1_, f2_;
};
TORCH_MODULE(TinyCnn);

class TinyCnnJudge : public ImageClassifier {
 public:
  explicit TinyCnnJudge(TinyCnn net) : net_(std::move(net)) {}
  int64_t num_classes() const override { return 10; }
  std::string class_name(int64_t id) const override { return FashionMnistClassNames().at(id); }
  ImageSpec image_spec() const override { return ImageSpec{1, 28, 28}; }
  torch::Tensor ClassifyLogits(const torch::Tensor& images) const override {
    c10::InferenceMode guard;
    return net_.ptr()->forward(ResizeImages(images, 28));
  }
  torch::Tensor Features(const torch::Tensor& images) const override {
    c10::InferenceMode guard;
    return net_.ptr()->features(ResizeImages(images, 28));
  }

 private:
  TinyCnn net_;
};

// Trains the CNN for 2 epochs (seeded); prints its test accuracy.
absl::StatusOr<std::unique_ptr<ImageClassifier>> TrainTinyCnnJudge(double* test_accuracy) {
  UNL_ASSIGN_OR_RETURN(LabelledImages train, LoadFashionMnist("train"));
  UNL_ASSIGN_OR_RETURN(LabelledImages test, LoadFashionMnist("test"));
  return TorchCall("training the judge", [&]() -> absl::StatusOr<std::unique_ptr<ImageClassifier>> {
    torch::manual_seed(1234);
    TinyCnn net;
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
    const int64_t n = train.images.size(0);
    for (int epoch = 0; epoch < 2; ++epoch) {
      torch::Tensor perm = at::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64));
      for (int64_t i = 0; i + 128 <= n; i += 128) {
        torch::Tensor idx = perm.narrow(0, i, 128);
        torch::Tensor loss = at::cross_entropy_loss(net->forward(train.images.index_select(0, idx)),
                                                    train.labels.index_select(0, idx));
        opt.zero_grad();
        loss.backward();
        opt.step();
      }
    }
    net->eval();
    auto judge = std::make_unique<TinyCnnJudge>(net);
    torch::Tensor pred = judge->ClassifyLogits(test.images).argmax(1);
    *test_accuracy = pred.eq(test.labels).to(torch::kFloat64).mean().item<double>();
    std::printf("builtin-cnn judge: test accuracy %.4f\n", *test_accuracy);
    return std::unique_ptr<ImageClassifier>(std::move(judge));
  });
}

struct SampleArgs {
  int64_t steps = 50;
  std::string sampler = "ddim";
  double guidance = 3.0;
  uint64_t seed = 0;
};

SampleOptions ToOptions(const SampleArgs& a) {
  SampleOptions o;
  o.steps = a.steps;
  o.sampler = a.sampler;
  o.guidance_scale = a.guidance;
  o.seed = a.seed;
  return o;
}

// Samples `per_class` images of every class (class c uses seed + c) and classifies them.
// Returns {"overall": .., "per_class": {name: rate}, "judge": ..., "sampling": ...}.
absl::StatusOr<nlohmann::json> Judge(const DiffusionModel& model, const ImageClassifier& judge,
                                     int64_t per_class, const SampleArgs& args) {
  if (judge.num_classes() != model.num_classes()) {
    return absl::InvalidArgumentError(absl::StrFormat("judge has %d classes, the model %d",
                                                      judge.num_classes(), model.num_classes()));
  }
  nlohmann::json per = nlohmann::json::object();
  int64_t correct = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < model.num_classes(); ++c) {
    SampleOptions opts = ToOptions(args);
    opts.seed = args.seed + static_cast<uint64_t>(c);
    torch::Tensor labels = at::full({per_class}, c, torch::TensorOptions().dtype(torch::kInt64));
    UNL_ASSIGN_OR_RETURN(torch::Tensor images, model.Sample(labels, opts, g_cancel));
    int64_t hits = 0;
    UNL_RETURN_IF_ERROR(TorchCall("judging", [&] {
      // Samples are judged at the judge's resolution (bilinear up/down-sampling).
      const ImageSpec spec = judge.image_spec();
      torch::Tensor input = spec.height == spec.width ? ResizeImages(images, spec.height) : images;
      hits = judge.ClassifyLogits(input).argmax(1).eq(c).sum().item<int64_t>();
    }));
    correct += hits;
    const double rate = static_cast<double>(hits) / static_cast<double>(per_class);
    per[model.class_name(c)] = rate;
    std::printf("  class %lld %-12s %.2f\n", static_cast<long long>(c), model.class_name(c).c_str(),
                rate);
    std::fflush(stdout);
  }
  const double overall =
      static_cast<double>(correct) / static_cast<double>(per_class * model.num_classes());
  std::printf("judged accuracy %.4f (%lld per class, %s %lld steps, guidance %.1f)\n", overall,
              static_cast<long long>(per_class), args.sampler.c_str(),
              static_cast<long long>(args.steps), args.guidance);
  return nlohmann::json{
      {"overall", overall},
      {"per_class", per},
      {"samples_per_class", per_class},
      {"sampler", args.sampler},
      {"steps", args.steps},
      {"guidance_scale", args.guidance},
      {"seed", args.seed},
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
  };
}

// Loads the judge named by `spec` ("builtin-cnn" or a model directory). `holder` keeps a loaded
// model alive; the returned pointer borrows from it or from `owned`.
absl::StatusOr<const ImageClassifier*> LoadJudge(const std::string& spec,
                                                 std::unique_ptr<Model>* holder,
                                                 std::unique_ptr<ImageClassifier>* owned,
                                                 nlohmann::json* info) {
  if (spec == "builtin-cnn") {
    double acc = 0.0;
    UNL_ASSIGN_OR_RETURN(*owned, TrainTinyCnnJudge(&acc));
    *info = {{"name", "builtin-cnn"}, {"test_accuracy", acc}};
    return owned->get();
  }
  UNL_ASSIGN_OR_RETURN(*holder, DefaultJudgeLoader()(spec, torch::kCPU));
  const ImageClassifier* judge = (*holder)->AsImageClassifier();
  if (judge == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--judge ", spec, ": the model is not an image classifier"));
  }
  *info = {{"name", spec}, {"architecture", (*holder)->architecture()}};
  return judge;
}

absl::Status WriteJson(const std::string& path, const nlohmann::json& json) {
  std::ofstream out(path);
  out << json.dump(2) << "\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

struct TrainArgs {
  std::string out;
  std::string metrics;
  UNet2DConfig unet;
  std::string channels = "16,32,64";
  DiffusionTrainOptions train;
  uint64_t init_seed = 0;
  int threads = 1;
  std::string judge;
  int64_t judge_per_class = 50;
  SampleArgs sample;
  double min_accuracy = 0.0;
};

absl::StatusOr<int> RunTrain(TrainArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  a.unet.block_out_channels.clear();
  for (absl::string_view part : absl::StrSplit(a.channels, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--channels: bad list ", a.channels));
    }
    a.unet.block_out_channels.push_back(v);
  }
  const std::vector<std::string>& names = FashionMnistClassNames();
  a.unet.null_class_id = static_cast<int64_t>(names.size());
  a.unet.num_class_embeds = a.unet.null_class_id + 1;
  for (size_t i = 0; i < names.size(); ++i) a.unet.id2label[static_cast<int64_t>(i)] = names[i];
  UNL_ASSIGN_OR_RETURN(UNet2DConfig unet, UNet2DConfig::FromJson(a.unet.ToJson()));
  const DDPMSchedulerConfig scheduler;
  std::unique_ptr<DiffusionModel> model =
      DiffusionModel::Create(unet, scheduler, torch::kCPU, a.init_seed);
  std::printf("UNet2DModel %lldx%lld, channels %s, %lld parameters\n",
              static_cast<long long>(unet.sample_size), static_cast<long long>(unet.sample_size),
              a.channels.c_str(), static_cast<long long>(model->num_parameters()));

  UNL_ASSIGN_OR_RETURN(LabelledImages data, LoadFashionMnist("train"));
  torch::Tensor images;
  UNL_RETURN_IF_ERROR(
      TorchCall("resizing", [&] { images = ResizeImages(data.images, unet.sample_size); }));
  PrintingSink sink;
  UNL_ASSIGN_OR_RETURN(DiffusionTrainResult result,
                       TrainDiffusion(model.get(), images, data.labels, a.train, &sink, g_cancel));
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", a.out, ": ", ec.message()));
  UNL_RETURN_IF_ERROR(model->Save(a.out));
  const double train_seconds = result.seconds;
  std::printf("trained %lld steps in %.0fs: loss %.4f -> %.4f; wrote %s\n",
              static_cast<long long>(result.loop.steps), train_seconds, result.mean_first_loss,
              result.mean_last_loss, a.out.c_str());

  nlohmann::json metrics = {
      {"parameters", model->num_parameters()},
      {"sample_size", unet.sample_size},
      {"block_out_channels", unet.block_out_channels},
      {"steps", result.loop.steps},
      {"batch_size", a.train.batch_size},
      {"learning_rate", a.train.learning_rate},
      {"ema_decay", a.train.ema_decay},
      {"label_dropout", a.train.label_dropout},
      {"seed", a.train.seed},
      {"threads", a.threads},
      {"first_loss", result.mean_first_loss},
      {"last_loss", result.mean_last_loss},
      {"train_seconds", train_seconds},
  };
  int exit_code = 0;
  if (!a.judge.empty()) {
    std::unique_ptr<Model> holder;
    std::unique_ptr<ImageClassifier> owned;
    nlohmann::json info;
    UNL_ASSIGN_OR_RETURN(const ImageClassifier* judge, LoadJudge(a.judge, &holder, &owned, &info));
    UNL_ASSIGN_OR_RETURN(nlohmann::json judged, Judge(*model, *judge, a.judge_per_class, a.sample));
    judged["judge"] = info;
    metrics["judged"] = judged;
    metrics["accuracy"] = judged["overall"];
    if (judged["overall"].get<double>() < a.min_accuracy) exit_code = 2;
  }
  metrics["wall_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string metrics_path =
      a.metrics.empty() ? (std::filesystem::path(a.out).parent_path() / "metrics.json").string()
                        : a.metrics;
  UNL_RETURN_IF_ERROR(WriteJson(metrics_path, metrics));
  return exit_code;
}

struct SampleCmdArgs {
  std::string model;
  std::string out;
  int64_t per_class = 8;
  std::string labels;
  SampleArgs sample;
};

absl::Status RunSample(const SampleCmdArgs& a) {
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<DiffusionModel> model,
                       DiffusionModel::Load(a.model, torch::kCPU));
  std::vector<int64_t> classes;
  if (a.labels.empty()) {
    for (int64_t c = 0; c < model->num_classes(); ++c) classes.push_back(c);
  } else {
    for (absl::string_view part : absl::StrSplit(a.labels, ',')) {
      int64_t v = 0;
      if (!absl::SimpleAtoi(part, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--labels: bad list ", a.labels));
      }
      classes.push_back(v);
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", a.out, ": ", ec.message()));
  std::vector<torch::Tensor> rows;
  for (int64_t c : classes) {
    SampleOptions opts = ToOptions(a.sample);
    opts.seed = a.sample.seed + static_cast<uint64_t>(c);
    torch::Tensor labels = at::full({a.per_class}, c, torch::TensorOptions().dtype(torch::kInt64));
    UNL_ASSIGN_OR_RETURN(torch::Tensor images, model->Sample(labels, opts, g_cancel));
    for (int64_t i = 0; i < a.per_class; ++i) {
      UNL_RETURN_IF_ERROR(
          WritePngFile(absl::StrFormat("%s/class%d_%03d.png", a.out, c, i), images[i]));
    }
    rows.push_back(at::cat(images.unbind(0), /*dim=*/2));  // [C, H, per_class * W]
  }
  UNL_RETURN_IF_ERROR(WritePngFile(a.out + "/grid.png", at::cat(rows, /*dim=*/1)));
  std::printf("wrote %zu x %lld samples and grid.png to %s\n", classes.size(),
              static_cast<long long>(a.per_class), a.out.c_str());
  return absl::OkStatus();
}

struct JudgeCmdArgs {
  std::string model;
  std::string judge = "builtin-cnn";
  std::string metrics;
  int64_t per_class = 50;
  SampleArgs sample;
};

absl::Status RunJudge(const JudgeCmdArgs& a) {
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<DiffusionModel> model,
                       DiffusionModel::Load(a.model, torch::kCPU));
  std::unique_ptr<Model> holder;
  std::unique_ptr<ImageClassifier> owned;
  nlohmann::json info;
  UNL_ASSIGN_OR_RETURN(const ImageClassifier* judge, LoadJudge(a.judge, &holder, &owned, &info));
  UNL_ASSIGN_OR_RETURN(nlohmann::json judged, Judge(*model, *judge, a.per_class, a.sample));
  judged["judge"] = info;
  if (!a.metrics.empty()) UNL_RETURN_IF_ERROR(WriteJson(a.metrics, judged));
  return absl::OkStatus();
}

void AddSampleOptions(CLI::App* cmd, SampleArgs* s, const char* steps_flag) {
  cmd->add_option(steps_flag, s->steps, "denoising steps (1..1000)")->capture_default_str();
  cmd->add_option("--sampler", s->sampler, "ddim | ancestral")->capture_default_str();
  cmd->add_option("--guidance", s->guidance, "classifier-free guidance scale")
      ->capture_default_str();
  cmd->add_option("--sample-seed", s->seed, "sampling seed (class c uses seed + c)")
      ->capture_default_str();
}

int Main(int argc, char** argv) {
  CLI::App app{"Train, sample and judge class-conditional diffusion models on Fashion-MNIST"};
  app.require_subcommand(1);
  int threads = 1;
  app.add_option("--threads", threads, "LibTorch intra-op threads (0 = automatic)")
      ->capture_default_str();

  TrainArgs train;
  CLI::App* train_cmd = app.add_subcommand("train", "train and write a diffusers directory");
  train_cmd->add_option("--out", train.out, "output pipeline directory")->required();
  train_cmd->add_option("--metrics", train.metrics, "metrics JSON (default: next to --out)");
  train_cmd->add_option("--sample-size", train.unet.sample_size, "resolution")
      ->capture_default_str();
  train_cmd->add_option("--channels", train.channels, "block_out_channels")->capture_default_str();
  train_cmd->add_option("--layers-per-block", train.unet.layers_per_block, "resnets per level")
      ->capture_default_str();
  train_cmd->add_option("--groups", train.unet.norm_num_groups, "GroupNorm groups")
      ->capture_default_str();
  train_cmd->add_option("--steps", train.train.steps, "optimizer steps")->capture_default_str();
  train_cmd->add_option("--batch-size", train.train.batch_size, "batch size")
      ->capture_default_str();
  train_cmd->add_option("--lr", train.train.learning_rate, "peak learning rate")
      ->capture_default_str();
  train_cmd->add_option("--warmup", train.train.warmup_steps, "warm-up steps")
      ->capture_default_str();
  train_cmd->add_option("--ema", train.train.ema_decay, "EMA decay (0 = off)")
      ->capture_default_str();
  train_cmd->add_option("--label-dropout", train.train.label_dropout, "CFG label dropout")
      ->capture_default_str();
  train_cmd->add_option("--seed", train.train.seed, "training seed")->capture_default_str();
  train_cmd->add_option("--init-seed", train.init_seed, "initialisation seed")
      ->capture_default_str();
  train_cmd->add_option("--judge", train.judge, "classifier dir or builtin-cnn (optional)");
  train_cmd->add_option("--judge-per-class", train.judge_per_class, "samples per class")
      ->capture_default_str();
  train_cmd->add_option("--min-accuracy", train.min_accuracy, "exit 2 below this")
      ->capture_default_str();
  AddSampleOptions(train_cmd, &train.sample, "--sample-steps");

  SampleCmdArgs sample;
  CLI::App* sample_cmd = app.add_subcommand("sample", "write PNG samples per class");
  sample_cmd->add_option("--model", sample.model, "pipeline directory")->required();
  sample_cmd->add_option("--out", sample.out, "PNG output directory")->required();
  sample_cmd->add_option("--per-class", sample.per_class, "images per class")
      ->capture_default_str();
  sample_cmd->add_option("--labels", sample.labels, "comma-separated class ids (default all)");
  AddSampleOptions(sample_cmd, &sample.sample, "--steps");

  JudgeCmdArgs judge;
  CLI::App* judge_cmd = app.add_subcommand("judge", "classify samples of every class");
  judge_cmd->add_option("--model", judge.model, "pipeline directory")->required();
  judge_cmd->add_option("--judge", judge.judge, "classifier dir or builtin-cnn")
      ->capture_default_str();
  judge_cmd->add_option("--per-class", judge.per_class, "samples per class")->capture_default_str();
  judge_cmd->add_option("--metrics", judge.metrics, "write the result JSON here");
  AddSampleOptions(judge_cmd, &judge.sample, "--steps");

  CLI11_PARSE(app, argc, argv);
  // An explicit count (the build script passes 2): with the OpenMP OpenBLAS, 2 threads are about
  // 1.66x faster than 1; with the pthreads one, OpenBLAS's own pool is limited so they do not
  // oversubscribe the cores (core/common/threads.h).
  const ThreadConfig thread_config = ConfigureThreads(threads);
  std::printf("unlearn-build-diffusion: %s\n", thread_config.Describe().c_str());
  train.threads = thread_config.threads;
  CancellationToken cancel;
  g_cancel = &cancel;
  std::signal(SIGINT, HandleSigint);
  std::signal(SIGTERM, HandleSigint);

  absl::Status status;
  int code = 0;
  if (*train_cmd) {
    absl::StatusOr<int> result = RunTrain(train);
    status = result.status();
    if (result.ok()) code = *result;
  } else if (*sample_cmd) {
    status = RunSample(sample);
  } else {
    status = RunJudge(judge);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "unlearn-build-diffusion: %s\n", status.ToString().c_str());
    return 1;
  }
  return code;
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) { return unlearning::core::Main(argc, argv); }
