// The data of one erasure request, one payload per model family. Produced by the server from the
// request (server/proto_convert.h) or by the offline tool from files; consumed by the methods and
// the verifiers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/common/family.h"
#include "core/data/text_example.h"

namespace unlearning::core {

// Class-forgetting payload (image classifiers).
struct ClassErasure {
  std::vector<int64_t> forget_classes;  // class ids to forget; at least one
  // Optional labelled samples of the forget classes: [N, C, H, W] float32 in [0, 1] and [N] int64
  // (undefined tensors when absent; methods then use the model's own replay data).
  torch::Tensor forget_images;
  torch::Tensor forget_labels;
  // Optional replay set of retained classes, same layout.
  torch::Tensor replay_images;
  torch::Tensor replay_labels;
  // Replay samples per retained class a method may draw from the model's training data
  // (0 = the method's default).
  int64_t replay_per_class = 0;
};

// Class-conditional generator payload (diffusion models).
struct GenerationErasure {
  std::vector<int64_t> forget_classes;  // class labels whose samples must disappear; at least one
  int64_t override_class = -1;          // label the forget classes should produce; -1 = any other
};

// The data of one erasure request: one payload per model family. `family` says which payload is
// set: the text fields for causal LMs, `classes` for image classifiers, `generation` for
// diffusion models.
struct ErasureData {
  ModelFamily family = ModelFamily::kCausalLm;
  // Causal LM payload.
  std::vector<TextExample> forget;
  std::vector<TextExample> retain;     // may be empty
  std::vector<std::string> templates;  // template answers (FLAT); may be empty
  ClassErasure classes;
  GenerationErasure generation;
};

}  // namespace unlearning::core
