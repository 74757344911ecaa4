#include "core/methods/baselines/class_forgetting.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/methods/class_replay.h"
#include "core/methods/text_method.h"
#include "core/models/vit.h"
#include "core/train/training_loop.h"

namespace unlearning::core {

const char* ClassForgettingMethod::NameOf(ClassForgettingMode mode) {
  switch (mode) {
    case ClassForgettingMode::kRetainFinetune:
      return kRetainFinetuneName;
    case ClassForgettingMode::kL2Finetune:
      return kL2FinetuneName;
    case ClassForgettingMode::kGradientAscent:
      break;
  }
  return kName;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> ClassForgettingMethod::Create(
    const nlohmann::json& params) {
  return CreateImpl(params, ClassForgettingMode::kGradientAscent);
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> ClassForgettingMethod::CreateRetainFinetune(
    const nlohmann::json& params) {
  return CreateImpl(params, ClassForgettingMode::kRetainFinetune);
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> ClassForgettingMethod::CreateL2Finetune(
    const nlohmann::json& params) {
  return CreateImpl(params, ClassForgettingMode::kL2Finetune);
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> ClassForgettingMethod::CreateImpl(
    const nlohmann::json& params, ClassForgettingMode mode) {
  ParamReader r(NameOf(mode), params);
  UNL_RETURN_IF_ERROR(r.CheckObject());
  ClassForgettingParams p;
  p.mode = mode;
  UNL_ASSIGN_OR_RETURN(p.learning_rate, r.Double("learning_rate", p.learning_rate, 0.0, 1.0,
                                                 /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.steps, r.Int("steps", p.steps, 1, 100000));
  UNL_ASSIGN_OR_RETURN(p.batch_size, r.Int("batch_size", p.batch_size, 1, 4096));
  if (mode == ClassForgettingMode::kGradientAscent) {
    UNL_ASSIGN_OR_RETURN(p.forget_weight, r.Double("forget_weight", p.forget_weight, 0.0, 100.0,
                                                   /*lo_exclusive=*/true));
    UNL_ASSIGN_OR_RETURN(p.retain_weight, r.Double("retain_weight", p.retain_weight, 0.0, 100.0));
  }
  if (mode == ClassForgettingMode::kL2Finetune) {
    UNL_ASSIGN_OR_RETURN(p.l2_weight, r.Double("l2_weight", p.l2_weight, 0.0, 1e6));
  }
  UNL_ASSIGN_OR_RETURN(p.replay_per_class,
                       r.Int("replay_per_class", p.replay_per_class, 1, 100000));
  UNL_ASSIGN_OR_RETURN(p.max_grad_norm, r.Double("max_grad_norm", p.max_grad_norm, 0.0, 1e6));
  UNL_ASSIGN_OR_RETURN(p.weight_decay, r.Double("weight_decay", p.weight_decay, 0.0, 1.0));
  UNL_ASSIGN_OR_RETURN(p.seed, r.Uint64("seed", p.seed));
  UNL_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  return std::unique_ptr<UnlearningMethod>(new ClassForgettingMethod(p));
}

nlohmann::json ClassForgettingMethod::EffectiveParams() const {
  nlohmann::json j = {{"learning_rate", params_.learning_rate},
                      {"steps", params_.steps},
                      {"batch_size", params_.batch_size},
                      {"replay_per_class", params_.replay_per_class},
                      {"max_grad_norm", params_.max_grad_norm},
                      {"weight_decay", params_.weight_decay},
                      {"seed", params_.seed}};
  if (params_.mode == ClassForgettingMode::kGradientAscent) {
    j["forget_weight"] = params_.forget_weight;
    j["retain_weight"] = params_.retain_weight;
  }
  if (params_.mode == ClassForgettingMode::kL2Finetune) j["l2_weight"] = params_.l2_weight;
  return j;
}

absl::Status ClassForgettingMethod::CheckData(const ErasureData& data) const {
  if (data.classes.forget_classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " needs classes.forget_classes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Candidate> ClassForgettingMethod::Run(const MethodContext& ctx) {
  if (ctx.parent == nullptr || ctx.data == nullptr || ctx.progress == nullptr ||
      ctx.cancel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": the method context needs a parent, data, progress and cancel"));
  }
  const auto* parent = dynamic_cast<const VitClassifier*>(ctx.parent);
  if (parent == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), " needs a ViT image classifier, got ", ctx.parent->architecture()));
  }
  UNL_RETURN_IF_ERROR(CheckData(*ctx.data));
  if (ctx.probes == nullptr || !ctx.probes->images_train.images.defined() ||
      ctx.probes->images_train.images.size(0) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(name(), " needs the model's training samples (probes/train-*.idx)"));
  }
  const LabelledImages& store = ctx.probes->images_train;
  const std::vector<int64_t>& forget = ctx.data->classes.forget_classes;
  const int64_t per_class = ctx.data->classes.replay_per_class > 0
                                ? ctx.data->classes.replay_per_class
                                : params_.replay_per_class;
  torch::Generator gen = at::detail::createCPUGenerator(params_.seed);
  const torch::Tensor labels = store.labels.cpu();
  const torch::Tensor forget_idx = SelectClasses(labels, forget, /*in=*/true, gen);
  // Classes earlier erasures removed are not replayed: replaying them would teach them back.
  std::vector<int64_t> not_replayed = forget;
  for (int64_t c : parent->forgotten_classes()) not_replayed.push_back(c);
  const torch::Tensor replay_idx =
      CapPerClass(labels, SelectClasses(labels, not_replayed, /*in=*/false, gen), per_class);
  const bool ascent = params_.mode == ClassForgettingMode::kGradientAscent;
  if (ascent && forget_idx.size(0) == 0) {
    return absl::FailedPreconditionError(
        "the model keeps no training samples of the classes to forget (probes/train-*.idx)");
  }

  if (!ascent && replay_idx.size(0) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(name(), ": no replay samples of the retained classes"));
  }

  const auto start_time = std::chrono::steady_clock::now();
  std::unique_ptr<VitClassifier> working = parent->CloneVit(ctx.device);
  auto module = working->module();
  std::vector<torch::Tensor> params;
  for (torch::Tensor& p : module->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  // kL2Finetune: the weights before the request, the anchor of the L2 term.
  std::vector<torch::Tensor> anchor;
  if (params_.mode == ClassForgettingMode::kL2Finetune) {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& p : params) anchor.push_back(p.detach().clone());
  }
  module->train();
  const torch::Tensor forget_images = store.images.index_select(0, forget_idx).to(ctx.device);
  const torch::Tensor forget_labels = labels.index_select(0, forget_idx).to(ctx.device);
  const torch::Tensor replay_images = store.images.index_select(0, replay_idx).to(ctx.device);
  const torch::Tensor replay_labels = labels.index_select(0, replay_idx).to(ctx.device);

  TrainingLoopOptions loop;
  loop.total_steps = params_.steps;
  loop.optimizer.learning_rate = params_.learning_rate;
  loop.optimizer.weight_decay = params_.weight_decay;
  loop.optimizer.max_grad_norm = params_.max_grad_norm;
  loop.progress_every = std::max<int64_t>(1, params_.steps / 50);
  // Positions of step `step`'s batch in a set of `set.size(0)` samples (cycling).
  auto batch = [&](const torch::Tensor& set, int64_t step) {
    const int64_t n = set.size(0);
    const int64_t b = std::min(params_.batch_size, n);
    return (torch::arange(b, torch::kLong) + step * b).remainder(n);
  };
  const std::string step_what = absl::StrCat(name(), " step");
  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    return TorchCall(step_what.c_str(), [&]() -> absl::StatusOr<torch::Tensor> {
      torch::Tensor loss = torch::zeros({}, torch::TensorOptions().device(ctx.device));
      if (ascent) {
        const torch::Tensor f = batch(forget_idx, step).to(ctx.device);
        loss = loss - params_.forget_weight *
                          at::cross_entropy_loss(module->forward(forget_images.index_select(0, f)),
                                                 forget_labels.index_select(0, f));
      }
      const double retain_weight = ascent ? params_.retain_weight : 1.0;
      if (retain_weight > 0.0 && replay_idx.size(0) > 0) {
        const torch::Tensor r = batch(replay_idx, step).to(ctx.device);
        loss = loss + retain_weight *
                          at::cross_entropy_loss(module->forward(replay_images.index_select(0, r)),
                                                 replay_labels.index_select(0, r));
      }
      if (!anchor.empty() && params_.l2_weight > 0.0) {
        torch::Tensor l2 = torch::zeros({}, loss.options());
        for (size_t i = 0; i < params.size(); ++i) l2 = l2 + (params[i] - anchor[i]).pow(2).sum();
        loss = loss + params_.l2_weight * l2;
      }
      return loss;
    });
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop(params, loop, step_fn, ctx.progress, ctx.cancel);
  module->eval();
  if (!result.ok()) return result.status();
  UNL_RETURN_IF_ERROR(working->AddForgottenClasses(forget));
  Candidate c = Candidate::SelfContained(ArtifactKind::kFullWeights, std::move(working));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  const int64_t full_weights_bytes = 4 * c.model->num_parameters();  // float32
  c.facts = {{"method", name()},
             {"forget_samples", ascent ? forget_idx.size(0) : 0},
             {"replay_samples", replay_idx.size(0)},
             {"steps", result->steps},
             {"first_loss", result->first_loss},
             {"last_loss", result->last_loss},
             {"full_weights_bytes", full_weights_bytes},
             {"train_seconds", seconds}};
  return c;
}

}  // namespace unlearning::core
