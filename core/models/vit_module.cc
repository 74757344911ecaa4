// ViTForImageClassificationImpl: the Vision Transformer with Hugging Face semantics and parameter
// names (transformers/models/vit/modeling_vit.py).
//
// B = batch, C = channels, P = patch size, N = patches, T = N + 1 tokens, D = hidden size,
// Hh = attention heads, Dh = head dim, I = intermediate size, L = labels.
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/types.h>

#include "core/models/lora.h"
#include "core/models/vit.h"

namespace unlearning::core {
namespace {

// LayerNorm with learned "weight" and "bias" [D].
class VitLayerNormImpl : public torch::nn::Module {
 public:
  VitLayerNormImpl(int64_t size, double eps) : size_(size), eps_(eps) {
    weight_ = register_parameter("weight", torch::ones({size}));
    bias_ = register_parameter("bias", torch::zeros({size}));
  }
  //   x: [..., D] -> [..., D]
  torch::Tensor forward(const torch::Tensor& x) {
    return at::layer_norm(x, {size_}, weight_, bias_, eps_);
  }

 private:
  int64_t size_;
  double eps_;
  torch::Tensor weight_;
  torch::Tensor bias_;
};
TORCH_MODULE(VitLayerNorm);

// "projection": the Conv2d(C, D, kernel = stride = P) patch embedding, "weight" [D, C, P, P] and
// "bias" [D].
class VitPatchProjectionImpl : public torch::nn::Module {
 public:
  VitPatchProjectionImpl(int64_t channels, int64_t hidden, int64_t patch) : patch_(patch) {
    weight_ = register_parameter("weight", torch::zeros({hidden, channels, patch, patch}));
    bias_ = register_parameter("bias", torch::zeros({hidden}));
  }
  //   x: [B, C, H, W] -> [B, N, D] (patches in row-major order)
  torch::Tensor forward(const torch::Tensor& x) {
    return at::conv2d(x, weight_, bias_, /*stride=*/{patch_, patch_}).flatten(2).transpose(1, 2);
  }

 private:
  int64_t patch_;
  torch::Tensor weight_;
  torch::Tensor bias_;
};
TORCH_MODULE(VitPatchProjection);

class VitPatchEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit VitPatchEmbeddingsImpl(const ViTConfig& c) {
    projection = register_module("projection",
                                 VitPatchProjection(c.num_channels, c.hidden_size, c.patch_size));
  }
  VitPatchProjection projection{nullptr};
};
TORCH_MODULE(VitPatchEmbeddings);

// "embeddings": cls_token [1, 1, D], position_embeddings [1, T, D], patch_embeddings.
class VitEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit VitEmbeddingsImpl(const ViTConfig& c) {
    cls_token = register_parameter("cls_token", torch::zeros({1, 1, c.hidden_size}));
    position_embeddings = register_parameter("position_embeddings",
                                             torch::zeros({1, c.num_patches() + 1, c.hidden_size}));
    patch_embeddings = register_module("patch_embeddings", VitPatchEmbeddings(c));
  }
  //   pixel_values: [B, C, H, W] normalised -> [B, T, D]
  torch::Tensor forward(const torch::Tensor& pixel_values) {
    torch::Tensor patches = patch_embeddings->projection(pixel_values);  // [B, N, D]
    torch::Tensor cls = cls_token.expand({patches.size(0), 1, cls_token.size(2)});
    return at::cat({cls, patches}, 1) + position_embeddings;
  }

  torch::Tensor cls_token;
  torch::Tensor position_embeddings;
  VitPatchEmbeddings patch_embeddings{nullptr};
};
TORCH_MODULE(VitEmbeddings);

// "attention.attention": query, key, value.
class VitSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit VitSelfAttentionImpl(const ViTConfig& c)
      : heads_(c.num_attention_heads),
        head_dim_(c.head_dim()),
        scale_(1.0 / std::sqrt(static_cast<double>(c.head_dim()))) {
    query = register_module("query", LoraLinear(c.hidden_size, c.hidden_size, c.qkv_bias));
    key = register_module("key", LoraLinear(c.hidden_size, c.hidden_size, c.qkv_bias));
    value = register_module("value", LoraLinear(c.hidden_size, c.hidden_size, c.qkv_bias));
  }
  //   x: [B, T, D] -> context [B, T, D] (before the output projection)
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0);
    const int64_t t = x.size(1);
    auto split = [&](const torch::Tensor& y) {  // [B, T, D] -> [B, Hh, T, Dh]
      return y.view({b, t, heads_, head_dim_}).transpose(1, 2);
    };
    torch::Tensor q = split(query(x));
    torch::Tensor k = split(key(x));
    torch::Tensor v = split(value(x));
    torch::Tensor scores = at::matmul(q, k.transpose(-1, -2)).mul_(scale_);  // [B, Hh, T, T]
    torch::Tensor probs = at::softmax(scores, -1);
    return at::matmul(probs, v).transpose(1, 2).reshape({b, t, heads_ * head_dim_});
  }

  LoraLinear query{nullptr}, key{nullptr}, value{nullptr};

 private:
  int64_t heads_;
  int64_t head_dim_;
  double scale_;
};
TORCH_MODULE(VitSelfAttention);

// A module holding one linear named "dense" (ViTSelfOutput, ViTIntermediate, ViTOutput).
class VitDenseImpl : public torch::nn::Module {
 public:
  VitDenseImpl(int64_t in, int64_t out) {
    dense = register_module("dense", LoraLinear(in, out, /*bias=*/true));
  }
  LoraLinear dense{nullptr};
};
TORCH_MODULE(VitDense);

// "attention": attention (self-attention) and output (dense).
class VitAttentionImpl : public torch::nn::Module {
 public:
  explicit VitAttentionImpl(const ViTConfig& c) {
    attention = register_module("attention", VitSelfAttention(c));
    output = register_module("output", VitDense(c.hidden_size, c.hidden_size));
  }
  VitSelfAttention attention{nullptr};
  VitDense output{nullptr};
};
TORCH_MODULE(VitAttention);

// One pre-norm encoder block ("vit.encoder.layer.{i}").
class VitLayerImpl : public torch::nn::Module {
 public:
  explicit VitLayerImpl(const ViTConfig& c) {
    attention = register_module("attention", VitAttention(c));
    intermediate = register_module("intermediate", VitDense(c.hidden_size, c.intermediate_size));
    output = register_module("output", VitDense(c.intermediate_size, c.hidden_size));
    layernorm_before =
        register_module("layernorm_before", VitLayerNorm(c.hidden_size, c.layer_norm_eps));
    layernorm_after =
        register_module("layernorm_after", VitLayerNorm(c.hidden_size, c.layer_norm_eps));
  }
  //   x: [B, T, D] -> [B, T, D]
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h =
        attention->output->dense(attention->attention(layernorm_before(x))) + x;  // ViTSelfOutput
    torch::Tensor ffn = at::gelu(intermediate->dense(layernorm_after(h)));        // ViTIntermediate
    return output->dense(ffn) + h;                                                // ViTOutput
  }

  VitAttention attention{nullptr};
  VitDense intermediate{nullptr};
  VitDense output{nullptr};
  VitLayerNorm layernorm_before{nullptr};
  VitLayerNorm layernorm_after{nullptr};
};
TORCH_MODULE(VitLayer);

class VitEncoderImpl : public torch::nn::Module {
 public:
  explicit VitEncoderImpl(const ViTConfig& c) {
    torch::nn::ModuleList list;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      VitLayer block(c);
      list->push_back(block);
      layer.push_back(block);
    }
    register_module("layer", list);
  }
  std::vector<VitLayer> layer;
};
TORCH_MODULE(VitEncoder);

// "vit": embeddings, encoder, layernorm (ViTModel without the pooler, as in
// ViTForImageClassification).
class VitModelImpl : public torch::nn::Module {
 public:
  explicit VitModelImpl(const ViTConfig& c) {
    embeddings = register_module("embeddings", VitEmbeddings(c));
    encoder = register_module("encoder", VitEncoder(c));
    layernorm = register_module("layernorm", VitLayerNorm(c.hidden_size, c.layer_norm_eps));
  }
  VitEmbeddings embeddings{nullptr};
  VitEncoder encoder{nullptr};
  VitLayerNorm layernorm{nullptr};
};
TORCH_MODULE(VitModel);

}  // namespace

struct ViTForImageClassificationImpl::Impl {
  VitModel vit{nullptr};
  LoraLinear classifier{nullptr};
  torch::Tensor mean;  // [1, C, 1, 1] buffer "pixel_mean": image_mean, 0 without do_normalize
  torch::Tensor std;   // [1, C, 1, 1] buffer "pixel_std": image_std, 1 without do_normalize
};

ViTForImageClassificationImpl::ViTForImageClassificationImpl(
    const ViTConfig& config, const ViTImageProcessorConfig& preprocessor)
    : config_(config), preprocessor_(preprocessor), impl_(std::make_shared<Impl>()) {
  impl_->vit = register_module("vit", VitModel(config));
  impl_->classifier = register_module(
      "classifier", LoraLinear(config.hidden_size, config.num_labels(), /*bias=*/true));
  const int64_t c = config.num_channels;
  torch::Tensor mean = torch::zeros({1, c, 1, 1});
  torch::Tensor std = torch::ones({1, c, 1, 1});
  if (preprocessor.do_normalize) {
    for (int64_t i = 0; i < c; ++i) {
      mean[0][i] = preprocessor.image_mean[static_cast<size_t>(i)];
      std[0][i] = preprocessor.image_std[static_cast<size_t>(i)];
    }
  }
  impl_->mean = register_buffer("pixel_mean", mean);
  impl_->std = register_buffer("pixel_std", std);
}

torch::Tensor ViTForImageClassificationImpl::features(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config_.num_channels &&
                  images.size(2) == config_.image_size && images.size(3) == config_.image_size,
              "images must be [B, ", config_.num_channels, ", ", config_.image_size, ", ",
              config_.image_size, "], got ", images.sizes());
  VitModelImpl& vit = *impl_->vit;
  const double scale = preprocessor_.pixel_scale();
  torch::Tensor pixels = std::abs(scale - 1.0) < 1e-12 ? images : images * scale;
  torch::Tensor x = vit.embeddings((pixels - impl_->mean) / impl_->std);  // [B, T, D]
  for (VitLayer& block : vit.encoder->layer) x = block(x);
  return vit.layernorm(x.select(1, 0));  // [B, D]; LayerNorm is per token, so CLS alone suffices
}

torch::Tensor ViTForImageClassificationImpl::classify(const torch::Tensor& features) {
  return impl_->classifier(features);
}

torch::Tensor ViTForImageClassificationImpl::forward(const torch::Tensor& images) {
  return classify(features(images));
}

std::vector<std::pair<std::string, LoraLinear>> ViTForImageClassificationImpl::ffn_linears() {
  std::vector<std::pair<std::string, LoraLinear>> out;
  const auto& layers = impl_->vit->encoder->layer;
  out.reserve(layers.size() * 2);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string prefix = "vit.encoder.layer." + std::to_string(i) + ".";
    out.emplace_back(prefix + "intermediate.dense", layers[i]->intermediate->dense);
    out.emplace_back(prefix + "output.dense", layers[i]->output->dense);
  }
  return out;
}

std::vector<std::pair<std::string, LoraLinear>> ViTForImageClassificationImpl::lora_linears() {
  std::vector<std::pair<std::string, LoraLinear>> out;
  const auto& layers = impl_->vit->encoder->layer;
  out.reserve(layers.size() * 6 + 1);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string prefix = "vit.encoder.layer." + std::to_string(i) + ".";
    const VitAttentionImpl& attn = *layers[i]->attention;
    out.emplace_back(prefix + "attention.attention.query", attn.attention->query);
    out.emplace_back(prefix + "attention.attention.key", attn.attention->key);
    out.emplace_back(prefix + "attention.attention.value", attn.attention->value);
    out.emplace_back(prefix + "attention.output.dense", attn.output->dense);
    out.emplace_back(prefix + "intermediate.dense", layers[i]->intermediate->dense);
    out.emplace_back(prefix + "output.dense", layers[i]->output->dense);
  }
  out.emplace_back("classifier", impl_->classifier);
  return out;
}

}  // namespace unlearning::core
