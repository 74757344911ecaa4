#include "core/methods/sfd/sfd.h"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/methods/text_method.h"
#include "core/models/diffusion.h"
#include "core/models/one_step_generator.h"
#include "core/train/training_loop.h"

namespace unlearning::core {
namespace {

// `n` draws from `values` (uniform, with replacement).
torch::Tensor Draw(const std::vector<int64_t>& values, int64_t n, at::Generator& gen) {
  const torch::Tensor table = torch::tensor(values, torch::kLong);
  return table.index_select(
      0, at::randint(static_cast<int64_t>(values.size()), {n}, gen, torch::kLong));
}

void SetRequiresGrad(DiffusionModel& model, bool on) {
  for (torch::Tensor& p : model.module()->parameters()) p.set_requires_grad(on);
}

// The teacher a run distils from (CheckParent has accepted the parent): the parent itself, or the
// teacher a generator parent keeps. Shared ownership when the caller gave it (ctx.parent_owner);
// otherwise a non-owning pointer (the candidate must not outlive the parent, as MethodContext
// says).
std::shared_ptr<const DiffusionModel> TeacherOf(const MethodContext& ctx) {
  if (const auto* generator = dynamic_cast<const OneStepGenerator*>(ctx.parent)) {
    return generator->teacher();
  }
  const auto* diffusion = dynamic_cast<const DiffusionModel*>(ctx.parent);
  return ctx.parent_owner != nullptr
             ? std::shared_ptr<const DiffusionModel>(ctx.parent_owner, diffusion)
             : std::shared_ptr<const DiffusionModel>(std::shared_ptr<const DiffusionModel>(),
                                                     diffusion);
}

}  // namespace

absl::StatusOr<SfdParams> SfdMethod::Parse(const char* name, const nlohmann::json& params,
                                           bool forget) {
  ParamReader r(name, params);
  UNL_RETURN_IF_ERROR(r.CheckObject());
  SfdParams p;
  if (!forget) p.lambda_sf = p.lambda_gf = 0.0;
  UNL_ASSIGN_OR_RETURN(p.iterations, r.Int("iterations", p.iterations, 1, 1000000));
  UNL_ASSIGN_OR_RETURN(p.batch_size, r.Int("batch_size", p.batch_size, 1, 1024));
  UNL_ASSIGN_OR_RETURN(p.generator_lr,
                       r.Double("generator_lr", p.generator_lr, 0.0, 1.0, /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.fake_score_lr, r.Double("fake_score_lr", p.fake_score_lr, 0.0, 1.0,
                                                 /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.adam_beta1, r.Double("adam_beta1", p.adam_beta1, 0.0, 1.0,
                                              /*lo_exclusive=*/false, /*hi_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.alpha, r.Double("alpha", p.alpha, 0.0, 10.0));
  if (forget) {
    UNL_ASSIGN_OR_RETURN(p.forget_batch_size,
                         r.Int("forget_batch_size", p.forget_batch_size, 1, 1024));
    UNL_ASSIGN_OR_RETURN(p.lambda_sf, r.Double("lambda_sf", p.lambda_sf, 0.0, 1000.0));
    UNL_ASSIGN_OR_RETURN(p.lambda_gf, r.Double("lambda_gf", p.lambda_gf, 0.0, 1000.0));
  }
  UNL_ASSIGN_OR_RETURN(p.t_min, r.Int("t_min", p.t_min, 0, 100000));
  UNL_ASSIGN_OR_RETURN(p.t_max, r.Int("t_max", p.t_max, 1, 100000));
  if (p.t_max <= p.t_min) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": t_max (", p.t_max, ") must be greater than t_min (", p.t_min, ")"));
  }
  UNL_ASSIGN_OR_RETURN(p.init_timestep, r.Int("init_timestep", p.init_timestep, 1, 100000));
  UNL_ASSIGN_OR_RETURN(p.teacher_guidance,
                       r.Double("teacher_guidance", p.teacher_guidance, 0.0, 20.0));
  UNL_ASSIGN_OR_RETURN(p.clip_grad_value, r.Double("clip_grad_value", p.clip_grad_value, 0.0, 1e6));
  UNL_ASSIGN_OR_RETURN(p.ema_decay, r.Double("ema_decay", p.ema_decay, 0.0, 1.0,
                                             /*lo_exclusive=*/false, /*hi_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.seed, r.Uint64("seed", p.seed));
  UNL_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  return p;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> SfdMethod::Create(const nlohmann::json& params) {
  UNL_ASSIGN_OR_RETURN(SfdParams p, Parse(kName, params, /*forget=*/true));
  return std::unique_ptr<UnlearningMethod>(new SfdMethod(p, /*forget=*/true));
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> SfdMethod::CreateSid(
    const nlohmann::json& params) {
  UNL_ASSIGN_OR_RETURN(SfdParams p, Parse(kSidName, params, /*forget=*/false));
  return std::unique_ptr<UnlearningMethod>(new SfdMethod(p, /*forget=*/false));
}

nlohmann::json SfdMethod::EffectiveParams() const {
  nlohmann::json j = {{"iterations", params_.iterations},
                      {"batch_size", params_.batch_size},
                      {"generator_lr", params_.generator_lr},
                      {"fake_score_lr", params_.fake_score_lr},
                      {"adam_beta1", params_.adam_beta1},
                      {"alpha", params_.alpha},
                      {"t_min", params_.t_min},
                      {"t_max", params_.t_max},
                      {"init_timestep", params_.init_timestep},
                      {"teacher_guidance", params_.teacher_guidance},
                      {"clip_grad_value", params_.clip_grad_value},
                      {"ema_decay", params_.ema_decay},
                      {"seed", params_.seed}};
  if (forget_) {
    j["forget_batch_size"] = params_.forget_batch_size;
    j["lambda_sf"] = params_.lambda_sf;
    j["lambda_gf"] = params_.lambda_gf;
  }
  return j;
}

absl::Status SfdMethod::CheckData(const ErasureData& data) const {
  const GenerationErasure& g = data.generation;
  if (g.forget_classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " needs generation.forget_classes"));
  }
  if (g.override_class >= 0 && std::find(g.forget_classes.begin(), g.forget_classes.end(),
                                         g.override_class) != g.forget_classes.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": the override class ", g.override_class, " is also a forget class"));
  }
  return absl::OkStatus();
}

absl::Status SfdMethod::CheckParent(const Model& parent) const {
  const DiffusionModel* teacher = dynamic_cast<const DiffusionModel*>(&parent);
  if (const auto* generator = dynamic_cast<const OneStepGenerator*>(&parent)) {
    if (generator->teacher() == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(name(),
                       ": this one-step generator was loaded without the teacher it was distilled "
                       "from, so it cannot be distilled again; submit the request on the teacher"));
    }
    teacher = generator->teacher().get();
  }
  if (teacher == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        name(), " needs a class-conditional diffusion model or a one-step generator, got ",
        parent.architecture()));
  }
  const int64_t timesteps = teacher->scheduler_config().num_train_timesteps;
  if (params_.t_max > timesteps || params_.init_timestep >= timesteps) {
    return absl::InvalidArgumentError(absl::StrCat(
        name(), ": t_max ", params_.t_max, " and init_timestep ", params_.init_timestep,
        " must lie within the teacher's ", timesteps, " timesteps"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Candidate> SfdMethod::Run(const MethodContext& ctx) {
  if (ctx.parent == nullptr || ctx.data == nullptr || ctx.progress == nullptr ||
      ctx.cancel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": the method context needs a parent, data, progress and cancel"));
  }
  UNL_RETURN_IF_ERROR(CheckData(*ctx.data));
  UNL_RETURN_IF_ERROR(CheckParent(*ctx.parent));
  const std::shared_ptr<const DiffusionModel> teacher = TeacherOf(ctx);
  const auto* previous = dynamic_cast<const OneStepGenerator*>(ctx.parent);

  // The forget set and overrides, cumulative over the lineage.
  const int64_t num_classes = teacher->num_classes();
  OneStepGeneratorConfig config;
  config.init_timestep = params_.init_timestep;
  config.method = name();
  config.teacher_guidance = params_.teacher_guidance;
  if (previous != nullptr) {
    config.forgotten_classes = previous->config().forgotten_classes;
    config.overrides = previous->config().overrides;
  }
  const GenerationErasure& request = ctx.data->generation;
  for (int64_t c : request.forget_classes) {
    if (c < 0 || c >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": forget class ", c, " outside [0, ", num_classes, ")"));
    }
  }
  if (request.override_class >= num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        name(), ": override class ", request.override_class, " outside [0, ", num_classes, ")"));
  }
  if (forget_) {
    for (int64_t c : request.forget_classes) {
      if (std::find(config.forgotten_classes.begin(), config.forgotten_classes.end(), c) ==
          config.forgotten_classes.end()) {
        config.forgotten_classes.push_back(c);
      }
      config.overrides[c] = request.override_class;
    }
  }
  const std::set<int64_t> forget_set(config.forgotten_classes.begin(),
                                     config.forgotten_classes.end());
  for (const auto& [from, to] : config.overrides) {
    if (forget_set.count(to) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": class ", from, " is overridden by class ", to,
                       ", which this request forgets; name another override class"));
    }
  }
  const std::vector<int64_t> forget(forget_set.begin(), forget_set.end());
  std::vector<int64_t> retain;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (forget_set.count(c) == 0) retain.push_back(c);
  }
  if (retain.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name(), ": every class would be forgotten"));
  }
  // Override table indexed by forget class (-1 = a random retained class).
  std::vector<int64_t> override_of(static_cast<size_t>(num_classes), -1);
  for (const auto& [from, to] : config.overrides) override_of[static_cast<size_t>(from)] = to;

  std::unique_ptr<DiffusionModel> real, fake, gen, ema;
  std::vector<torch::Tensor> fake_params, gen_params;
  UNL_RETURN_IF_ERROR(TorchCall("sfd networks", [&] {
    real = teacher->CloneDiffusion(ctx.device);
    SetRequiresGrad(*real, false);
    real->module()->eval();
    fake = teacher->CloneDiffusion(ctx.device);
    SetRequiresGrad(*fake, true);
    fake->module()->train();
    gen = (previous != nullptr ? previous->online() : *teacher).CloneDiffusion(ctx.device);
    SetRequiresGrad(*gen, true);
    gen->module()->train();
    ema = gen->CloneDiffusion(ctx.device);
    SetRequiresGrad(*ema, false);
    ema->module()->eval();
    fake_params = fake->module()->parameters();
    gen_params = gen->module()->parameters();
  }));

  const torch::Tensor abar = real->alphas_cumprod();
  const int64_t null_class = real->unet_config().null_class_id;
  const ImageSpec spec = real->image_spec();
  const int64_t nr = params_.batch_size;
  const int64_t nf = forget_ ? params_.forget_batch_size : 0;
  const int64_t n = nr + nf;
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(params_.seed);
  const auto cpu_f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const torch::Tensor override_table = torch::tensor(override_of, torch::kLong);

  // One draw of an iteration's rows: generator labels c (retained rows, then forget rows), the
  // labels the teacher is queried with (c_o on forget rows), noise z and ε, timesteps t.
  struct Rows {
    torch::Tensor gen_labels, real_labels, z, eps, t;
  };
  auto draw = [&]() {
    Rows r;
    const torch::Tensor c_r = Draw(retain, nr, rng);
    torch::Tensor real_labels = c_r;
    torch::Tensor gen_labels = c_r;
    if (nf > 0) {
      const torch::Tensor c_f = Draw(forget, nf, rng);
      torch::Tensor c_o = override_table.index_select(0, c_f);
      const torch::Tensor random = Draw(retain, nf, rng);
      c_o = at::where(c_o.lt(0), random, c_o);
      gen_labels = at::cat({c_r, c_f});
      real_labels = at::cat({c_r, c_o});
    }
    r.gen_labels = gen_labels.to(ctx.device);
    r.real_labels = real_labels.to(ctx.device);
    r.z = at::randn({n, spec.channels, spec.height, spec.width}, rng, cpu_f32).to(ctx.device);
    r.eps = at::randn({n, spec.channels, spec.height, spec.width}, rng, cpu_f32).to(ctx.device);
    r.t = at::randint(params_.t_min, params_.t_max, {n}, rng, torch::kLong).to(ctx.device);
    return r;
  };
  // Mean over the retained rows + weight · mean over the forget rows of a per-row loss [n].
  auto combine = [&](const torch::Tensor& per_row, double weight) {
    torch::Tensor loss = per_row.narrow(0, 0, nr).mean();
    if (nf > 0 && weight > 0.0) loss = loss + weight * per_row.narrow(0, nr, nf).mean();
    return loss;
  };

  TrainingPhase fake_phase;
  fake_phase.name = "fake_score";
  fake_phase.params = fake_params;
  fake_phase.optimizer.learning_rate = params_.fake_score_lr;
  fake_phase.optimizer.weight_decay = 0.0;
  fake_phase.optimizer.max_grad_norm = 0.0;
  fake_phase.optimizer.clip_grad_value = params_.clip_grad_value;
  fake_phase.optimizer.adam_beta1 = params_.adam_beta1;
  fake_phase.loss_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    const Rows r = draw();
    torch::Tensor x_g;
    {
      torch::NoGradGuard no_grad;
      x_g = OneStepGenerator::Generate(*gen, params_.init_timestep, r.z, r.gen_labels);
    }
    const torch::Tensor a = abar.index_select(0, r.t).view({n, 1, 1, 1});
    const torch::Tensor x_t = a.sqrt() * x_g + (1.0 - a).sqrt() * r.eps;
    const torch::Tensor eps_hat = fake->PredictNoise(x_t, r.t, r.gen_labels);
    return combine((r.eps - eps_hat).pow(2).sum({1, 2, 3}), params_.lambda_sf);
  };

  TrainingPhase gen_phase;
  gen_phase.name = "generator";
  gen_phase.params = gen_params;
  gen_phase.optimizer = fake_phase.optimizer;
  gen_phase.optimizer.learning_rate = params_.generator_lr;
  gen_phase.loss_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    const Rows r = draw();
    // ψ is frozen for this step: its parameters stay out of the graph (the gradient still flows
    // through it to x_t).
    SetRequiresGrad(*fake, false);
    const torch::Tensor x_g =
        OneStepGenerator::Generate(*gen, params_.init_timestep, r.z, r.gen_labels);
    const torch::Tensor a = abar.index_select(0, r.t).view({n, 1, 1, 1});
    const torch::Tensor sa = a.sqrt(), sb = (1.0 - a).sqrt();
    const torch::Tensor x_t = sa * x_g + sb * r.eps;
    torch::Tensor eps_real;
    if (params_.teacher_guidance != 1.0) {
      const torch::Tensor both =
          real->PredictNoise(at::cat({x_t, x_t}), at::cat({r.t, r.t}),
                             at::cat({r.real_labels, at::full_like(r.real_labels, null_class)}));
      const torch::Tensor eps_c = both.narrow(0, 0, n), eps_u = both.narrow(0, n, n);
      eps_real = eps_u + params_.teacher_guidance * (eps_c - eps_u);
    } else {
      eps_real = real->PredictNoise(x_t, r.t, r.real_labels);
    }
    const torch::Tensor eps_fake = fake->PredictNoise(x_t, r.t, r.gen_labels);
    SetRequiresGrad(*fake, true);
    const torch::Tensor f_real = (x_t - sb * eps_real) / sa;
    const torch::Tensor f_fake = (x_t - sb * eps_fake) / sa;
    torch::Tensor omega;
    {
      torch::NoGradGuard no_grad;
      omega = (f_real - x_g).abs().mean({1, 2, 3}).clamp_min(1e-5);
    }
    const torch::Tensor diff = f_real - f_fake;
    const torch::Tensor per_row =
        (diff * ((f_real - x_g) - params_.alpha * diff)).sum({1, 2, 3}) / omega;
    return combine(per_row, params_.lambda_gf);
  };
  gen_phase.after_step = [&](int64_t) {
    auto ema_params = ema->module()->parameters();
    for (size_t i = 0; i < ema_params.size(); ++i) {
      ema_params[i].mul_(params_.ema_decay).add_(gen_params[i].detach(), 1.0 - params_.ema_decay);
    }
  };

  TrainingLoopOptions loop;
  loop.total_steps = params_.iterations;
  loop.progress_every = std::max<int64_t>(1, params_.iterations / 50);
  std::vector<TrainingPhase> phases;
  phases.push_back(std::move(fake_phase));
  phases.push_back(std::move(gen_phase));
  absl::StatusOr<TrainingLoopResult> result =
      RunAlternatingTrainingLoop(std::move(phases), loop, ctx.progress, ctx.cancel);
  if (!result.ok()) return result.status();

  std::unique_ptr<OneStepGenerator> model;
  UNL_RETURN_IF_ERROR(TorchCall("sfd finish", [&] {
    SetRequiresGrad(*gen, false);
    gen->module()->eval();
    model = std::make_unique<OneStepGenerator>(std::move(ema), std::move(gen), config, teacher);
  }));
  Candidate c = Candidate::SelfContained(ArtifactKind::kOneStepGenerator, std::move(model));
  c.facts = {{"network_evaluations_per_image", 1},
             {"init_timestep", params_.init_timestep},
             {"forgotten_classes", config.forgotten_classes},
             {"distilled_again", previous != nullptr},
             {"iterations", result->steps},
             {"fake_score_first_loss", result->phase_first_loss.at(0)},
             {"fake_score_last_loss", result->phase_last_loss.at(0)},
             {"generator_first_loss", result->phase_first_loss.at(1)},
             {"generator_last_loss", result->phase_last_loss.at(1)}};
  return c;
}

}  // namespace unlearning::core
