// Image inference as free functions over the capabilities (capabilities.h), so that the gRPC
// services only convert: classify a batch with top-k labels, and fit a decoded image to the
// geometry a model takes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/models/capabilities.h"

namespace unlearning::core {

struct ClassPrediction {
  int64_t class_id = 0;
  std::string label;
  double probability = 0.0;
};

// Fits one image [C, H, W] (or [H, W]) float32 in [0, 1] to `spec`: 3 -> 1 channels by the mean,
// 1 -> 3 by repetition. kInvalidArgument (naming the expected geometry) for another height or
// width, or a channel count that cannot be converted.
absl::StatusOr<torch::Tensor> FitImage(const torch::Tensor& image, const ImageSpec& spec);

// The `top_k` most probable classes of every image, most probable first.
//   images: [B, C, H, W] float32 in [0, 1] of the classifier's image_spec().
// kInvalidArgument for a wrong geometry, values outside [0, 1] or NaN, or top_k outside
// 1..num_classes().
absl::StatusOr<std::vector<std::vector<ClassPrediction>>> ClassifyImages(
    const ImageClassifier& classifier, const torch::Tensor& images, int64_t top_k);

}  // namespace unlearning::core
