#include "core/methods/gs_lora/gs_lora.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/io/safetensors.h"
#include "core/methods/class_replay.h"
#include "core/methods/text_method.h"  // ParamReader
#include "core/models/vit.h"
#include "core/models/vit_adapter.h"
#include "core/train/training_loop.h"

namespace unlearning::core {
namespace {

// Inside the group-lasso root so that its gradient is defined at an all-zero group (METHODS.md
// §4.8; the reference code has none).
constexpr double kGroupEps = 1e-12;

// Mean final-layernormed CLS embedding per class of `images`/`labels` under `vit` (no autograd):
// [num_classes, D]; rows of absent classes are zero. `present` gets a 1 for each present class.
torch::Tensor ClassPrototypes(const VitClassifier& vit, const torch::Tensor& images,
                              const torch::Tensor& labels, torch::Tensor* present) {
  c10::InferenceMode guard;
  const int64_t classes = vit.num_classes();
  std::vector<torch::Tensor> feats;
  for (int64_t start = 0; start < images.size(0); start += 256) {
    const int64_t end = std::min(images.size(0), start + 256);
    feats.push_back(vit.Features(images.slice(0, start, end)).cpu());
  }
  const torch::Tensor f = torch::cat(feats);  // [N, D]
  torch::Tensor sums = torch::zeros({classes, f.size(1)});
  sums.index_add_(0, labels.cpu(), f);
  torch::Tensor counts = torch::zeros({classes});
  counts.index_add_(0, labels.cpu(), torch::ones({labels.size(0)}));
  *present = counts.gt(0);
  return (sums / counts.clamp_min(1.0).unsqueeze(1)).clone();
}

// KL(softmax(p) ‖ softmax(q)) for rows p [D], q [D] (no autograd).
double KlRows(const torch::Tensor& p, const torch::Tensor& q) {
  return at::kl_div(at::log_softmax(q, 0), at::log_softmax(p, 0), at::Reduction::Sum,
                    /*log_target=*/true)
      .item<double>();
}

}  // namespace

torch::Tensor GroupLasso(const std::vector<std::vector<torch::Tensor>>& groups, double eps) {
  torch::Tensor total;
  for (const auto& group : groups) {
    torch::Tensor sq;
    for (const torch::Tensor& w : group) {
      torch::Tensor s = w.pow(2).sum();
      sq = sq.defined() ? sq + s : s;
    }
    if (!sq.defined()) continue;
    torch::Tensor norm = (sq + eps).sqrt();
    total = total.defined() ? total + norm : norm;
  }
  return total.defined() ? total : torch::zeros({});
}

torch::Tensor Hinge(const torch::Tensor& value, double bound) { return at::relu(bound - value); }

torch::Tensor PrototypeKl(const torch::Tensor& embeddings, const torch::Tensor& prototypes,
                          const torch::Tensor& labels) {
  // F.kl_div(log_softmax(emb), softmax(proto_y), reduction="batchmean") as the reference code:
  // Σ_d p_d (log p_d − log q_d) / B with p = softmax(proto_y), q = softmax(emb).
  const torch::Tensor log_p = at::log_softmax(prototypes.index_select(0, labels), 1);
  const torch::Tensor log_q = at::log_softmax(embeddings, 1);
  return at::kl_div(log_q, log_p, at::Reduction::Sum, /*log_target=*/true) /
         static_cast<double>(std::max<int64_t>(1, embeddings.size(0)));
}

// BND for a plain softmax head. The reference's 105/110 belong to its CosFace head (s = 64,
// m = 0.35), whose margin logits make CE values range up to ~2s; METHODS.md §4.3 asks for a bound
// "a little above the CE of near-uniform or wrong predictions". With C classes, a uniform
// prediction has CE = ln C; pushing the forget batch's mean CE to ln C + m means the true class's
// probability is on (geometric) average e^(−m)/C, e^m times below uniform, so it is ranked below
// the others for nearly every sample, while the hinge stops the ascent there (no unbounded
// divergence as in plain gradient ascent). The hinge acts on the batch mean, so a margin of a
// couple of nats leaves room for the few samples that resist: m = 2 by default (p ≈ 0.0135 for
// C = 10, BND ≈ 4.30), a request parameter (bnd_margin), or set bnd itself.
double DerivedBnd(int64_t num_classes, double margin) {
  return std::log(static_cast<double>(std::max<int64_t>(2, num_classes))) + margin;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> GsLoraMethod::Create(
    const nlohmann::json& params) {
  return CreateImpl(params, /*plus=*/false);
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> GsLoraMethod::CreatePlus(
    const nlohmann::json& params) {
  return CreateImpl(params, /*plus=*/true);
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> GsLoraMethod::CreateImpl(
    const nlohmann::json& params, bool plus) {
  ParamReader r(plus ? kPlusName : kName, params);
  UNL_RETURN_IF_ERROR(r.CheckObject());
  GsLoraParams p;
  p.plus = plus;
  UNL_ASSIGN_OR_RETURN(p.learning_rate, r.Double("learning_rate", p.learning_rate, 0.0, 1.0,
                                                 /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.epochs, r.Int("epochs", p.epochs, 1, 1000));
  UNL_ASSIGN_OR_RETURN(p.steps_per_epoch, r.Int("steps_per_epoch", p.steps_per_epoch, 1, 10000));
  UNL_ASSIGN_OR_RETURN(p.batch_size, r.Int("batch_size", p.batch_size, 1, 4096));
  UNL_ASSIGN_OR_RETURN(p.replay_per_class,
                       r.Int("replay_per_class", p.replay_per_class, 1, 100000));
  UNL_ASSIGN_OR_RETURN(p.beta, r.Double("beta", p.beta, 0.0, 100.0));
  UNL_ASSIGN_OR_RETURN(p.alpha, r.Double("alpha", p.alpha, 0.0, 100.0));
  UNL_ASSIGN_OR_RETURN(p.sparsity_warmup_epochs,
                       r.Int("sparsity_warmup_epochs", p.sparsity_warmup_epochs, 0, 1000));
  UNL_ASSIGN_OR_RETURN(p.bnd, r.Double("bnd", p.bnd, 0.0, 1000.0));
  UNL_ASSIGN_OR_RETURN(p.bnd_margin, r.Double("bnd_margin", p.bnd_margin, 0.0, 100.0));
  if (plus) {
    UNL_ASSIGN_OR_RETURN(
        p.prototype_forget_weight,
        r.Double("prototype_forget_weight", p.prototype_forget_weight, 0.0, 100.0));
    UNL_ASSIGN_OR_RETURN(
        p.prototype_retain_weight,
        r.Double("prototype_retain_weight", p.prototype_retain_weight, 0.0, 100.0));
    UNL_ASSIGN_OR_RETURN(p.bnd_pro, r.Double("bnd_pro", p.bnd_pro, 0.0, 1000.0));
  }
  UNL_ASSIGN_OR_RETURN(p.rank, r.Int("rank", p.rank, 1, 64));
  UNL_ASSIGN_OR_RETURN(p.lora_alpha, r.Double("lora_alpha", p.lora_alpha, 0.0, 1000.0,
                                              /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.weight_decay, r.Double("weight_decay", p.weight_decay, 0.0, 1.0));
  UNL_ASSIGN_OR_RETURN(p.max_grad_norm, r.Double("max_grad_norm", p.max_grad_norm, 0.0, 1e6));
  UNL_ASSIGN_OR_RETURN(p.zero_group_threshold,
                       r.Double("zero_group_threshold", p.zero_group_threshold, 0.0, 1e6));
  UNL_ASSIGN_OR_RETURN(p.merge_chain, r.Bool("merge_chain", p.merge_chain));
  UNL_ASSIGN_OR_RETURN(p.merge_after_tasks,
                       r.Int("merge_after_tasks", p.merge_after_tasks, 0, 1000));
  UNL_ASSIGN_OR_RETURN(p.seed, r.Uint64("seed", p.seed));
  UNL_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (p.sparsity_warmup_epochs > p.epochs) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.method(), ".sparsity_warmup_epochs must be at most epochs (", p.epochs,
                     "), got ", p.sparsity_warmup_epochs, "; lower it or raise epochs"));
  }
  return std::unique_ptr<UnlearningMethod>(new GsLoraMethod(p));
}

nlohmann::json GsLoraMethod::EffectiveParams() const {
  nlohmann::json j = {{"learning_rate", params_.learning_rate},
                      {"epochs", params_.epochs},
                      {"steps_per_epoch", params_.steps_per_epoch},
                      {"batch_size", params_.batch_size},
                      {"replay_per_class", params_.replay_per_class},
                      {"beta", params_.beta},
                      {"alpha", params_.alpha},
                      {"sparsity_warmup_epochs", params_.sparsity_warmup_epochs},
                      {"bnd", params_.bnd},
                      {"bnd_margin", params_.bnd_margin},
                      {"rank", params_.rank},
                      {"lora_alpha", params_.lora_alpha},
                      {"weight_decay", params_.weight_decay},
                      {"max_grad_norm", params_.max_grad_norm},
                      {"zero_group_threshold", params_.zero_group_threshold},
                      {"merge_chain", params_.merge_chain},
                      {"merge_after_tasks", params_.merge_after_tasks},
                      {"seed", params_.seed}};
  if (params_.plus) {
    j["prototype_forget_weight"] = params_.prototype_forget_weight;
    j["prototype_retain_weight"] = params_.prototype_retain_weight;
    j["bnd_pro"] = params_.bnd_pro;
  }
  return j;
}

absl::Status GsLoraMethod::CheckData(const ErasureData& data) const {
  const ClassErasure& c = data.classes;
  if (c.forget_classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " needs classes.forget_classes"));
  }
  auto check_pair = [&](const torch::Tensor& images, const torch::Tensor& labels,
                        const char* what) -> absl::Status {
    if (!images.defined() && !labels.defined()) return absl::OkStatus();
    if (!images.defined() || !labels.defined() || images.dim() != 4 || labels.dim() != 1 ||
        images.size(0) != labels.size(0) || images.size(0) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": the request's ", what,
                       " images and labels must both be given, [N, C, H, W] "
                       "and [N] with the same N > 0"));
    }
    return absl::OkStatus();
  };
  UNL_RETURN_IF_ERROR(check_pair(c.forget_images, c.forget_labels, "forget"));
  return check_pair(c.replay_images, c.replay_labels, "replay");
}

absl::StatusOr<Candidate> GsLoraMethod::Run(const MethodContext& ctx) {
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
  const ClassErasure& request = ctx.data->classes;
  const std::vector<int64_t>& forget = request.forget_classes;
  for (int64_t c : forget) {
    if (c < 0 || c >= parent->num_classes()) {
      return absl::InvalidArgumentError(absl::StrCat("class ", c, " does not exist (the model has ",
                                                     parent->num_classes(), " classes)"));
    }
  }
  const bool need_store = !request.forget_images.defined() || !request.replay_images.defined();
  if (need_store && (ctx.probes == nullptr || !ctx.probes->images_train.images.defined() ||
                     ctx.probes->images_train.images.size(0) == 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat(name(),
                     " needs the model's training samples (probes/train-*.idx) or the request's "
                     "forget and replay images"));
  }
  const auto start_time = std::chrono::steady_clock::now();
  torch::Generator gen = at::detail::createCPUGenerator(params_.seed);

  // The data: forget and replay sets, [N, C, H, W] in [0, 1] with [N] labels, on the CPU.
  torch::Tensor forget_images, forget_labels, replay_images, replay_labels;
  std::vector<int64_t> not_replayed = forget;
  for (int64_t c : parent->forgotten_classes()) not_replayed.push_back(c);
  const int64_t per_class =
      request.replay_per_class > 0 ? request.replay_per_class : params_.replay_per_class;
  if (request.forget_images.defined()) {
    forget_images = request.forget_images.cpu().to(torch::kFloat32);
    forget_labels = request.forget_labels.cpu().to(torch::kLong);
  } else {
    const LabelledImages& store = ctx.probes->images_train;
    const torch::Tensor labels = store.labels.cpu();
    const torch::Tensor idx = SelectClasses(labels, forget, /*in=*/true, gen);
    forget_images = store.images.cpu().index_select(0, idx);
    forget_labels = labels.index_select(0, idx);
  }
  if (request.replay_images.defined()) {
    replay_images = request.replay_images.cpu().to(torch::kFloat32);
    replay_labels = request.replay_labels.cpu().to(torch::kLong);
  } else {
    const LabelledImages& store = ctx.probes->images_train;
    const torch::Tensor labels = store.labels.cpu();
    const torch::Tensor idx =
        CapPerClass(labels, SelectClasses(labels, not_replayed, /*in=*/false, gen), per_class);
    replay_images = store.images.cpu().index_select(0, idx);
    replay_labels = labels.index_select(0, idx);
  }
  if (forget_images.size(0) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        name(), ": no training samples of the classes to forget (probes/train-*.idx)"));
  }
  if (replay_images.size(0) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(name(), ": no replay samples of the retained classes"));
  }
  const int64_t num_classes = parent->num_classes();
  for (const torch::Tensor& l : {forget_labels, replay_labels}) {
    if (l.min().item<int64_t>() < 0 || l.max().item<int64_t>() >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": a sample's label is not a class of the model"));
    }
  }

  const double bnd = params_.bnd > 0.0 ? params_.bnd : DerivedBnd(num_classes, params_.bnd_margin);
  // GS-LoRA++: prototypes from the model before the task, over the forget and replay sets.
  torch::Tensor prototypes;
  double bnd_pro = params_.bnd_pro;
  if (params_.plus) {
    torch::Tensor present;
    prototypes = ClassPrototypes(*parent, torch::cat({forget_images, replay_images}),
                                 torch::cat({forget_labels, replay_labels}), &present);
    if (bnd_pro <= 0.0) {
      // Derived: the mean KL from a forgotten class's prototype to the retained classes'
      // prototypes, i.e. push forgotten samples' embeddings as far from their own prototype as
      // the other classes' prototypes are (the reference's 18/50 belong to its 512-d face
      // embedding; KL values scale with the embedding's spread, so a fixed number does not
      // transfer).
      double sum = 0.0;
      int64_t n = 0;
      for (int64_t k : forget) {
        if (!present[k].item<bool>()) continue;
        for (int64_t j = 0; j < num_classes; ++j) {
          if (!present[j].item<bool>() ||
              std::find(forget.begin(), forget.end(), j) != forget.end()) {
            continue;
          }
          sum += KlRows(prototypes[k], prototypes[j]);
          ++n;
        }
      }
      bnd_pro = n > 0 ? sum / static_cast<double>(n) : 1.0;
    }
    prototypes = prototypes.to(ctx.device);
  }

  std::unique_ptr<VitClassifier> working = parent->CloneVit(ctx.device);
  ResetFfnAdapters(*working, params_.rank, params_.lora_alpha);
  auto module = working->module();
  std::vector<torch::Tensor> params;
  std::vector<std::vector<torch::Tensor>> groups;  // one per block: {A1, B1, A2, B2}
  {
    torch::NoGradGuard no_grad;
    auto linears = module->ffn_linears();
    for (size_t i = 0; i < linears.size(); ++i) {
      LoraLinear& linear = linears[i].second;
      // Kaiming-uniform(a = sqrt 5) as loralib, drawn from the request's seed (not the global
      // generator): bound = gain · sqrt(3 / fan_in) = 1 / sqrt(fan_in).
      const double bound = 1.0 / std::sqrt(static_cast<double>(linear->lora_a().size(1)));
      linear->lora_a().uniform_(-bound, bound, gen);
      if (i % 2 == 0) groups.emplace_back();
      groups.back().push_back(linear->lora_a());
      groups.back().push_back(linear->lora_b());
      params.push_back(linear->lora_a());
      params.push_back(linear->lora_b());
    }
  }
  module->train();
  forget_images = forget_images.to(ctx.device);
  forget_labels = forget_labels.to(ctx.device);
  replay_images = replay_images.to(ctx.device);
  replay_labels = replay_labels.to(ctx.device);
  const torch::Tensor forget_order = torch::randperm(forget_images.size(0), gen);
  const torch::Tensor replay_order = torch::randperm(replay_images.size(0), gen);

  TrainingLoopOptions loop;
  loop.total_steps = params_.epochs * params_.steps_per_epoch;
  loop.optimizer.learning_rate = params_.learning_rate;
  loop.optimizer.weight_decay = params_.weight_decay;
  loop.optimizer.max_grad_norm = params_.max_grad_norm;
  loop.optimizer.cosine_decay = true;
  loop.progress_every = std::max<int64_t>(1, loop.total_steps / 50);
  const int64_t warmup_steps = params_.sparsity_warmup_epochs * params_.steps_per_epoch;
  // Positions of step `step`'s batch in a cycling order of `order.size(0)` samples.
  auto batch = [&](const torch::Tensor& order, int64_t step) {
    const int64_t n = order.size(0);
    const int64_t b = std::min(params_.batch_size, n);
    return order.index_select(0, (torch::arange(b, torch::kLong) + step * b).remainder(n))
        .to(ctx.device);
  };
  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    return TorchCall("gs_lora step", [&]() -> absl::StatusOr<torch::Tensor> {
      const torch::Tensor r = batch(replay_order, step);
      const torch::Tensor f = batch(forget_order, step);
      const int64_t nr = r.size(0);
      const torch::Tensor y_r = replay_labels.index_select(0, r);
      const torch::Tensor y_f = forget_labels.index_select(0, f);
      // One forward over both batches (the ViT has no batch statistics).
      const torch::Tensor emb = module->features(
          torch::cat({replay_images.index_select(0, r), forget_images.index_select(0, f)}));
      const torch::Tensor logits = module->classify(emb);
      const torch::Tensor ce_r = at::cross_entropy_loss(logits.slice(0, 0, nr), y_r);
      const torch::Tensor ce_f = at::cross_entropy_loss(logits.slice(0, nr), y_f);
      torch::Tensor loss = params_.beta * Hinge(ce_f, bnd) + ce_r;
      const double alpha = step < warmup_steps ? 0.0 : params_.alpha;
      if (alpha > 0.0) loss = loss + alpha * GroupLasso(groups, kGroupEps);
      if (params_.plus) {
        if (params_.prototype_forget_weight > 0.0) {
          loss = loss + params_.prototype_forget_weight *
                            Hinge(PrototypeKl(emb.slice(0, nr), prototypes, y_f), bnd_pro);
        }
        if (params_.prototype_retain_weight > 0.0) {
          loss = loss + params_.prototype_retain_weight *
                            PrototypeKl(emb.slice(0, 0, nr), prototypes, y_r);
        }
      }
      return loss;
    });
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop(params, loop, step_fn, ctx.progress, ctx.cancel);
  module->eval();
  for (torch::Tensor& p : params) p.set_requires_grad(false);
  if (!result.ok()) return result.status();
  UNL_RETURN_IF_ERROR(working->AddForgottenClasses(forget));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();

  // Facts: per-block group norms (the group-lasso groups) and the norms of the weight change
  // each block's adapters make, the zero-group ratio, the adapter's size against full weights.
  nlohmann::json group_norms = nlohmann::json::array();
  nlohmann::json delta_norms = nlohmann::json::array();
  int64_t zero_groups = 0;
  {
    torch::NoGradGuard no_grad;
    auto linears = module->ffn_linears();
    for (size_t g = 0; g < groups.size(); ++g) {
      const double norm = GroupLasso({groups[g]}, 0.0).item<double>();
      group_norms.push_back(norm);
      if (norm < params_.zero_group_threshold) ++zero_groups;
      double delta_sq = 0.0;
      for (size_t k = 2 * g; k < 2 * g + 2 && k < linears.size(); ++k) {
        LoraLinear& l = linears[k].second;
        delta_sq +=
            (at::matmul(l->lora_b(), l->lora_a()) * l->lora_scale()).pow(2).sum().item<double>();
      }
      delta_norms.push_back(std::sqrt(delta_sq));
    }
  }
  std::map<std::string, torch::Tensor> tensors = VitAdapterTensors(*working);
  UNL_ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensors(tensors, {{"format", "pt"}}));
  VitAdapterConfig config;
  config.rank = params_.rank;
  config.lora_alpha = params_.lora_alpha;
  config.forget_classes = forget;
  config.forgotten_classes = working->forgotten_classes();
  const int64_t groups_n = static_cast<int64_t>(groups.size());
  const int64_t full_weights_bytes = 4 * working->num_parameters();  // float32

  const nlohmann::json adapter_config = config.ToJson();
  // This request's adapter is link number `chain_length` on the last full-weights version.
  const int64_t chain_length = parent->adapter_chain_length() + 1;
  const bool auto_merge =
      params_.merge_after_tasks > 0 && chain_length >= params_.merge_after_tasks;
  const bool merge = params_.merge_chain || auto_merge;
  working->set_adapter_chain_length(merge ? 0 : chain_length);
  Candidate c;
  if (merge) {
    // Self-contained: VitClassifier::Save folds the enabled adapters into the weights.
    c = Candidate::SelfContained(ArtifactKind::kFullWeights, std::move(working));
  } else {
    c.kind = ArtifactKind::kLoraAdapter;
    c.write = [tensors = std::move(tensors), config](const std::string& dir) {
      return WriteVitAdapter(dir, tensors, config);
    };
    c.model = std::move(working);
  }
  c.facts = {
      {"method", name()},
      {"lora_rank", params_.rank},
      {"lora_alpha", params_.lora_alpha},
      {"groups", groups_n},
      {"zero_groups", zero_groups},
      {"zero_group_ratio",
       groups_n > 0 ? static_cast<double>(zero_groups) / static_cast<double>(groups_n) : 0.0},
      {"zero_group_threshold", params_.zero_group_threshold},
      {"group_norms", group_norms},
      {"delta_norms", delta_norms},
      {"adapter_bytes", static_cast<int64_t>(bytes.size())},
      {"full_weights_bytes", full_weights_bytes},
      {"bnd", bnd},
      {"forget_samples", forget_images.size(0)},
      {"replay_samples", replay_images.size(0)},
      {"steps", result->steps},
      {"first_loss", result->first_loss},
      {"last_loss", result->last_loss},
      {"train_seconds", seconds}};
  if (params_.plus) c.facts["bnd_pro"] = bnd_pro;
  c.facts["adapter_chain_length"] = chain_length;
  if (merge) {
    // The lineage of the merge, in the manifest and the certificate: how many adapter links
    // (this request's included) the full weights fold, and why.
    c.facts["merged_adapter_config"] = adapter_config;
    c.facts["merged_chain_length"] = chain_length;
    c.facts["merge_reason"] = params_.merge_chain ? "merge_chain" : "merge_after_tasks";
  }
  return c;
}

}  // namespace unlearning::core
