// A tiny random class-conditional denoiser for method tests of the diffusion family: 8x8, three
// real classes (+ the null class), random non-zero weights (conv_out and class embeddings too, so
// the labels matter), and the request that forgets one class.
#pragma once

#include <cstdint>
#include <memory>

#include <gtest/gtest.h>

#include "core/data/erasure_data.h"
#include "core/models/diffusion.h"

namespace unlearning::testing {

inline std::unique_ptr<core::DiffusionModel> TinyDiffusionModel(uint64_t seed = 7) {
  core::UNet2DConfig c;
  c.sample_size = 8;
  c.block_out_channels = {8, 16};
  c.norm_num_groups = 4;
  c.num_class_embeds = 4;
  c.null_class_id = 3;
  c.id2label = {{0, "zero"}, {1, "one"}, {2, "two"}};
  absl::StatusOr<core::UNet2DConfig> valid = core::UNet2DConfig::FromJson(c.ToJson());
  EXPECT_TRUE(valid.ok()) << valid.status();
  auto model = core::DiffusionModel::Create(*valid, core::DDPMSchedulerConfig{}, torch::kCPU, seed);
  torch::NoGradGuard no_grad;
  model->module()->named_parameters()["conv_out.weight"].normal_(0.0, 0.1);
  model->module()->named_parameters()["class_embedding.weight"].normal_(0.0, 1.0);
  model->module()->eval();
  return model;
}

inline core::ErasureData ForgetClass(int64_t forget, int64_t override_class) {
  core::ErasureData data;
  data.family = core::ModelFamily::kDiffusion;
  data.generation.forget_classes = {forget};
  data.generation.override_class = override_class;
  return data;
}

}  // namespace unlearning::testing
