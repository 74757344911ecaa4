// bench_gs_lora: GS-LoRA's cost per request against full fine-tuning, measured side by side in one
// process (bench/gs_lora_bench.sh runs it on the demo ViT).
//
// One request = forget classes --forget (default 0 1) of the model, with the same budget for every
// method: --steps steps (150, GS-LoRA's 10 epochs x 15), --batch-size replay images per step (64;
// plus 64 forget images for the methods that use them), --replay-per-class (100), the same seed,
// so the same replay samples (core/methods/class_replay.h). Methods: gs_lora and gs_lora_plus
// (adapters), retain_finetune (full fine-tuning on the replay set only) and class_forgetting
// (full fine-tuning, gradient ascent + replay: the same 64 + 64 images per step as GS-LoRA). The
// methods run round-robin, --repeats rounds, so that a noisy machine slows them alike.
//
// Per method: the artifact's bytes (the files a version holds: adapter files, or the full
// weights), and the training time per request (the method's own train_seconds: data selection
// and training, no verification), median/min/max over the rounds, with ratios against
// each full fine-tuning (retain_finetune: 64 images per step; class_forgetting: 64 + 64, as
// GS-LoRA): the ratio of medians and the median of the per-round ratios. Prints a table and one
// JSON object (last line).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/app/family_registry.h"
#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/data/model_probes.h"
#include "core/methods/method.h"
#include "core/methods/method_registry.h"
#include "core/models/vit.h"

namespace unlearning::core {
namespace {

struct Args {
  std::string model;
  std::vector<int64_t> forget = {0, 1};
  int64_t steps = 150;
  int64_t batch_size = 64;
  int64_t replay_per_class = 100;
  int repeats = 3;
  int threads = 1;
  std::string methods = "gs_lora,gs_lora_plus,retain_finetune,class_forgetting";
  std::string scratch = "/tmp/bench_gs_lora";
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The method's parameters for the shared budget.
nlohmann::json Budget(const std::string& method, const Args& a) {
  nlohmann::json p = {{"batch_size", a.batch_size}, {"replay_per_class", a.replay_per_class}};
  if (method == "gs_lora" || method == "gs_lora_plus") {
    // 10 epochs as the defaults, warm-up 2 of them; steps_per_epoch so that epochs x it = steps.
    p["epochs"] = 10;
    p["steps_per_epoch"] = std::max<int64_t>(1, a.steps / 10);
  } else {
    p["steps"] = a.steps;
  }
  return p;
}

int Main(int argc, char** argv) {
  Args a;
  CLI::App app{"GS-LoRA vs full fine-tuning: artifact bytes and training time per request"};
  app.add_option("--model", a.model, "ViT model directory (tools/build_vit.sh OUT/model)")
      ->required();
  app.add_option("--forget", a.forget, "classes to forget");
  app.add_option("--steps", a.steps, "training steps per request (every method)");
  app.add_option("--batch-size", a.batch_size, "replay (and forget) images per step");
  app.add_option("--replay-per-class", a.replay_per_class, "replay budget");
  app.add_option("--repeats", a.repeats, "rounds (each runs every method once)");
  app.add_option("--threads", a.threads, "intra-op threads");
  app.add_option("--methods", a.methods,
                 "comma-separated; ratios against retain_finetune and class_forgetting");
  app.add_option("--scratch", a.scratch, "directory for the written artifacts");
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(a.threads);

  const FamilyRegistry& families = FamilyRegistry::Builtin();
  absl::StatusOr<std::unique_ptr<Model>> loaded = families.Load(a.model, torch::kCPU);
  if (!loaded.ok()) {
    std::fprintf(stderr, "bench_gs_lora: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<Model> model = *std::move(loaded);
  absl::StatusOr<const FamilySpec*> spec = families.Find(ModelFamily::kImageClassifier);
  if (!spec.ok()) return 1;
  absl::StatusOr<ModelProbes> probes = (*spec)->load_probes(a.model);
  if (!probes.ok()) {
    std::fprintf(stderr, "bench_gs_lora: %s\n", probes.status().ToString().c_str());
    return 1;
  }

  std::vector<std::string> methods;
  for (size_t start = 0; start <= a.methods.size();) {
    const size_t comma = std::min(a.methods.find(',', start), a.methods.size());
    if (comma > start) methods.push_back(a.methods.substr(start, comma - start));
    start = comma + 1;
  }
  std::map<std::string, std::vector<double>> seconds;
  std::map<std::string, int64_t> bytes;
  int64_t full_weights_bytes = 0;
  for (int round = 0; round < a.repeats; ++round) {
    for (const std::string& method : methods) {
      absl::StatusOr<std::unique_ptr<UnlearningMethod>> m =
          MethodRegistry::Builtin().Create(method, Budget(method, a));
      if (!m.ok()) {
        std::fprintf(stderr, "bench_gs_lora: %s\n", m.status().ToString().c_str());
        return 1;
      }
      ErasureData data;
      data.family = ModelFamily::kImageClassifier;
      data.classes.forget_classes = a.forget;
      NullProgressSink progress;
      CancellationToken cancel;
      MethodContext ctx;
      ctx.parent = model.get();
      ctx.data = &data;
      ctx.probes = &*probes;
      ctx.progress = &progress;
      ctx.cancel = &cancel;
      absl::StatusOr<Candidate> c = (*m)->Run(ctx);
      if (!c.ok()) {
        std::fprintf(stderr, "bench_gs_lora: %s: %s\n", method.c_str(),
                     c.status().ToString().c_str());
        return 1;
      }
      seconds[method].push_back(c->facts.value("train_seconds", 0.0));
      const std::string dir = a.scratch + "/" + method;
      std::filesystem::remove_all(dir);
      std::filesystem::create_directories(dir);
      if (absl::Status s = c->write(dir); !s.ok()) {
        std::fprintf(stderr, "bench_gs_lora: %s\n", s.ToString().c_str());
        return 1;
      }
      int64_t total = 0;
      for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.is_regular_file()) total += static_cast<int64_t>(e.file_size());
      }
      bytes[method] = total;
      full_weights_bytes =
          std::max<int64_t>(full_weights_bytes, c->facts.value("full_weights_bytes", int64_t{0}));
      std::fprintf(stderr, "round %d %s: %.2f s, %lld bytes\n", round + 1, method.c_str(),
                   seconds[method].back(), static_cast<long long>(total));
    }
  }
  std::filesystem::remove_all(a.scratch);

  // Ratios against both full fine-tunings: retain_finetune (64 replay images per step) and
  // class_forgetting (64 replay + 64 forget images per step, as GS-LoRA).
  const std::vector<std::string> refs = {"retain_finetune", "class_forgetting"};
  nlohmann::json out = {{"steps", a.steps},
                        {"batch_size", a.batch_size},
                        {"replay_per_class", a.replay_per_class},
                        {"repeats", a.repeats},
                        {"threads", a.threads},
                        {"full_weights_tensor_bytes", full_weights_bytes},
                        {"methods", nlohmann::json::object()}};
  std::printf("%-18s %14s  %-28s", "method", "artifact_bytes", "train_s median [min, max]");
  for (const std::string& ref : refs) {
    if (seconds.count(ref) == 0) continue;
    std::printf("  | vs %s: bytes, median/median, median(per-round)", ref.c_str());
  }
  std::printf("\n");
  for (const std::string& method : methods) {
    const std::vector<double>& s = seconds[method];
    const double med = Median(s);
    std::printf("%-18s %14lld  %6.2f [%6.2f, %6.2f]      ", method.c_str(),
                static_cast<long long>(bytes[method]), med, *std::min_element(s.begin(), s.end()),
                *std::max_element(s.begin(), s.end()));
    nlohmann::json row = {
        {"artifact_bytes", bytes[method]}, {"train_seconds", s}, {"train_seconds_median", med}};
    for (const std::string& ref : refs) {
      if (seconds.count(ref) == 0) continue;
      const std::vector<double>& r = seconds[ref];
      const double ratio = med / Median(r);
      std::vector<double> per_round;
      for (size_t i = 0; i < s.size() && i < r.size(); ++i) per_round.push_back(s[i] / r[i]);
      const double paired = Median(per_round);
      const double bytes_ratio =
          static_cast<double>(bytes[method]) / static_cast<double>(bytes[ref]);
      std::printf("  | %8.4f  %8.3f  %8.3f", bytes_ratio, ratio, paired);
      row["bytes_ratio_to_" + ref] = bytes_ratio;
      row["median_ratio_to_" + ref] = ratio;
      row["median_per_round_ratio_to_" + ref] = paired;
    }
    std::printf("\n");
    out["methods"][method] = row;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) { return unlearning::core::Main(argc, argv); }
