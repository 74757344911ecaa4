// ULD's served model (METHODS.md §2): a frozen target causal LM combined at every position with
// one or more small assistants by logit difference,
//
//   l(y | x) = l_target(y | x) − Σ_i α_i · keep_i(y) · (l_assistant_i(y | x) − mean_keep_i(l_a_i))
//
// where keep_i is the relative-top filter of the authors' code: per position, with
// lp = log_softmax(l_target), a token is kept when lp ≥ min(max(lp) + ln(rate_i), k-th largest lp)
// for k = max(1, ⌊rate_i · V⌋); filtered tokens keep the target's logit. Decoding for generation
// (NewGenerationState) also sets filtered tokens to −1000, as the authors' greedy decoding does,
// so the composite only ever emits tokens the target finds plausible.
//
// One deliberate difference from the authors' code: the assistant's logits are centred on the
// kept set (the "− mean_keep" above). The authors add raw logits, which makes the filtered
// tokens' share of probability depend on the assistant's arbitrary logit offset (its uniform
// objective, a KL to U, does not fix the offset), so a perfectly uniform assistant could still
// move retain-set probabilities. Centred, a uniform assistant changes nothing; greedy decoding is
// identical to the authors' (a constant over the kept set does not change their argmax, and
// filtered tokens are at −1000 there).
//
// The assistant (ULD's l_a = H(T_K(x))) is the target's embeddings, first K blocks, final norm and
// head, frozen and sharing the target's tensors, with LoRA on every linear of those blocks.
// Stored beside the target's version as uld_config.json + adapter_config.json (PEFT keys) +
// adapter_model.safetensors (PEFT tensor names): no copy of the target's weights.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/models/causal_lm.h"
#include "core/models/language_model.h"
#include "core/models/model.h"

namespace unlearning::core {

// How one assistant is built and combined.
struct UldAssistantConfig {
  int64_t num_layers = 1;    // K: the target's first K blocks; [1, target layers]
  int64_t lora_rank = 16;    // r
  double lora_alpha = 32.0;  // PEFT lora_alpha (scale = lora_alpha / r)
  double lora_dropout = 0.05;
  double alpha = 0.75;        // subtraction weight α (paper §B.5, TOFU)
  double filter_rate = 1e-2;  // relative-top filter rate (paper §B.5)

  nlohmann::json ToJson() const;
  // kInvalidArgument naming the key for a missing or out-of-range value.
  static absl::StatusOr<UldAssistantConfig> FromJson(const nlohmann::json& json);
};

// The assistant of `target` described by `config`: frozen copies (shared storage) of the target's
// embeddings, first K blocks, norm and head, with fresh LoRA factors (A kaiming-uniform from
// `seed`, B = 0, so its logits start as the truncated target's). Only the LoRA factors require
// grad. kInvalidArgument if K exceeds the target's layers.
absl::StatusOr<std::unique_ptr<CausalLm>> MakeUldAssistant(const CausalLm& target,
                                                           const UldAssistantConfig& config,
                                                           uint64_t seed);

// The composite. Thread-compatible like CausalLm.
class LogitDifferenceLm : public Model, public LanguageModel {
 public:
  struct Assistant {
    std::shared_ptr<const CausalLm> model;
    UldAssistantConfig config;
  };

  // `target_owner` keeps `target` alive (it may be the target itself or a model holding it).
  LogitDifferenceLm(std::shared_ptr<const Model> target_owner, const CausalLm* target,
                    std::vector<Assistant> assistants);

  // `parent` with `assistant` subtracted as well: a CausalLm parent gives a one-assistant
  // composite; a LogitDifferenceLm parent (an earlier ULD request) gives its assistants plus this
  // one, on the same target (requests stack). kInvalidArgument for any other parent.
  static absl::StatusOr<std::unique_ptr<LogitDifferenceLm>> Stack(
      std::shared_ptr<const Model> parent, Assistant assistant);
  // The target a ULD request on `parent` trains against: the CausalLm itself, or a composite's
  // target. Null for any other model.
  static const CausalLm* TargetOf(const Model& parent);

  // Reads an assistant artifact (WriteAssistant's files) from `dir` and stacks it on `parent`.
  // kNotFound / kInvalidArgument naming the file or key.
  static absl::StatusOr<std::unique_ptr<LogitDifferenceLm>> LoadOnParent(
      const std::string& dir, std::shared_ptr<const Model> parent);
  // Writes the newest assistant's artifact into `dir`.
  static absl::Status WriteAssistant(const CausalLm& assistant, const UldAssistantConfig& config,
                                     const std::string& dir);

  // Bounds of the per-query settings (WithQuerySettings): only directions that subtract at least
  // as much as the version's verified settings. α may be raised up to kMaxQueryAlpha; the filter
  // rate may be lowered (down to kMinQueryFilterRate), which keeps more tokens in the subtraction.
  static constexpr double kMaxQueryAlpha = 4.0;
  static constexpr double kMinQueryFilterRate = 1e-4;

  // `self` (a LogitDifferenceLm) with every assistant's α and/or filter rate replaced, for one
  // query; it shares every tensor and keeps `self` alive. kInvalidArgument naming the bound for α
  // below the largest stored α or above kMaxQueryAlpha, or a filter rate above the smallest stored
  // rate or below kMinQueryFilterRate (a weaker subtraction than the verified one would bring back
  // what the erasure removed); kFailedPrecondition if `self` is not a composite.
  static absl::StatusOr<std::unique_ptr<LogitDifferenceLm>> WithQuerySettings(
      std::shared_ptr<const Model> self, std::optional<double> alpha,
      std::optional<double> filter_rate);

  const CausalLm& target() const { return *target_; }
  const std::vector<Assistant>& assistants() const { return assistants_; }

  // Model.
  ModelFamily family() const override { return ModelFamily::kCausalLm; }
  std::string architecture() const override;  // "LlamaForCausalLM+ULD"
  int64_t num_parameters() const override;    // target + every assistant's LoRA factors
  torch::Device device() const override { return target_->device(); }
  // Writes the newest assistant's artifact (the composite is not self-contained).
  absl::Status Save(const std::string& dir) const override;
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device device) const override;
  const LanguageModel* AsLanguageModel() const override { return this; }

  // LanguageModel: the target's tokenizer, ids and context.
  const Tokenizer& tokenizer() const override { return target_->tokenizer(); }
  int64_t bos_id() const override { return target_->bos_id(); }
  int64_t eos_id() const override { return target_->eos_id(); }
  bool IsStopToken(int64_t id) const override { return target_->IsStopToken(id); }
  int64_t pad_id() const override { return target_->pad_id(); }
  int64_t vocab_size() const override { return target_->vocab_size(); }
  int64_t max_context() const override { return target_->max_context(); }
  torch::Tensor Logits(const torch::Tensor& ids) const override;
  std::unique_ptr<DecodeState> NewDecodeState(int64_t batch) const override;
  std::unique_ptr<DecodeState> NewGenerationState(int64_t batch) const override;

  // The combination at one set of positions (exposed for tests and the method's loss checks).
  //   target: [..., V]; assistants: one [..., V] per assistant; returns [..., V] float32.
  //   `generation` sets filtered tokens to −1000.
  torch::Tensor Combine(const torch::Tensor& target, const std::vector<torch::Tensor>& assistants,
                        bool generation) const;

 private:
  std::unique_ptr<DecodeState> MakeState(int64_t batch, bool generation) const;

  std::shared_ptr<const Model> target_owner_;
  const CausalLm* target_;
  std::vector<Assistant> assistants_;
};

// keep mask of the relative-top filter: [..., V] bool, true where the token is kept.
//   target_logits: [..., V] float.
torch::Tensor RelativeTopKeep(const torch::Tensor& target_logits, double rate);

}  // namespace unlearning::core
