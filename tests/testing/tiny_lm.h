// A tiny randomly initialised byte-level Llama for unit tests (2 layers, 4/2 heads, 128
// positions): fast enough to train for a few steps inside a test.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/types.h>

#include "core/models/causal_lm.h"
#include "core/text/tokenizer.h"

namespace unlearning::testing {

inline std::unique_ptr<core::CausalLm> TinyCausalLm(uint64_t seed, int64_t hidden_size = 32) {
  core::LlamaConfig config;
  config.hidden_size = hidden_size;
  config.intermediate_size = 2 * hidden_size;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 128;
  return core::CausalLm::Create(config, std::make_unique<core::ByteTokenizer>(), torch::kCPU, seed);
}

}  // namespace unlearning::testing
