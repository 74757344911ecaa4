// Causal language model family: a Llama-architecture decoder (RMSNorm, RoPE, SwiGLU, grouped-query
// attention) with KV-cache generation and LoRA-capable linear layers, loaded from and saved to a
// Hugging Face-layout directory with Hugging Face tensor names and config keys.
//
// Shapes: B = batch, T = sequence length, V = vocab size, C = hidden size.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/types.h>

#include "core/models/language_model.h"
#include "core/models/lora.h"
#include "core/models/model.h"
#include "core/text/tokenizer.h"

namespace unlearning::core {

// Hugging Face LlamaConfig keys (config.json). Unknown keys are ignored on load.
struct LlamaConfig {
  int64_t vocab_size = ByteTokenizer::kVocabSize;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t max_position_embeddings = 512;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = ByteTokenizer::kBos;
  int64_t eos_token_id = ByteTokenizer::kEos;
  int64_t pad_token_id = ByteTokenizer::kPad;
  // dtype the weights are stored in: "float32", "bfloat16" or "float16". Compute is float32.
  std::string torch_dtype = "float32";

  // Parses and validates (positive sizes, heads divide hidden size, kv heads divide heads).
  // kInvalidArgument with the offending key and value otherwise.
  static absl::StatusOr<LlamaConfig> FromJson(const nlohmann::json& json);
  // Includes "architectures": ["LlamaForCausalLM"] and "model_type": "llama".
  nlohmann::json ToJson() const;
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Per-layer key/value cache for incremental decoding. Not thread-safe.
struct KvCache {
  std::vector<torch::Tensor> keys;    // per layer: [B, n_kv_heads, T_cached, head_dim]
  std::vector<torch::Tensor> values;  // per layer: [B, n_kv_heads, T_cached, head_dim]
  int64_t length = 0;                 // T_cached
  torch::Tensor valid;                // [B, T_cached] bool: real (not padding); undefined = all
};

// The decoder as a torch::nn::Module whose named_parameters() are exactly the Hugging Face names
// ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", ..., "model.norm.weight",
// "lm_head.weight"; LoRA factors, when enabled, add "...q_proj.lora_A" / "...q_proj.lora_B").
class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& config);

  // Full causal forward over right-padded ids (padding only ever follows real tokens, so the causal
  // mask alone is correct for every real position).
  //   input_ids: [B, T] int64
  //   returns:   [B, T, V] float32 logits
  torch::Tensor forward(const torch::Tensor& input_ids);

  // Incremental forward: appends `input_ids` after the cached positions and updates `cache`.
  //   input_ids: [B, T_new] int64; returns [B, T_new, V] float32 logits.
  //   valid: [B, T_new] bool, false for padding (left-padded prompts of different lengths); no
  //   other position attends to a padded one. Undefined = every new position is real.
  torch::Tensor forward_cached(const torch::Tensor& input_ids, KvCache* cache,
                               const torch::Tensor& valid = {});

  // The residual stream after each decoder block: element l after the first l blocks (0 = the
  // embeddings; num_hidden_layers = the last block's output, before the final norm).
  //   input_ids: [B, T] int64 (right-padded); returns num_hidden_layers + 1 tensors [B, T, C].
  std::vector<torch::Tensor> hidden_states(const torch::Tensor& input_ids);

  // All LoRA-capable linear layers (q/k/v/o and gate/up/down projections), with their HF names
  // ("model.layers.0.self_attn.q_proj").
  std::vector<std::pair<std::string, LoraLinear>> lora_linears();

  const LlamaConfig& config() const { return config_; }

 private:
  LlamaConfig config_;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};
TORCH_MODULE(LlamaForCausalLM);

// A loaded causal LM: config + decoder + tokenizer; the LanguageModel capability of the causal-LM
// family. Thread-compatible: const methods (Logits, decode states, Generate, Save, Clone) may run
// concurrently from many threads; module() is for training a private copy.
class CausalLm : public Model, public LanguageModel {
 public:
  // Random initialisation (normal(0, 0.02) linears/embeddings, ones for norms), seeded.
  static std::unique_ptr<CausalLm> Create(const LlamaConfig& config,
                                          std::unique_ptr<Tokenizer> tokenizer,
                                          torch::Device device, uint64_t seed);
  // Loads config.json + model.safetensors (+ tokenizer files) from `dir`.
  // kNotFound if a file is missing; kInvalidArgument if the config is invalid, a tensor is missing,
  // has the wrong shape, or the file is malformed.
  static absl::StatusOr<std::unique_ptr<CausalLm>> Load(const std::string& dir,
                                                        torch::Device device);

  ModelFamily family() const override { return ModelFamily::kCausalLm; }
  std::string architecture() const override { return "LlamaForCausalLM"; }
  int64_t num_parameters() const override;
  torch::Device device() const override { return device_; }
  // Writes config.json, model.safetensors (in config.torch_dtype) and tokenizer files.
  absl::Status Save(const std::string& dir) const override;
  absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device device) const override;
  // Typed clone.
  std::unique_ptr<CausalLm> CloneLm(torch::Device device) const;
  // The first `num_layers` blocks with this model's embeddings, final norm and head: a model whose
  // parameters share this model's tensors (no copy) and do not require grad, with the same
  // tokenizer (ULD's assistant base). LoRA factors are not carried over. num_layers must be in
  // [1, num_hidden_layers].
  std::unique_ptr<CausalLm> Truncated(int64_t num_layers) const;

  const LanguageModel* AsLanguageModel() const override { return this; }

  // LanguageModel. The special ids, vocab size and context are config.json's.
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  int64_t bos_id() const override { return config().bos_token_id; }
  int64_t eos_id() const override { return config().eos_token_id; }
  int64_t pad_id() const override { return config().pad_token_id; }
  int64_t vocab_size() const override { return config().vocab_size; }
  int64_t max_context() const override { return config().max_position_embeddings; }
  // Logits without autograd (inference mode).
  //   input_ids: [B, T] int64 (right-padded); returns [B, T, V] float32.
  torch::Tensor Logits(const torch::Tensor& input_ids) const override;
  // A KvCache stepped through LlamaForCausalLMImpl::forward_cached (supports padding).
  std::unique_ptr<DecodeState> NewDecodeState(int64_t batch) const override;
  int64_t num_hidden_layers() const override { return config().num_hidden_layers; }
  std::vector<torch::Tensor> HiddenStates(const torch::Tensor& input_ids) const override;

  // GenerateTokens (language_model.h) over this model, returning the generated ids.
  absl::StatusOr<std::vector<int64_t>> Generate(
      const std::vector<int64_t>& prompt_ids, const GenerateOptions& options,
      const std::function<bool(int64_t)>& on_token = nullptr) const;

  const LlamaConfig& config() const { return module_->config(); }
  LlamaForCausalLM& module() { return module_; }
  const LlamaForCausalLM& module() const { return module_; }

 private:
  CausalLm(LlamaForCausalLM module, std::shared_ptr<const Tokenizer> tokenizer,
           torch::Device device);

  LlamaForCausalLM module_;
  std::shared_ptr<const Tokenizer> tokenizer_;  // immutable, shared between clones
  torch::Device device_;
};

}  // namespace unlearning::core
