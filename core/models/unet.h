// A class-conditional UNet2DModel (diffusers' architecture without attention): ResNet blocks with
// GroupNorm/SiLU, sinusoidal timestep embedding plus a learned class embedding, strided-conv
// downsampling and nearest-neighbour + conv upsampling. Parameter names and config keys are
// diffusers', so `unet/` directories load in diffusers and vice versa.
//
// Shapes: B = batch, C = channels, H/W = sample_size, E = time embedding width
// (4 * block_out_channels[0]).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/types.h>

namespace unlearning::core {

// diffusers UNet2DModel config keys (unet/config.json), restricted to what this implementation
// supports: "DownBlock2D"/"UpBlock2D" blocks, no attention ("add_attention": false), positional
// time embedding, "default" time scale shift, num_class_embeds with class_embed_type null.
// Unknown keys are ignored on load.
//
// Classifier-free guidance: class id `null_class_id` (a project key; = number of real classes)
// is the "no label" embedding, so num_class_embeds = classes + 1. id2label names the real classes.
struct UNet2DConfig {
  int64_t sample_size = 28;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  std::vector<int64_t> block_out_channels = {16, 32, 64};
  int64_t layers_per_block = 1;
  int64_t norm_num_groups = 8;
  double norm_eps = 1e-5;
  bool flip_sin_to_cos = true;
  int64_t freq_shift = 0;
  int64_t num_class_embeds = 11;
  // Project keys.
  int64_t null_class_id = 10;
  std::map<int64_t, std::string> id2label;  // real classes 0..null_class_id-1; may be empty

  // Parses and validates. kInvalidArgument naming the key and value for a wrong type, a
  // non-positive size, an unsupported block type / activation / embedding type, attention, group
  // counts that do not divide a channel count, a sample_size not divisible by
  // 2^(levels - 1), more than 16 levels, or null_class_id outside [0, num_class_embeds).
  static absl::StatusOr<UNet2DConfig> FromJson(const nlohmann::json& json);
  // All diffusers keys (with "_class_name": "UNet2DModel") plus null_class_id and id2label.
  nlohmann::json ToJson() const;

  int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }
  int64_t num_levels() const { return static_cast<int64_t>(block_out_channels.size()); }
};

// The UNet as a torch::nn::Module whose named_parameters() are exactly diffusers' names
// ("conv_in.weight", "time_embedding.linear_1.weight", "class_embedding.weight",
// "down_blocks.0.resnets.0.norm1.weight", "down_blocks.0.downsamplers.0.conv.weight",
// "mid_block.resnets.1.conv2.bias", "up_blocks.1.upsamplers.0.conv.weight", "conv_norm_out.weight",
// "conv_out.bias", ...). Not thread-safe while training; forward() may run concurrently in
// inference mode.
class UNet2DModelImpl : public torch::nn::Module {
 public:
  // REQUIRES: `config` passed UNet2DConfig::FromJson validation.
  explicit UNet2DModelImpl(const UNet2DConfig& config);

  // ε-prediction.
  //   sample:       [B, in_channels, H, W] float32 (model space, data in [-1, 1])
  //   timesteps:    [B] int64 or float32 (0..num_train_timesteps-1)
  //   class_labels: [B] int64 in [0, num_class_embeds)
  //   returns:      [B, out_channels, H, W] float32
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& class_labels);

  const UNet2DConfig& config() const { return config_; }

 private:
  UNet2DConfig config_;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};
TORCH_MODULE(UNet2DModel);

// diffusers get_timestep_embedding (max_period 10000, scale 1).
//   timesteps: [B] any numeric dtype; returns [B, dim] float32.
torch::Tensor TimestepEmbedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                                double freq_shift);

}  // namespace unlearning::core
