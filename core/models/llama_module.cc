// LlamaForCausalLMImpl: the Llama decoder with Hugging Face semantics and parameter names.
//
// B = batch, T = new positions, S = key positions (cached + new), C = hidden
// size, H = attention heads, KV = key/value heads, R = H / KV (queries per
// key/value head), D = head dim, V = vocab.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>

#include "core/models/causal_lm.h"
#include "core/models/lora.h"

namespace unlearning::core {
namespace {

// RMSNorm with a learned "weight" [C].
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t size, double eps) : eps_(eps) {
    weight_ = register_parameter("weight", torch::ones({size}));
  }
  //   x: [..., C] -> [..., C]; x * rsqrt(mean(x^2) + eps) * weight, the statistics in float32
  //   (a bfloat16 x is normalised in float32 and rounded back before the weight, as Hugging Face).
  torch::Tensor forward(const torch::Tensor& x) {
    if (x.scalar_type() != torch::kFloat32) {
      torch::Tensor xf = x.to(torch::kFloat32);
      torch::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
      return weight_ * (xf * at::rsqrt(variance + eps_)).to(x.scalar_type());
    }
    torch::Tensor variance = x.pow(2).mean(-1, /*keepdim=*/true);
    return weight_ * (x * at::rsqrt(variance + eps_));
  }

 private:
  double eps_;
  torch::Tensor weight_;
};
TORCH_MODULE(RmsNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t hidden) {
    weight_ = register_parameter("weight", torch::zeros({vocab, hidden}));
  }
  torch::Tensor& weight() { return weight_; }

 private:
  torch::Tensor weight_;
};
TORCH_MODULE(Embedding);

//   x: [B, T, n, D]; cos/sin: [T, 1, D]. x * cos + rotate_half(x) * sin, where
//   rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
torch::Tensor ApplyRope(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor x1 = x.narrow(-1, 0, half);
  torch::Tensor x2 = x.narrow(-1, half, half);
  torch::Tensor rotated = at::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const LlamaConfig& c)
      : heads_(c.num_attention_heads),
        kv_heads_(c.num_key_value_heads),
        head_dim_(c.head_dim()),
        scale_(1.0 / std::sqrt(static_cast<double>(c.head_dim()))) {
    const bool qkv = c.qkv_bias();
    q_proj = register_module("q_proj", LoraLinear(c.hidden_size, heads_ * head_dim_, qkv));
    k_proj = register_module("k_proj", LoraLinear(c.hidden_size, kv_heads_ * head_dim_, qkv));
    v_proj = register_module("v_proj", LoraLinear(c.hidden_size, kv_heads_ * head_dim_, qkv));
    o_proj = register_module("o_proj", LoraLinear(heads_ * head_dim_, c.hidden_size, c.o_bias()));
  }

  //   x: [B, T, C]; cos/sin: [T, 1, D]; mask: [R*T, S] additive (0 / -inf) or
  //   undefined when T == 1; cache_k/cache_v: [B, KV, S_cached, D] (updated) or
  //   null. Returns [B, T, C].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, torch::Tensor* cache_k, torch::Tensor* cache_v) {
    const int64_t b = x.size(0);
    const int64_t t = x.size(1);
    const int64_t r = heads_ / kv_heads_;
    torch::Tensor q = ApplyRope(q_proj(x).view({b, t, heads_, head_dim_}), cos, sin);
    torch::Tensor k =
        ApplyRope(k_proj(x).view({b, t, kv_heads_, head_dim_}), cos, sin).transpose(1, 2);
    torch::Tensor v = v_proj(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
    // k, v: [B, KV, T, D]
    if (cache_k != nullptr) {
      if (cache_k->defined()) {
        k = at::cat({*cache_k, k}, 2);
        v = at::cat({*cache_v, v}, 2);
      }
      *cache_k = k;
      *cache_v = v;
    }
    const int64_t s = k.size(2);
    // Grouped-query attention without materialising repeat_kv: query head h =
    // kv * R + j uses key/value head kv, so the R query heads of one kv head
    // are stacked along the rows.
    torch::Tensor q3 = q.view({b, t, kv_heads_, r, head_dim_})
                           .permute({0, 2, 3, 1, 4})
                           .reshape({b * kv_heads_, r * t, head_dim_});
    torch::Tensor k3 = k.reshape({b * kv_heads_, s, head_dim_});
    torch::Tensor v3 = v.reshape({b * kv_heads_, s, head_dim_});
    // scores: [B*KV, R*T, S]
    torch::Tensor scores = mask.defined() ? at::baddbmm(mask, q3, k3.transpose(1, 2),
                                                        /*beta=*/1.0, /*alpha=*/scale_)
                                          : at::bmm(q3, k3.transpose(1, 2)).mul_(scale_);
    // Softmax in float32 also for bfloat16 weights (Hugging Face's eager attention).
    torch::Tensor probs = scores.scalar_type() == torch::kFloat32
                              ? at::softmax(scores, -1)
                              : at::softmax(scores, -1, torch::kFloat32).to(scores.scalar_type());
    // [B*KV, R*T, D] -> [B, T, KV, R, D] -> [B, T, H*D]
    torch::Tensor out = at::bmm(probs, v3)
                            .view({b, kv_heads_, r, t, head_dim_})
                            .permute({0, 3, 1, 2, 4})
                            .reshape({b, t, heads_ * head_dim_});
    return o_proj(out);
  }

  LoraLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_;
  int64_t kv_heads_;
  int64_t head_dim_;
  double scale_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const LlamaConfig& c) {
    const bool bias = c.mlp_biases();
    gate_proj = register_module("gate_proj", LoraLinear(c.hidden_size, c.intermediate_size, bias));
    up_proj = register_module("up_proj", LoraLinear(c.hidden_size, c.intermediate_size, bias));
    down_proj = register_module("down_proj", LoraLinear(c.intermediate_size, c.hidden_size, bias));
  }
  //   x: [B, T, C] -> down(silu(gate(x)) * up(x)): [B, T, C]
  torch::Tensor forward(const torch::Tensor& x) {
    return down_proj(at::silu(gate_proj(x)).mul_(up_proj(x)));
  }

  LoraLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const LlamaConfig& c) {
    self_attn = register_module("self_attn", Attention(c));
    mlp = register_module("mlp", Mlp(c));
    input_layernorm = register_module("input_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  }

  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr};
  RmsNorm post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// "model": embed_tokens, layers.N, norm.
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c) {
    embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size));
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      DecoderLayer layer(c);
      list->push_back(layer);
      layers.push_back(layer);
    }
    register_module("layers", list);
    norm = register_module("norm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  }

  Embedding embed_tokens{nullptr};
  std::vector<DecoderLayer> layers;
  RmsNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

}  // namespace

struct LlamaForCausalLMImpl::Impl {
  LlamaModel model{nullptr};
  LoraLinear lm_head{nullptr};  // null when tie_word_embeddings
  torch::Tensor inv_freq;       // [D/2] float32, CPU: 1 / theta^(2i/D)

  // The additive attention mask (0 / -inf) of T new queries at absolute positions past ..
  // past + T - 1 over S = past + T keys. Query i sees key j iff j <= past + i (causal) and, with a
  // sliding window W > 0, past + i - j < W (transformers' sliding_window_overlay: kv_idx > q_idx -
  // W); with key padding (cache->valid) only real keys, except that a padded query still sees
  // itself so no softmax row is empty. Returns [R*T, S], [B*KV, R*T, S] with key padding, or
  // undefined when nothing is masked (one new query, no window in reach, no padding).
  static torch::Tensor Mask(const LlamaConfig& config, int64_t b, int64_t t, int64_t past,
                            int64_t window, const KvCache* cache, torch::Device device) {
    const int64_t s = past + t;
    const int64_t kv = config.num_key_value_heads;
    const int64_t r = config.num_attention_heads / kv;
    const bool padded = cache != nullptr && cache->valid.defined();
    const bool windowed = window > 0 && s > window;
    if (!padded && !windowed && t == 1) return {};
    const auto bool_opts = torch::TensorOptions().dtype(torch::kBool).device(device);
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    // allowed[i][j]: j - i <= past, and with a window j - i > past - W.
    torch::Tensor allowed = torch::ones({t, s}, bool_opts).tril(past);  // [T, S]
    if (windowed) allowed = allowed & torch::ones({t, s}, bool_opts).triu(past - window + 1);
    const float inf = std::numeric_limits<float>::infinity();
    if (!padded) {
      return torch::zeros({t, s}, f32).masked_fill_(allowed.logical_not(), -inf).repeat({r, 1});
    }
    torch::Tensor self = torch::eye(t, t, bool_opts);               // [T, T]
    self = at::cat({torch::zeros({t, past}, bool_opts), self}, 1);  // [T, S]
    torch::Tensor with_padding =
        allowed.unsqueeze(0) & (cache->valid.unsqueeze(1) | self.unsqueeze(0));  // [B, T, S]
    return torch::zeros({b, t, s}, f32)
        .masked_fill_(with_padding.logical_not(), -inf)
        .view({b, 1, 1, t, s})
        .expand({b, kv, r, t, s})
        .reshape({b * kv, r * t, s});
  }

  //   input_ids: [B, T] int64; cache: null for a full forward; valid: [B, T] bool (which new
  //   positions are real tokens; undefined = all). Returns [B, T, V] float32. `hidden` (may be
  //   null) receives the residual stream before the first block and after each ([B, T, C]).
  torch::Tensor Forward(const LlamaConfig& config, const torch::Tensor& input_ids, KvCache* cache,
                        const torch::Tensor& valid = {},
                        std::vector<torch::Tensor>* hidden = nullptr) {
    TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [B, T], got ", input_ids.sizes());
    const int64_t t = input_ids.size(1);
    const int64_t past = cache != nullptr ? cache->length : 0;
    const int64_t num_layers = static_cast<int64_t>(model->layers.size());
    if (cache != nullptr) {
      TORCH_CHECK(cache->length >= 0, "negative KV cache length");
      if (cache->length == 0) {
        cache->keys.assign(num_layers, torch::Tensor());
        cache->values.assign(num_layers, torch::Tensor());
      }
      TORCH_CHECK(static_cast<int64_t>(cache->keys.size()) == num_layers &&
                      static_cast<int64_t>(cache->values.size()) == num_layers,
                  "KV cache has ", cache->keys.size(), " layers, the model ", num_layers);
    }
    const torch::Tensor& embed = model->embed_tokens->weight();
    const auto device = embed.device();
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);

    torch::Tensor h = at::embedding(embed, input_ids.to(device));  // [B, T, C]

    // RoPE tables for absolute positions past .. past + T - 1: [T, 1, D].
    torch::Tensor positions = torch::arange(past, past + t, f32);
    torch::Tensor freqs = at::outer(positions, inv_freq.to(device));  // [T, D/2]
    torch::Tensor emb = at::cat({freqs, freqs}, -1);                  // [T, D]
    // Computed in float32, then in the activations' dtype (bfloat16 weights), as Hugging Face.
    const auto dtype = h.scalar_type();
    torch::Tensor cos = emb.cos().unsqueeze(1).to(dtype);
    torch::Tensor sin = emb.sin().unsqueeze(1).to(dtype);

    // Key padding (left-padded batches of prompts of different lengths): a padded key is seen by
    // no other query. RoPE makes attention depend only on the distance between positions, so the
    // real tokens of a padded row attend exactly as they would unpadded.
    if (cache != nullptr && (valid.defined() || cache->valid.defined())) {
      const int64_t b = input_ids.size(0);
      torch::Tensor new_valid =
          valid.defined()
              ? valid.to(device, torch::kBool)
              : torch::ones({b, t}, torch::TensorOptions().dtype(torch::kBool).device(device));
      TORCH_CHECK(new_valid.sizes() == input_ids.sizes(), "valid must be ", input_ids.sizes(),
                  ", got ", new_valid.sizes());
      torch::Tensor old_valid =
          cache->valid.defined()
              ? cache->valid
              : torch::ones({b, past}, torch::TensorOptions().dtype(torch::kBool).device(device));
      cache->valid = at::cat({old_valid, new_valid}, 1);  // [B, S]
    }

    // Additive masks [R*T, S] (rows tiled R times to match the grouped query layout), or with key
    // padding [B*KV, R*T, S]; undefined when nothing is masked. One per distinct window.
    std::vector<torch::Tensor> layer_masks(num_layers);
    std::vector<std::pair<int64_t, torch::Tensor>> by_window;
    for (int64_t i = 0; i < num_layers; ++i) {
      const int64_t window = config.LayerWindow(i);
      auto found = std::find_if(by_window.begin(), by_window.end(),
                                [&](const auto& entry) { return entry.first == window; });
      if (found == by_window.end()) {
        by_window.emplace_back(window,
                               Mask(config, input_ids.size(0), t, past, window, cache, device));
        found = by_window.end() - 1;
      }
      layer_masks[i] = found->second.defined() ? found->second.to(dtype) : found->second;
    }

    if (hidden != nullptr) hidden->push_back(h.to(torch::kFloat32));
    for (int64_t i = 0; i < num_layers; ++i) {
      DecoderLayerImpl& layer = *model->layers[i];
      torch::Tensor* ck = cache != nullptr ? &cache->keys[i] : nullptr;
      torch::Tensor* cv = cache != nullptr ? &cache->values[i] : nullptr;
      h = h + layer.self_attn->forward(layer.input_layernorm(h), cos, sin, layer_masks[i], ck, cv);
      h = h + layer.mlp(layer.post_attention_layernorm(h));
      if (hidden != nullptr) hidden->push_back(h.to(torch::kFloat32));
    }
    if (cache != nullptr) cache->length = past + t;
    h = model->norm(h);
    torch::Tensor logits = lm_head.is_empty() ? at::linear(h, embed) : lm_head(h);  // [B, T, V]
    return logits.to(torch::kFloat32);
  }
};

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& config)
    : config_(config), impl_(std::make_shared<Impl>()) {
  impl_->model = register_module("model", LlamaModel(config));
  if (!config.tie_word_embeddings) {
    impl_->lm_head = register_module("lm_head", LoraLinear(config.hidden_size, config.vocab_size,
                                                           /*bias=*/false));
  }
  impl_->inv_freq = RopeInverseFrequencies(config);
}

torch::Tensor RopeInverseFrequencies(const LlamaConfig& config) {
  const int64_t d = config.head_dim();
  // inv_freq = 1 / theta^(arange(0, D, 2) / D), in float32 as Hugging Face computes it.
  torch::Tensor exponent =
      torch::arange(0, d, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(d);
  torch::Tensor inv_freq = at::pow(config.rope_theta, exponent).reciprocal();  // [D/2] float32
  const RopeScaling& scaling = config.rope_scaling;
  switch (scaling.type) {
    case RopeScaling::Type::kNone:
      return inv_freq;
    case RopeScaling::Type::kLinear:
      // transformers' _compute_linear_scaling_rope_parameters.
      return inv_freq / scaling.factor;
    case RopeScaling::Type::kLlama3: {
      // transformers' _compute_llama3_parameters (Llama 3.1): with wavelength 2 pi / f, the high
      // band (wavelength < original / high_freq_factor) is kept, the low band (wavelength >
      // original / low_freq_factor) divided by factor, and the band between interpolated with
      // smooth = (original / wavelength - low) / (high - low) between f / factor and f.
      const double original = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_freq_wavelen = original / scaling.low_freq_factor;
      const double high_freq_wavelen = original / scaling.high_freq_factor;
      torch::Tensor wavelen = (2.0 * M_PI) / inv_freq;
      torch::Tensor scaled =
          at::where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq);
      torch::Tensor smooth = (original / wavelen - scaling.low_freq_factor) /
                             (scaling.high_freq_factor - scaling.low_freq_factor);
      torch::Tensor smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled;
      torch::Tensor medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen);
      return at::where(medium, smoothed, scaled);
    }
  }
  return inv_freq;
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids) {
  return impl_->Forward(config_, input_ids, nullptr);
}

torch::Tensor LlamaForCausalLMImpl::forward_cached(const torch::Tensor& input_ids, KvCache* cache,
                                                   const torch::Tensor& valid) {
  TORCH_CHECK(cache != nullptr, "forward_cached needs a cache");
  return impl_->Forward(config_, input_ids, cache, valid);
}

std::vector<torch::Tensor> LlamaForCausalLMImpl::hidden_states(const torch::Tensor& input_ids) {
  std::vector<torch::Tensor> hidden;
  impl_->Forward(config_, input_ids, nullptr, {}, &hidden);
  return hidden;
}

std::vector<std::pair<std::string, LoraLinear>> LlamaForCausalLMImpl::lora_linears() {
  std::vector<std::pair<std::string, LoraLinear>> out;
  const auto& layers = impl_->model->layers;
  out.reserve(layers.size() * 7);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    const AttentionImpl& attn = *layers[i]->self_attn;
    const MlpImpl& mlp = *layers[i]->mlp;
    out.emplace_back(prefix + "self_attn.q_proj", attn.q_proj);
    out.emplace_back(prefix + "self_attn.k_proj", attn.k_proj);
    out.emplace_back(prefix + "self_attn.v_proj", attn.v_proj);
    out.emplace_back(prefix + "self_attn.o_proj", attn.o_proj);
    out.emplace_back(prefix + "mlp.gate_proj", mlp.gate_proj);
    out.emplace_back(prefix + "mlp.up_proj", mlp.up_proj);
    out.emplace_back(prefix + "mlp.down_proj", mlp.down_proj);
  }
  return out;
}

}  // namespace unlearning::core
