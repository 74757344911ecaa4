#include "core/methods/baselines/score_override.h"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/methods/text_method.h"
#include "core/models/diffusion.h"
#include "core/train/training_loop.h"

namespace unlearning::core {
namespace {

// The teacher's samples of every class, in model space ([-1, 1]).
struct Pool {
  torch::Tensor images;  // [K * per_class, C, H, W] float32 on the device
  // Row offset of class k's samples: rows [offset[k], offset[k] + per_class).
  std::vector<int64_t> offset;
  int64_t per_class = 0;
};

absl::StatusOr<Pool> SamplePool(const DiffusionModel& teacher, const ScoreOverrideParams& p,
                                torch::Device device, const CancellationToken* cancel) {
  const int64_t k = teacher.num_classes();
  std::vector<int64_t> labels;
  labels.reserve(static_cast<size_t>(k * p.pool_per_class));
  Pool pool;
  pool.per_class = p.pool_per_class;
  for (int64_t c = 0; c < k; ++c) {
    pool.offset.push_back(static_cast<int64_t>(labels.size()));
    for (int64_t i = 0; i < p.pool_per_class; ++i) labels.push_back(c);
  }
  SampleOptions options;
  options.steps = std::min(p.pool_steps, teacher.max_steps());
  options.sampler = "ddim";
  options.guidance_scale = p.pool_guidance;
  options.seed = p.seed;
  // One class per call keeps the peak memory at one class's batch.
  std::vector<torch::Tensor> parts;
  for (int64_t c = 0; c < k; ++c) {
    options.seed = p.seed + static_cast<uint64_t>(c);
    const torch::Tensor class_labels = torch::full({p.pool_per_class}, c, torch::kLong);
    UNL_ASSIGN_OR_RETURN(torch::Tensor images, teacher.Sample(class_labels, options, cancel));
    parts.push_back(std::move(images));
  }
  UNL_RETURN_IF_ERROR(TorchCall("score_override pool", [&] {
    pool.images = (at::cat(parts, 0) * 2.0 - 1.0).to(device).contiguous();
  }));
  return pool;
}

// `n` draws from `values` (uniform, with replacement).
torch::Tensor Draw(const std::vector<int64_t>& values, int64_t n, at::Generator& gen) {
  const torch::Tensor table = torch::tensor(values, torch::kLong);
  return table.index_select(
      0, at::randint(static_cast<int64_t>(values.size()), {n}, gen, torch::kLong));
}

}  // namespace

absl::StatusOr<std::unique_ptr<UnlearningMethod>> ScoreOverrideMethod::Create(
    const nlohmann::json& params) {
  ParamReader r(kName, params);
  UNL_RETURN_IF_ERROR(r.CheckObject());
  ScoreOverrideParams p;
  UNL_ASSIGN_OR_RETURN(p.learning_rate, r.Double("learning_rate", p.learning_rate, 0.0, 1.0,
                                                 /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.steps, r.Int("steps", p.steps, 1, 100000));
  UNL_ASSIGN_OR_RETURN(p.warmup_steps, r.Int("warmup_steps", p.warmup_steps, 0, 100000));
  UNL_ASSIGN_OR_RETURN(p.batch_size, r.Int("batch_size", p.batch_size, 1, 1024));
  UNL_ASSIGN_OR_RETURN(p.pool_per_class, r.Int("pool_per_class", p.pool_per_class, 1, 1024));
  UNL_ASSIGN_OR_RETURN(p.pool_steps, r.Int("pool_steps", p.pool_steps, 1, 1000));
  UNL_ASSIGN_OR_RETURN(p.pool_guidance, r.Double("pool_guidance", p.pool_guidance, 0.0, 20.0));
  UNL_ASSIGN_OR_RETURN(p.lambda_retain, r.Double("lambda_retain", p.lambda_retain, 0.0, 1000.0));
  UNL_ASSIGN_OR_RETURN(p.lambda_null, r.Double("lambda_null", p.lambda_null, 0.0, 1000.0));
  UNL_ASSIGN_OR_RETURN(p.max_grad_norm, r.Double("max_grad_norm", p.max_grad_norm, 0.0, 1e6));
  UNL_ASSIGN_OR_RETURN(p.seed, r.Uint64("seed", p.seed));
  UNL_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  return std::unique_ptr<UnlearningMethod>(new ScoreOverrideMethod(p));
}

nlohmann::json ScoreOverrideMethod::EffectiveParams() const {
  return {{"learning_rate", params_.learning_rate},
          {"steps", params_.steps},
          {"warmup_steps", params_.warmup_steps},
          {"batch_size", params_.batch_size},
          {"pool_per_class", params_.pool_per_class},
          {"pool_steps", params_.pool_steps},
          {"pool_guidance", params_.pool_guidance},
          {"lambda_retain", params_.lambda_retain},
          {"lambda_null", params_.lambda_null},
          {"max_grad_norm", params_.max_grad_norm},
          {"seed", params_.seed}};
}

absl::Status ScoreOverrideMethod::CheckData(const ErasureData& data) const {
  const GenerationErasure& g = data.generation;
  if (g.forget_classes.empty()) {
    return absl::InvalidArgumentError("score_override needs generation.forget_classes");
  }
  if (g.override_class >= 0 && std::find(g.forget_classes.begin(), g.forget_classes.end(),
                                         g.override_class) != g.forget_classes.end()) {
    return absl::InvalidArgumentError(absl::StrCat("score_override: the override class ",
                                                   g.override_class, " is also a forget class"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Candidate> ScoreOverrideMethod::Run(const MethodContext& ctx) {
  if (ctx.parent == nullptr || ctx.data == nullptr || ctx.progress == nullptr ||
      ctx.cancel == nullptr) {
    return absl::InvalidArgumentError(
        "score_override: the method context needs a parent, data, progress and cancel");
  }
  const auto* teacher = dynamic_cast<const DiffusionModel*>(ctx.parent);
  if (teacher == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("score_override needs a class-conditional diffusion model, got ",
                     ctx.parent->architecture()));
  }
  UNL_RETURN_IF_ERROR(CheckData(*ctx.data));
  const int64_t num_classes = teacher->num_classes();
  const std::set<int64_t> forget_set(ctx.data->generation.forget_classes.begin(),
                                     ctx.data->generation.forget_classes.end());
  const std::vector<int64_t> forget(forget_set.begin(), forget_set.end());
  const int64_t override_class = ctx.data->generation.override_class;
  std::vector<int64_t> retain;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (forget_set.count(c) == 0) retain.push_back(c);
  }
  for (int64_t c : forget) {
    if (c < 0 || c >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("score_override: forget class ", c, " outside [0, ", num_classes, ")"));
    }
  }
  if (override_class >= num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "score_override: override class ", override_class, " outside [0, ", num_classes, ")"));
  }
  if (retain.empty()) {
    return absl::InvalidArgumentError("score_override: every class is a forget class");
  }

  UNL_ASSIGN_OR_RETURN(Pool pool, SamplePool(*teacher, params_, ctx.device, ctx.cancel));
  std::unique_ptr<DiffusionModel> student;
  std::vector<torch::Tensor> trainable;
  UNL_RETURN_IF_ERROR(TorchCall("score_override student", [&] {
    student = teacher->CloneDiffusion(ctx.device);
    student->module()->train();
    for (torch::Tensor& p : student->module()->parameters()) {
      p.set_requires_grad(true);
      trainable.push_back(p);
    }
  }));
  const torch::Tensor abar = student->alphas_cumprod();
  const int64_t timesteps = student->scheduler_config().num_train_timesteps;
  const int64_t null_class = student->unet_config().null_class_id;
  const int64_t b = params_.batch_size;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(params_.seed + 1);
  const auto cpu_f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const torch::Tensor pool_offset = torch::tensor(pool.offset, torch::kLong);

  // Rows of `pool` for classes `classes` ([n] int64): a random sample of each class's pool.
  auto pool_rows = [&](const torch::Tensor& classes) {
    const torch::Tensor within = at::randint(pool.per_class, {classes.size(0)}, gen, torch::kLong);
    return pool_offset.index_select(0, classes) + within;
  };

  TrainingLoopOptions loop;
  loop.total_steps = params_.steps;
  loop.optimizer.learning_rate = params_.learning_rate;
  loop.optimizer.weight_decay = 0.0;
  loop.optimizer.max_grad_norm = params_.max_grad_norm;
  loop.optimizer.warmup_steps = params_.warmup_steps;
  loop.progress_every = std::max<int64_t>(1, params_.steps / 50);
  auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    return TorchCall("score_override step", [&]() -> absl::StatusOr<torch::Tensor> {
      // Override term: student label f ∈ F, teacher label y (o, or a random retained class).
      const torch::Tensor f = Draw(forget, b, gen);
      const torch::Tensor y = override_class >= 0 ? torch::full({b}, override_class, torch::kLong)
                                                  : Draw(retain, b, gen);
      const torch::Tensor from_forget = at::rand({b}, gen, cpu_f32) < 0.5;
      const torch::Tensor x0_class = at::where(from_forget, f, y);
      // Retain and unconditional terms share their x0 (retained classes' samples).
      const torch::Tensor r = Draw(retain, b, gen);
      const torch::Tensor rows = at::cat({pool_rows(x0_class), pool_rows(r)});  // [2B]
      const torch::Tensor x0_two = pool.images.index_select(0, rows.to(ctx.device));
      const torch::Tensor x0 = at::cat({x0_two, x0_two.narrow(0, b, b)});  // [3B]
      const torch::Tensor null = torch::full({b}, null_class, torch::kLong);
      const torch::Tensor student_labels = at::cat({f, r, null}).to(ctx.device);
      const torch::Tensor teacher_labels = at::cat({y, r, null}).to(ctx.device);
      const torch::Tensor t = at::randint(timesteps, {3 * b}, gen, torch::kLong).to(ctx.device);
      const torch::Tensor eps = at::randn(x0.sizes(), gen, cpu_f32).to(ctx.device);
      const torch::Tensor a = abar.index_select(0, t).view({3 * b, 1, 1, 1});
      const torch::Tensor x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
      torch::Tensor target;
      {
        torch::NoGradGuard no_grad;
        target = teacher->PredictNoise(x_t, t, teacher_labels).detach();
      }
      const torch::Tensor pred = student->PredictNoise(x_t, t, student_labels);
      auto term = [&](int64_t part) {
        return at::mse_loss(pred.narrow(0, part * b, b), target.narrow(0, part * b, b));
      };
      torch::Tensor loss = term(0);
      if (params_.lambda_retain > 0.0) loss = loss + params_.lambda_retain * term(1);
      if (params_.lambda_null > 0.0) loss = loss + params_.lambda_null * term(2);
      return loss;
    });
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop(trainable, loop, step_fn, ctx.progress, ctx.cancel);
  UNL_RETURN_IF_ERROR(TorchCall("score_override finish", [&] { student->module()->eval(); }));
  if (!result.ok()) return result.status();
  Candidate c = Candidate::SelfContained(ArtifactKind::kFullWeights, std::move(student));
  c.facts = {{"pool_samples", pool.images.size(0)},
             {"override_target", override_class >= 0 ? nlohmann::json(override_class)
                                                     : nlohmann::json("random_retained_class")},
             {"first_loss", result->first_loss},
             {"last_loss", result->last_loss}};
  return c;
}

}  // namespace unlearning::core
