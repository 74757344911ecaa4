// bench_one_step: what SFD buys and costs, side by side in one process on the same model.
//
//   1. Sampling: the teacher's sampler (DDIM, --steps, classifier-free guidance --guidance: two
//      UNet rows per image per step) vs the one-step generator (one UNet evaluation per image),
//      the same batch of labels, interleaved repeats; median seconds per batch, images per second
//      and the speed-up per image.
//   2. Distillation: seconds per iteration of plain SiD (forget coefficients 0) and of SFD (plus
//      the forget rows and the score-forgetting terms), measured from the methods' own progress
//      over --iterations iterations; the ratio is the cost of forgetting on top of distilling.
//
// The generator's weights do not change its cost, so without --generator the teacher's weights
// stand in for it. Prints a table and one JSON object (last line).
//
//   bench_one_step --model .cache/diffusion/model [--generator DIR] [--batch 20] [--steps 50]
//                  [--guidance 3] [--repeats 5] [--iterations 6] [--threads 2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/common/status_macros.h"
#include "core/data/erasure_data.h"
#include "core/methods/method_registry.h"
#include "core/models/diffusion.h"
#include "core/models/one_step_generator.h"

namespace unlearning::core {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Records the wall time of every progress update (one per iteration for short runs).
class StepClock : public ProgressSink {
 public:
  void OnProgress(const ProgressUpdate& update) override {
    if (update.phase == "training") times.push_back(Clock::now());
  }
  // Median seconds between consecutive updates (the first interval includes no set-up: set-up
  // happens before the first update).
  double MedianInterval() const {
    std::vector<double> d;
    for (size_t i = 1; i < times.size(); ++i) {
      d.push_back(std::chrono::duration<double>(times[i] - times[i - 1]).count());
    }
    return Median(d);
  }
  std::vector<Clock::time_point> times;
};

absl::StatusOr<double> SecondsPerIteration(const std::string& method, int64_t iterations,
                                           const std::shared_ptr<const DiffusionModel>& teacher) {
  nlohmann::json params = {{"iterations", iterations}};
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<UnlearningMethod> m,
                       MethodRegistry::Builtin().Create(method, params));
  ErasureData data;
  data.family = ModelFamily::kDiffusion;
  data.generation.forget_classes = {7};
  data.generation.override_class = 5;
  StepClock clock;
  CancellationToken cancel;
  MethodContext ctx{teacher.get(), torch::kCPU, &data, nullptr, &clock, &cancel, teacher};
  UNL_ASSIGN_OR_RETURN(Candidate c, m->Run(ctx));
  (void)c;
  return clock.MedianInterval();
}

int Main(int argc, char** argv) {
  CLI::App app{"bench_one_step: one-step generator vs teacher sampler; SiD vs SFD iteration cost"};
  std::string model_dir, generator_dir;
  int64_t batch = 20, steps = 50, iterations = 6;
  int repeats = 5, threads = 2;
  double guidance = 3.0;
  app.add_option("--model", model_dir, "Diffusion teacher directory")->required();
  app.add_option("--generator", generator_dir, "A one-step generator directory (optional)");
  app.add_option("--batch", batch, "Images per batch");
  app.add_option("--steps", steps, "Teacher sampler steps (the server's default is 50)");
  app.add_option("--guidance", guidance, "Teacher classifier-free guidance (server default 3)");
  app.add_option("--repeats", repeats, "Timed repeats of each sampler");
  app.add_option("--iterations", iterations, "Distillation iterations timed per method (0: skip)");
  app.add_option("--threads", threads, "LibTorch intra-op threads");
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(threads);

  absl::StatusOr<std::unique_ptr<DiffusionModel>> loaded =
      DiffusionModel::Load(model_dir, torch::kCPU);
  if (!loaded.ok()) {
    std::fprintf(stderr, "bench_one_step: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  std::shared_ptr<const DiffusionModel> teacher(*std::move(loaded));
  std::unique_ptr<OneStepGenerator> generator;
  if (!generator_dir.empty()) {
    absl::StatusOr<std::unique_ptr<OneStepGenerator>> g =
        OneStepGenerator::Load(generator_dir, torch::kCPU, teacher);
    if (!g.ok()) {
      std::fprintf(stderr, "bench_one_step: %s\n", std::string(g.status().message()).c_str());
      return 1;
    }
    generator = *std::move(g);
  } else {
    generator = std::make_unique<OneStepGenerator>(teacher->CloneDiffusion(torch::kCPU), nullptr,
                                                   OneStepGeneratorConfig{}, teacher);
  }

  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % teacher->num_classes());
  const torch::Tensor label_tensor = torch::tensor(labels, torch::kLong);
  SampleOptions teacher_options;
  teacher_options.steps = steps;
  teacher_options.guidance_scale = guidance;
  SampleOptions one_step;
  one_step.steps = 1;
  std::vector<double> t_teacher, t_one;
  for (int r = 0; r < repeats + 1; ++r) {  // repeat 0 warms up
    teacher_options.seed = one_step.seed = static_cast<uint64_t>(r);
    auto start = Clock::now();
    if (!teacher->Sample(label_tensor, teacher_options, nullptr).ok()) return 1;
    const double a = std::chrono::duration<double>(Clock::now() - start).count();
    start = Clock::now();
    if (!generator->Sample(label_tensor, one_step, nullptr).ok()) return 1;
    const double b = std::chrono::duration<double>(Clock::now() - start).count();
    if (r > 0) {
      t_teacher.push_back(a);
      t_one.push_back(b);
    }
  }
  const double teacher_s = Median(t_teacher), one_s = Median(t_one);
  const int64_t evals = steps * (guidance != 1.0 ? 2 : 1);
  std::printf("sampling, batch %lld, %d threads, median of %d:\n", static_cast<long long>(batch),
              threads, repeats);
  std::printf(
      "  teacher  DDIM %3lld steps, guidance %.1f (%lld UNet rows/image): %8.4f s  %9.1f img/s\n",
      static_cast<long long>(steps), guidance, static_cast<long long>(evals), teacher_s,
      batch / teacher_s);
  std::printf("  one-step generator (1 UNet row/image):                 %8.4f s  %9.1f img/s\n",
              one_s, batch / one_s);
  std::printf("  speed-up per image: %.1fx\n", teacher_s / one_s);

  nlohmann::json out = {{"batch", batch},
                        {"threads", threads},
                        {"teacher_steps", steps},
                        {"teacher_guidance", guidance},
                        {"teacher_images_per_second", batch / teacher_s},
                        {"one_step_images_per_second", batch / one_s},
                        {"speedup_per_image", teacher_s / one_s}};
  if (iterations > 1) {
    absl::StatusOr<double> sid = SecondsPerIteration("sid", iterations, teacher);
    absl::StatusOr<double> sfd = SecondsPerIteration("sfd", iterations, teacher);
    if (!sid.ok() || !sfd.ok()) {
      std::fprintf(stderr, "bench_one_step: distillation failed: %s %s\n",
                   std::string(sid.status().message()).c_str(),
                   std::string(sfd.status().message()).c_str());
      return 1;
    }
    std::printf(
        "distillation, default batch (16 retained rows; SFD adds 16 forget rows), median over %lld "
        "iterations:\n",
        static_cast<long long>(iterations));
    std::printf("  sid %.3f s/iteration, sfd %.3f s/iteration: forgetting costs %.2fx distilling\n",
                *sid, *sfd, *sfd / *sid);
    out["sid_seconds_per_iteration"] = *sid;
    out["sfd_seconds_per_iteration"] = *sfd;
    out["sfd_over_sid"] = *sfd / *sid;
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace unlearning::core

int main(int argc, char** argv) { return unlearning::core::Main(argc, argv); }
