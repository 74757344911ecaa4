// UNet2DModelImpl: diffusers' UNet2DModel forward (unet_2d.py) with DownBlock2D / UNetMidBlock2D
// (add_attention=False) / UpBlock2D (unet_2d_blocks.py) and ResnetBlock2D, Downsample2D,
// Upsample2D (resnet.py), ported from diffusers v0.21.
#include "core/models/unet.h"

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

namespace unlearning::core {
namespace {

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2));
}

torch::nn::GroupNorm Norm(const UNet2DConfig& c, int64_t channels) {
  return torch::nn::GroupNorm(
      torch::nn::GroupNormOptions(c.norm_num_groups, channels).eps(c.norm_eps));
}

// diffusers ResnetBlock2D with time_embedding_norm "default", output_scale_factor 1, no dropout.
class ResnetBlockImpl : public torch::nn::Module {
 public:
  ResnetBlockImpl(const UNet2DConfig& c, int64_t in, int64_t out)
      : norm1_(register_module("norm1", Norm(c, in))),
        conv1_(register_module("conv1", Conv(in, out, 3))),
        time_emb_proj_(
            register_module("time_emb_proj", torch::nn::Linear(c.time_embed_dim(), out))),
        norm2_(register_module("norm2", Norm(c, out))),
        conv2_(register_module("conv2", Conv(out, out, 3))) {
    if (in != out) conv_shortcut_ = register_module("conv_shortcut", Conv(in, out, 1));
  }

  //   x: [B, in, h, w]; temb: [B, E]; returns [B, out, h, w].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb) {
    torch::Tensor h = conv1_(at::silu(norm1_(x)));
    h = h + time_emb_proj_(at::silu(temb)).unsqueeze(-1).unsqueeze(-1);
    h = conv2_(at::silu(norm2_(h)));
    torch::Tensor shortcut = conv_shortcut_.is_empty() ? x : conv_shortcut_(x);
    return shortcut + h;
  }

 private:
  torch::nn::GroupNorm norm1_;
  torch::nn::Conv2d conv1_;
  torch::nn::Linear time_emb_proj_;
  torch::nn::GroupNorm norm2_;
  torch::nn::Conv2d conv2_;
  torch::nn::Conv2d conv_shortcut_{nullptr};
};
TORCH_MODULE(ResnetBlock);

// Downsample2D / Upsample2D: a module holding one conv named "conv".
class SamplerConvImpl : public torch::nn::Module {
 public:
  SamplerConvImpl(int64_t channels, int64_t stride)
      : conv_(register_module("conv", Conv(channels, channels, 3, stride))) {}
  torch::Tensor forward(const torch::Tensor& x) { return conv_(x); }

 private:
  torch::nn::Conv2d conv_;
};
TORCH_MODULE(SamplerConv);

// DownBlock2D / UpBlock2D / UNetMidBlock2D: "resnets" plus optional "downsamplers"/"upsamplers".
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl() : resnets_(register_module("resnets", torch::nn::ModuleList())) {}
  void AddResnet(ResnetBlock block) {
    resnets_->push_back(block);
    typed_.push_back(std::move(block));
  }
  void SetSampler(const char* name, SamplerConv conv) {
    torch::nn::ModuleList list;
    list->push_back(conv);
    register_module(name, list);
    sampler_ = std::move(conv);
  }
  const std::vector<ResnetBlock>& resnets() const { return typed_; }
  SamplerConv& sampler() { return sampler_; }

 private:
  torch::nn::ModuleList resnets_;
  std::vector<ResnetBlock> typed_;
  SamplerConv sampler_{nullptr};
};
TORCH_MODULE(Block);

}  // namespace

struct UNet2DModelImpl::Impl {
  torch::nn::Conv2d conv_in{nullptr};
  torch::nn::Linear linear_1{nullptr};
  torch::nn::Linear linear_2{nullptr};
  torch::nn::Embedding class_embedding{nullptr};
  std::vector<Block> down_blocks;
  Block mid_block{nullptr};
  std::vector<Block> up_blocks;
  torch::nn::GroupNorm conv_norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};
};

torch::Tensor TimestepEmbedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                double freq_shift) {
  const int64_t half = dim / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device());
  torch::Tensor exponent = at::arange(half, opts) * static_cast<float>(-std::log(10000.0));
  exponent = exponent / static_cast<float>(static_cast<double>(half) - freq_shift);
  torch::Tensor emb = timesteps.to(torch::kFloat32).unsqueeze(1) * at::exp(exponent).unsqueeze(0);
  emb = flip_sin_to_cos ? at::cat({at::cos(emb), at::sin(emb)}, -1)
                        : at::cat({at::sin(emb), at::cos(emb)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0});
  return emb;  // [B, dim]
}

UNet2DModelImpl::UNet2DModelImpl(const UNet2DConfig& config)
    : config_(config), impl_(std::make_shared<Impl>()) {
  const UNet2DConfig& c = config_;
  const std::vector<int64_t>& boc = c.block_out_channels;
  const int64_t levels = c.num_levels();
  const int64_t temb = c.time_embed_dim();
  Impl& m = *impl_;
  m.conv_in = register_module("conv_in", Conv(c.in_channels, boc[0], 3));
  auto time_embedding = register_module("time_embedding", std::make_shared<torch::nn::Module>());
  m.linear_1 = time_embedding->register_module("linear_1", torch::nn::Linear(boc[0], temb));
  m.linear_2 = time_embedding->register_module("linear_2", torch::nn::Linear(temb, temb));
  m.class_embedding =
      register_module("class_embedding", torch::nn::Embedding(c.num_class_embeds, temb));

  torch::nn::ModuleList down_list;
  int64_t out_ch = boc[0];
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = boc[i];
    Block block;
    for (int64_t j = 0; j < c.layers_per_block; ++j) {
      block->AddResnet(ResnetBlock(c, j == 0 ? in_ch : out_ch, out_ch));
    }
    if (i + 1 < levels) block->SetSampler("downsamplers", SamplerConv(out_ch, /*stride=*/2));
    down_list->push_back(block);
    m.down_blocks.push_back(block);
  }
  register_module("down_blocks", down_list);

  m.mid_block = register_module("mid_block", Block());
  m.mid_block->AddResnet(ResnetBlock(c, boc.back(), boc.back()));
  m.mid_block->AddResnet(ResnetBlock(c, boc.back(), boc.back()));

  torch::nn::ModuleList up_list;
  out_ch = boc.back();
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t prev_ch = out_ch;
    out_ch = boc[levels - 1 - i];
    const int64_t in_ch = boc[std::max<int64_t>(levels - 2 - i, 0)];
    const int64_t layers = c.layers_per_block + 1;
    Block block;
    for (int64_t j = 0; j < layers; ++j) {
      const int64_t skip_ch = j == layers - 1 ? in_ch : out_ch;
      block->AddResnet(ResnetBlock(c, (j == 0 ? prev_ch : out_ch) + skip_ch, out_ch));
    }
    if (i + 1 < levels) block->SetSampler("upsamplers", SamplerConv(out_ch, /*stride=*/1));
    up_list->push_back(block);
    m.up_blocks.push_back(block);
  }
  register_module("up_blocks", up_list);

  m.conv_norm_out = register_module("conv_norm_out", Norm(c, boc[0]));
  m.conv_out = register_module("conv_out", Conv(boc[0], c.out_channels, 3));
}

torch::Tensor UNet2DModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                       const torch::Tensor& class_labels) {
  const UNet2DConfig& c = config_;
  Impl& m = *impl_;
  const int64_t batch = sample.size(0);
  torch::Tensor t = timesteps.dim() == 0 ? timesteps.expand({batch}) : timesteps;
  torch::Tensor t_emb = TimestepEmbedding(t.to(sample.device()), c.block_out_channels[0],
                                          c.flip_sin_to_cos, static_cast<double>(c.freq_shift));
  torch::Tensor emb = m.linear_2(at::silu(m.linear_1(t_emb)));  // [B, E]
  emb = emb + m.class_embedding(class_labels.to(sample.device(), torch::kInt64));

  torch::Tensor x = m.conv_in(sample);  // [B, boc[0], H, W]
  std::vector<torch::Tensor> skips = {x};
  for (Block& block : m.down_blocks) {
    for (ResnetBlock resnet : block->resnets()) {
      x = resnet->forward(x, emb);
      skips.push_back(x);
    }
    if (!block->sampler().is_empty()) {
      x = block->sampler()(x);
      skips.push_back(x);
    }
  }
  for (ResnetBlock resnet : m.mid_block->resnets()) x = resnet->forward(x, emb);
  for (Block& block : m.up_blocks) {
    for (ResnetBlock resnet : block->resnets()) {
      x = resnet->forward(at::cat({x, skips.back()}, 1), emb);
      skips.pop_back();
    }
    if (!block->sampler().is_empty()) {
      x = at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2});
      x = block->sampler()(x);
    }
  }
  x = at::silu(m.conv_norm_out(x));
  return m.conv_out(x);  // [B, out_channels, H, W]
}

}  // namespace unlearning::core
