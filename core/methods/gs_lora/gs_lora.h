// GS-LoRA and GS-LoRA++ (METHODS.md §4; Zhao et al., CVPR 2024 / T-PAMI 2026): continual class
// forgetting on a ViT image classifier with one small adapter per request.
//
// Per request (a "task"), the parent version's effective weights are frozen and fresh LoRA
// factors (rank 8, lora_alpha 1, so scale 1/8 as loralib; A Kaiming-uniform(a = sqrt 5), B = 0)
// go on both FFN linears of every encoder block, attention untouched. Only the factors train, on
//   L = beta · ReLU(BND − CE(forget batch)) + CE(replay batch)
//       + alpha · Σ_blocks sqrt(‖A1‖² + ‖B1‖² + ‖A2‖² + ‖B2‖² + eps)          (group lasso)
//       [GS-LoRA++: + w_f · ReLU(BND_pro − KL_f) + w_r · KL_r]
// with alpha = 0 during the first `sparsity_warmup_epochs` (the sparsity warm-up the released
// continual script omits, its issue #5), AdamW and a cosine schedule. KL_x =
// batchmean KL(softmax(proto_y) ‖ softmax(emb(x))) over the embedding dimension, emb = the
// final-layernormed CLS token (the head's input) and proto_y = the mean embedding of class y under
// the model before the request (METHODS.md §4.4, computed after the parent is loaded: pitfall
// §4.7 (i)).
//
// Each step pairs one replay batch with one forget batch (cycling both). Forget samples are the
// request's labelled forget images when it carries them, else the model's own training samples
// of those classes (probes/train-*.idx); the replay set is the request's replay images, else
// `replay_per_class` samples of every class neither forgotten now nor by an earlier request.
//
// The artifact is ArtifactKind::kLoraAdapter (core/models/vit_adapter.h): only the factors and an
// adapter config are written; the servable model is the parent plus the adapters. With
// merge_chain, the request is published as kFullWeights instead (everything folded).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/methods/method.h"

namespace unlearning::core {

struct GsLoraParams {
  bool plus = false;                   // GS-LoRA++ (prototype terms)
  double learning_rate = 1e-2;         // (0, 1]; the paper's AdamW lr
  int64_t epochs = 10;                 // [1, 1000]
  int64_t steps_per_epoch = 15;        // [1, 10000]; paired (replay, forget) steps per epoch
  int64_t batch_size = 64;             // [1, 4096], for each of the forget and replay batches
  int64_t replay_per_class = 100;      // [1, 100000]; a request's classes.replay_per_class wins
  double beta = 0.2;                   // [0, 100]; forget weight (paper: 0.15-0.4)
  double alpha = 1e-3;                 // [0, 100]; group-lasso weight
  int64_t sparsity_warmup_epochs = 2;  // [0, epochs]; alpha = 0 during these epochs
  // Bound of the forgetting hinge. 0 = derived: ln(num_classes) + bnd_margin (see gs_lora.cc).
  double bnd = 0.0;         // [0, 1000]
  double bnd_margin = 2.0;  // [0, 100]
  // GS-LoRA++ only. bnd_pro 0 = derived from the prototypes (see gs_lora.cc).
  double prototype_forget_weight = 0.1;  // w_f, [0, 100]
  double prototype_retain_weight = 1.0;  // w_r, [0, 100]
  double bnd_pro = 0.0;                  // [0, 1000]
  int64_t rank = 8;                      // [1, 64]
  double lora_alpha = 1.0;               // (0, 1000]; scale = lora_alpha / rank
  double weight_decay = 0.05;            // [0, 1]; the paper's AdamW weight decay
  double max_grad_norm = 0.0;            // [0, 1e6]; 0 (the paper's default) disables clipping
  double zero_group_threshold = 1e-3;    // [0, 1e6]; a group whose norm is below is "zero"
  // Publish this request as full weights (the parent chain and this request's adapters folded
  // into self-contained weights) instead of an adapter on the parent: how an operator ends a long
  // chain, e.g. every N requests. Default false: one auditable adapter per request.
  bool merge_chain = false;
  // Auto-merge: publish as full weights when this request would be the N-th adapter on the last
  // full-weights version of the chain (parent's adapter_chain_length() + 1 >= N), so chains never
  // grow past N links and every N-th request is a self-contained version. 0 (default) = never:
  // every request stays its own auditable, roll-back-able adapter. [0, 1000].
  int64_t merge_after_tasks = 0;
  uint64_t seed = 0;
};

// The loss terms, exposed for tests. All return scalar float32 tensors connected to autograd.
// Σ_g sqrt(Σ_{W in g} ‖W‖_F² + eps): `groups` holds each group's tensors.
torch::Tensor GroupLasso(const std::vector<std::vector<torch::Tensor>>& groups, double eps);
// ReLU(bound − value).
torch::Tensor Hinge(const torch::Tensor& value, double bound);
// batchmean KL(softmax(prototypes[labels]) ‖ softmax(embeddings)), softmax over the last dim.
//   embeddings [B, D], prototypes [L, D], labels [B] int64.
torch::Tensor PrototypeKl(const torch::Tensor& embeddings, const torch::Tensor& prototypes,
                          const torch::Tensor& labels);
// The derived hinge bound: ln(num_classes) + margin (see gs_lora.cc for why).
double DerivedBnd(int64_t num_classes, double margin);

class GsLoraMethod : public UnlearningMethod {
 public:
  static constexpr const char* kName = "gs_lora";
  static constexpr const char* kPlusName = "gs_lora_plus";
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> Create(const nlohmann::json& params);
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> CreatePlus(const nlohmann::json& params);

  explicit GsLoraMethod(GsLoraParams params) : params_(params) {}
  std::string name() const override { return params_.plus ? kPlusName : kName; }
  ModelFamily family() const override { return ModelFamily::kImageClassifier; }
  // The kind a request on a parent with no adapter chain publishes (merge_chain, or
  // merge_after_tasks == 1); Run decides per parent (merge_after_tasks counts the chain).
  ArtifactKind artifact_kind() const override {
    return params_.merge_chain || params_.merge_after_tasks == 1 ? ArtifactKind::kFullWeights
                                                                 : ArtifactKind::kLoraAdapter;
  }
  nlohmann::json EffectiveParams() const override;
  absl::Status CheckData(const ErasureData& data) const override;
  int64_t TotalSteps(const ErasureData& data) const override {
    return params_.epochs * params_.steps_per_epoch;
  }
  absl::StatusOr<Candidate> Run(const MethodContext& ctx) override;

  const GsLoraParams& params() const { return params_; }

 private:
  static absl::StatusOr<std::unique_ptr<UnlearningMethod>> CreateImpl(const nlohmann::json& params,
                                                                      bool plus);
  GsLoraParams params_;
};

}  // namespace unlearning::core
