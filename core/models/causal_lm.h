// Causal language model family: a Llama-architecture decoder (RMSNorm, RoPE, SwiGLU, grouped-query
// attention; with Qwen2's q/k/v biases, Mistral's and Qwen2's sliding windows and Llama 3 / linear
// RoPE scaling) with KV-cache generation and LoRA-capable linear layers, loaded from and saved to a
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

// RoPE frequency scaling (config.json "rope_scaling"), as transformers' modeling_rope_utils.
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  // kLinear and kLlama3: inverse frequencies are divided by `factor` (kLlama3: only the low band).
  double factor = 1.0;
  // kLlama3 only: band edges are original_max_position_embeddings / {low,high}_freq_factor.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// The decoder families this implementation loads: Hugging Face LlamaConfig keys, plus the keys of
// Qwen2Config and MistralConfig that change the computation (see docs/models/architectures.md).
// Unknown keys are ignored on load.
struct LlamaConfig {
  // "llama", "qwen2" or "mistral": selects the architecture name, the biases and the window keys.
  std::string model_type = "llama";
  int64_t vocab_size = ByteTokenizer::kVocabSize;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t max_position_embeddings = 512;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  // Llama only: bias on q/k/v/o_proj ("attention_bias") and on gate/up/down_proj ("mlp_bias").
  // Qwen2 always has biases on q/k/v_proj and none elsewhere.
  bool attention_bias = false;
  bool mlp_bias = false;
  // Sliding-window attention: a query at position i sees keys j with i - j < sliding_window.
  // 0 = null (no window). Mistral: applies to every layer when set. Qwen2: only when
  // use_sliding_window, and only to layers >= max_window_layers (or those "layer_types" names
  // "sliding_attention").
  int64_t sliding_window = 0;
  bool use_sliding_window = false;       // Qwen2
  int64_t max_window_layers = 28;        // Qwen2
  std::vector<std::string> layer_types;  // Qwen2; empty = derived from max_window_layers
  int64_t bos_token_id = ByteTokenizer::kBos;
  int64_t eos_token_id = ByteTokenizer::kEos;
  // The other ids of a list-valued eos_token_id (Llama 3.1: [128001, 128008, 128009]; the first
  // is eos_token_id). Generation stops at any of them.
  std::vector<int64_t> extra_eos_token_ids;
  // generation_config.json as loaded (null when the directory has none); written back on save and
  // not part of config.json. Its eos_token_id (an id or a list: Llama 3 Instruct's [128001,
  // 128009]) stops generation too, as transformers' generate() does.
  nlohmann::json generation_config;
  std::vector<int64_t> generation_eos_token_ids;
  int64_t pad_token_id = ByteTokenizer::kPad;
  // dtype the weights are stored in: "float32", "bfloat16" or "float16". Compute is float32
  // (bfloat16 for a bf16 checkpoint loaded with CausalLm::LoadOptions::keep_bfloat16).
  std::string torch_dtype = "float32";

  // Parses and validates (positive sizes, heads divide hidden size, kv heads divide heads, known
  // model_type, rope_scaling, window keys). kInvalidArgument naming the offending key and value
  // otherwise (nested keys as "rope_scaling.factor").
  static absl::StatusOr<LlamaConfig> FromJson(const nlohmann::json& json);
  // Sets generation_config and its stop ids from a parsed generation_config.json.
  // kInvalidArgument naming "eos_token_id" if it is neither an id nor a list of ids.
  absl::Status SetGenerationConfig(const nlohmann::json& json);
  // Includes "architectures": [architecture()] and "model_type".
  nlohmann::json ToJson() const;
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // "LlamaForCausalLM", "Qwen2ForCausalLM" or "MistralForCausalLM".
  std::string architecture() const;
  bool qkv_bias() const { return model_type == "qwen2" || attention_bias; }
  bool o_bias() const { return model_type == "llama" && attention_bias; }
  bool mlp_biases() const { return model_type == "llama" && mlp_bias; }
  // The sliding window of decoder layer `layer` (0 = full causal attention).
  int64_t LayerWindow(int64_t layer) const;
};

// Per-layer key/value cache for incremental decoding. Not thread-safe.
struct KvCache {
  std::vector<torch::Tensor> keys;    // per layer: [B, n_kv_heads, T_cached, head_dim]
  std::vector<torch::Tensor> values;  // per layer: [B, n_kv_heads, T_cached, head_dim]
  int64_t length = 0;                 // T_cached
  torch::Tensor valid;                // [B, T_cached] bool: real (not padding); undefined = all
};

// RoPE inverse frequencies of `config` (head_dim, rope_theta, rope_scaling), as transformers'
// ROPE_INIT_FUNCTIONS compute them.
//   returns: [head_dim / 2] float32, CPU
torch::Tensor RopeInverseFrequencies(const LlamaConfig& config);

// The decoder as a torch::nn::Module whose named_parameters() are exactly the Hugging Face names
// ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", ..., "model.norm.weight",
// "lm_head.weight", and "...q_proj.bias" etc. where the config has biases; LoRA factors, when
// enabled, add "...q_proj.lora_A" / "...q_proj.lora_B").
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
  struct LoadOptions {
    // Keep a "bfloat16" checkpoint's weights in bfloat16 in memory instead of upcasting them to
    // float32 (half the memory; for frozen targets used only for inference). Activations are then
    // bfloat16 except the RMSNorm statistics, RoPE tables and softmax (float32, rounded back as
    // Hugging Face does); Logits, decode steps and HiddenStates still return float32. Ignored
    // (float32) for other dtypes or when `device` cannot run bfloat16 matmuls. Clones
    // (CloneLm/Clone) are float32; Truncated shares the bfloat16 tensors.
    bool keep_bfloat16 = false;
  };
  static absl::StatusOr<std::unique_ptr<CausalLm>> Load(const std::string& dir,
                                                        torch::Device device,
                                                        const LoadOptions& options);

  ModelFamily family() const override { return ModelFamily::kCausalLm; }
  std::string architecture() const override { return config().architecture(); }
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
  bool IsStopToken(int64_t id) const override;
  int64_t pad_id() const override { return config().pad_token_id; }
  int64_t vocab_size() const override { return config().vocab_size; }
  int64_t max_context() const override { return config().max_position_embeddings; }
  // dtype of the parameters: float32, or bfloat16 when loaded with keep_bfloat16.
  torch::ScalarType weight_dtype() const;
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
