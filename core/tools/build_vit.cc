// unlearn-build-vit: trains a ViT image classifier (Hugging Face ViTForImageClassification layout)
// on Fashion-MNIST and writes the model directory plus a metrics file.
//
//   unlearn-build-vit --out DIR [--metrics FILE] [--patch 7 --hidden 96 --layers 4 --heads 4
//       --intermediate 192 --epochs 7 --batch-size 128 --lr 2e-3 --label-smoothing 0.1
//       --seed 0 --threads N ...]
//
// DIR gets config.json, model.safetensors and preprocessor_config.json; FILE (default
// DIR/metrics.json) gets the test accuracy overall and per class, the training time and the
// parameter count.
//
// Exit status: 0 on success, 1 on an error, 2 if the test accuracy is below --min-accuracy (the
// model and metrics are still written).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/common/status_macros.h"
#include "core/common/threads.h"
#include "core/data/idx.h"
#include "core/models/vit.h"
#include "core/train/classifier_train.h"

namespace unlearning::core {
namespace {

CancellationToken* g_cancel = nullptr;

extern "C" void HandleSigint(int) {
  if (g_cancel != nullptr) g_cancel->Cancel();
}

std::string FormatSeconds(double s) {
  const int64_t total = static_cast<int64_t>(std::llround(s));
  if (total >= 60) return absl::StrFormat("%dm%02ds", total / 60, total % 60);
  return absl::StrFormat("%ds", total);
}

// Prints one line per progress update: step, epoch, loss, elapsed time and ETA.
class PrintingSink : public ProgressSink {
 public:
  explicit PrintingSink(int64_t steps_per_epoch) : steps_per_epoch_(steps_per_epoch) {}
  void OnProgress(const ProgressUpdate& u) override {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::printf("step %lld/%lld  epoch %.2f  loss %.4f  elapsed %s  eta %s\n",
                static_cast<long long>(u.step), static_cast<long long>(u.total_steps),
                steps_per_epoch_ > 0 ? static_cast<double>(u.step) / steps_per_epoch_ : 0.0, u.loss,
                FormatSeconds(elapsed).c_str(), FormatSeconds(u.eta_seconds).c_str());
    std::fflush(stdout);
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int64_t steps_per_epoch_;
};

struct Args {
  std::string out;
  std::string metrics;
  std::string data_dir = kFashionMnistDir;
  int64_t patch = 7;
  int64_t hidden = 96;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t intermediate = 192;
  std::string dtype = "float32";
  uint64_t init_seed = 0;
  int64_t train_limit = 0;  // 0: all 60,000 training images
  int threads = 0;
  double min_accuracy = 0.0;
  int64_t probes_per_class = 0;  // > 0: write verification probes into OUT/probes
  bool probes_only = false;      // write the probes into an existing OUT and stop
  ClassifierTrainOptions train;
};

// The first `per_class` samples of every class, in split order.
LabelledImages FirstPerClass(const LabelledImages& data, int64_t per_class) {
  std::vector<torch::Tensor> idx;
  for (int64_t c = 0; c < 10; ++c) {
    idx.push_back(data.labels.eq(c).nonzero().squeeze(1).slice(0, 0, per_class));
  }
  const torch::Tensor keep = std::get<0>(torch::cat(idx).sort());
  return {data.images.index_select(0, keep), data.labels.index_select(0, keep)};
}

// The verification probes the server reads for the image-classifier family
// (core/app/family_registry.h): `per_class` test images of every class (accuracies, and the
// non-members of the membership-inference AUC) and `per_class` training images of every class
// (the members, and the replay store of class_forgetting), as IDX files in OUT/probes/.
absl::Status WriteProbes(const std::string& out, const LabelledImages& train,
                         const LabelledImages& test, int64_t per_class) {
  const std::filesystem::path dir = std::filesystem::path(out) / "probes";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrFormat("mkdir %s: %s", dir.string(), ec.message()));
  UNL_RETURN_IF_ERROR(WriteLabelledIdx(FirstPerClass(test, per_class),
                                       (dir / "test-images.idx").string(),
                                       (dir / "test-labels.idx").string()));
  UNL_RETURN_IF_ERROR(WriteLabelledIdx(FirstPerClass(train, per_class),
                                       (dir / "train-images.idx").string(),
                                       (dir / "train-labels.idx").string()));
  std::printf("probes: %lld test and %lld training images per class in %s\n",
              static_cast<long long>(per_class), static_cast<long long>(per_class),
              dir.string().c_str());
  return absl::OkStatus();
}

// Returns the test accuracy.
absl::StatusOr<double> Run(const Args& args) {
  const auto wall_start = std::chrono::steady_clock::now();
  UNL_ASSIGN_OR_RETURN(LabelledImages train, LoadFashionMnist("train", args.data_dir));
  UNL_ASSIGN_OR_RETURN(LabelledImages test, LoadFashionMnist("test", args.data_dir));
  if (args.probes_only) {
    if (args.probes_per_class < 1) {
      return absl::InvalidArgumentError("--probes-only needs --probes-per-class N >= 1");
    }
    UNL_RETURN_IF_ERROR(WriteProbes(args.out, train, test, args.probes_per_class));
    return 1.0;
  }
  if (args.train_limit > 0 && args.train_limit < train.images.size(0)) {
    train.images = train.images.narrow(0, 0, args.train_limit);
    train.labels = train.labels.narrow(0, 0, args.train_limit);
  }

  ViTConfig config;
  config.image_size = 28;
  config.num_channels = 1;
  config.patch_size = args.patch;
  config.hidden_size = args.hidden;
  config.num_hidden_layers = args.layers;
  config.num_attention_heads = args.heads;
  config.intermediate_size = args.intermediate;
  config.torch_dtype = args.dtype;
  config.id2label = FashionMnistClassNames();
  ViTImageProcessorConfig preprocessor = ViTImageProcessorConfig::Default(config);
  // Fashion-MNIST training-set pixel statistics (of x / 255).
  preprocessor.image_mean = {0.2860};
  preprocessor.image_std = {0.3530};
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<VitClassifier> model,
                       VitClassifier::Create(config, preprocessor, torch::kCPU, args.init_seed));

  const int64_t n = train.images.size(0);
  const int64_t steps_per_epoch = n / std::min(args.train.batch_size, n);
  const int64_t total_steps =
      args.train.max_steps > 0 ? args.train.max_steps : args.train.epochs * steps_per_epoch;
  std::printf(
      "training ViT (patch %lld, hidden %lld, layers %lld, heads %lld, intermediate %lld; %lld "
      "parameters) on %lld Fashion-MNIST images: %lld steps (%lld per epoch), batch %lld, lr %g, "
      "%d threads\n",
      static_cast<long long>(args.patch), static_cast<long long>(args.hidden),
      static_cast<long long>(args.layers), static_cast<long long>(args.heads),
      static_cast<long long>(args.intermediate), static_cast<long long>(model->num_parameters()),
      static_cast<long long>(n), static_cast<long long>(total_steps),
      static_cast<long long>(steps_per_epoch), static_cast<long long>(args.train.batch_size),
      args.train.learning_rate, at::get_num_threads());
  std::fflush(stdout);

  CancellationToken cancel;
  g_cancel = &cancel;
  std::signal(SIGINT, HandleSigint);
  std::signal(SIGTERM, HandleSigint);
  PrintingSink sink(steps_per_epoch);
  absl::StatusOr<ClassifierTrainResult> result =
      TrainClassifier(*model, train, args.train, &sink, &cancel);
  g_cancel = nullptr;
  UNL_RETURN_IF_ERROR(result.status());

  const auto eval_start = std::chrono::steady_clock::now();
  UNL_ASSIGN_OR_RETURN(ClassifierAccuracy acc, EvaluateAccuracy(*model, test));
  const double eval_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  std::error_code ec;
  std::filesystem::create_directories(args.out, ec);
  if (ec) return absl::InternalError(absl::StrFormat("mkdir %s: %s", args.out, ec.message()));
  UNL_RETURN_IF_ERROR(model->Save(args.out));
  if (args.probes_per_class > 0) {
    UNL_RETURN_IF_ERROR(WriteProbes(args.out, train, test, args.probes_per_class));
  }
  const double wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

  std::printf("trained %lld steps in %s (loss %.4f -> %.4f)\n",
              static_cast<long long>(result->loop.steps), FormatSeconds(result->seconds).c_str(),
              result->loop.first_loss, result->loop.last_loss);
  nlohmann::json per_class = nlohmann::json::object();
  for (int64_t c = 0; c < model->num_classes(); ++c) {
    per_class[model->class_name(c)] = acc.class_accuracy(c);
    std::printf("  %-12s %.4f\n", model->class_name(c).c_str(), acc.class_accuracy(c));
  }
  std::printf("test accuracy: %.4f (%lld/%lld)\nsaved %s\n", acc.accuracy(),
              static_cast<long long>(acc.correct), static_cast<long long>(acc.total),
              args.out.c_str());

  const std::string metrics_path = args.metrics.empty()
                                       ? (std::filesystem::path(args.out) / "metrics.json").string()
                                       : args.metrics;
  nlohmann::json metrics = {
      {"test_accuracy", acc.accuracy()},
      {"test_correct", acc.correct},
      {"test_examples", acc.total},
      {"per_class_accuracy", per_class},
      {"train_examples", n},
      {"epochs", args.train.epochs},
      {"steps", result->loop.steps},
      {"first_loss", result->loop.first_loss},
      {"last_loss", result->loop.last_loss},
      {"train_seconds", result->seconds},
      {"eval_seconds", eval_seconds},
      {"wall_seconds", wall_seconds},
      {"parameters", model->num_parameters()},
      {"threads", at::get_num_threads()},
      {"config", model->config().ToJson()},
  };
  std::ofstream f(metrics_path);
  f << metrics.dump(2) << "\n";
  f.close();
  if (!f) return absl::InternalError(absl::StrFormat("cannot write %s", metrics_path));
  std::fflush(stdout);
  return acc.accuracy();
}

int Main(int argc, char** argv) {
  CLI::App app{"Train a ViT image classifier on Fashion-MNIST (Hugging Face layout)"};
  Args args;
  ClassifierTrainOptions& t = args.train;
  // Defaults = the recipe of tools/build_vit.sh.
  t.epochs = 7;
  t.batch_size = 128;
  t.learning_rate = 2e-3;
  t.label_smoothing = 0.1;
  app.add_option("--out", args.out, "output model directory")->required();
  app.add_option("--metrics", args.metrics, "metrics JSON file (default OUT/metrics.json)");
  app.add_option("--data-dir", args.data_dir, "Fashion-MNIST IDX directory")->capture_default_str();
  app.add_option("--patch", args.patch, "patch size (divides 28)")->capture_default_str();
  app.add_option("--hidden", args.hidden, "hidden size")->capture_default_str();
  app.add_option("--layers", args.layers, "encoder layers")->capture_default_str();
  app.add_option("--heads", args.heads, "attention heads")->capture_default_str();
  app.add_option("--intermediate", args.intermediate, "FFN size")->capture_default_str();
  app.add_option("--dtype", args.dtype, "stored dtype: float32|bfloat16|float16")
      ->capture_default_str();
  app.add_option("--init-seed", args.init_seed, "initialisation seed")->capture_default_str();
  app.add_option("--epochs", t.epochs, "training epochs")->capture_default_str();
  app.add_option("--max-steps", t.max_steps, "exact step count (0: epochs)")->capture_default_str();
  app.add_option("--batch-size", t.batch_size, "batch size")->capture_default_str();
  app.add_option("--lr", t.learning_rate, "peak learning rate (AdamW)")->capture_default_str();
  app.add_option("--weight-decay", t.weight_decay, "AdamW weight decay")->capture_default_str();
  app.add_option("--warmup-epochs", t.warmup_epochs, "linear warm-up, in epochs")
      ->capture_default_str();
  app.add_option("--label-smoothing", t.label_smoothing, "label smoothing in [0, 1)")
      ->capture_default_str();
  app.add_option("--shift", t.random_shift, "random translation in pixels (0: off)")
      ->capture_default_str();
  app.add_flag("--flip", t.horizontal_flip, "random horizontal flips");
  app.add_option("--seed", t.seed, "shuffle/augmentation seed")->capture_default_str();
  app.add_option("--progress-every", t.progress_every, "steps between progress lines")
      ->capture_default_str();
  app.add_option("--train-limit", args.train_limit, "use only the first N training images")
      ->capture_default_str();
  args.threads = 0;
  app.add_option("--threads", args.threads,
                 "LibTorch intra-op threads (0 = automatic: one per core, 1 with the pthreads "
                 "OpenBLAS)")
      ->capture_default_str();
  app.add_option("--probes-per-class", args.probes_per_class,
                 "write N test and N training images per class to OUT/probes (0: none)")
      ->capture_default_str();
  app.add_flag("--probes-only", args.probes_only,
               "only write the probes into an existing model directory OUT");
  app.add_option("--min-accuracy", args.min_accuracy, "exit 2 below this test accuracy")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (args.threads < 0) {
    std::cerr << "unlearn-build-vit: --threads must be >= 0 (0 = automatic)\n";
    return 1;
  }
  if (args.threads != 1 && std::getenv("OMP_WAIT_POLICY") == nullptr) {
    // libgomp reads this before main(), so it can only be suggested here.
    std::cerr << "unlearn-build-vit: note: on a shared machine set OMP_WAIT_POLICY=PASSIVE; "
                 "active spin-waiting made --threads 2 up to 15x slower than --threads 1\n";
  }
  std::cerr << "unlearn-build-vit: " << ConfigureThreads(args.threads).Describe() << "\n";
  absl::StatusOr<double> accuracy = Run(args);
  if (!accuracy.ok()) {
    std::cerr << "unlearn-build-vit: " << accuracy.status() << "\n";
    return 1;
  }
  if (*accuracy < args.min_accuracy) {
    std::cerr << absl::StrFormat("unlearn-build-vit: test accuracy %.4f is below %.4f\n", *accuracy,
                                 args.min_accuracy);
    return 2;
  }
  return 0;
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) { return unlearning::core::Main(argc, argv); }
