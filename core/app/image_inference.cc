#include "core/app/image_inference.h"

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

std::string Geometry(const ImageSpec& spec) {
  return absl::StrCat(spec.channels, "x", spec.height, "x", spec.width);
}

}  // namespace

absl::StatusOr<torch::Tensor> FitImage(const torch::Tensor& image, const ImageSpec& spec) {
  torch::Tensor x = image.dim() == 2 ? image.unsqueeze(0) : image;
  if (x.dim() != 3 || x.size(1) != spec.height || x.size(2) != spec.width) {
    std::string got = "not 2-D or 3-D";
    if (x.dim() == 3) got = absl::StrCat(x.size(0), "x", x.size(1), "x", x.size(2));
    return absl::InvalidArgumentError(absl::StrCat("image is ", got, "; the model takes ",
                                                   Geometry(spec), " (channels x height x width)"));
  }
  if (x.size(0) == spec.channels) return x.to(torch::kFloat32);
  if (x.size(0) == 3 && spec.channels == 1) return x.to(torch::kFloat32).mean(0, true);
  if (x.size(0) == 1 && spec.channels == 3) return x.to(torch::kFloat32).repeat({3, 1, 1});
  return absl::InvalidArgumentError(
      absl::StrCat("image has ", x.size(0), " channels; the model takes ", spec.channels));
}

absl::StatusOr<std::vector<std::vector<ClassPrediction>>> ClassifyImages(
    const ImageClassifier& classifier, const torch::Tensor& images, int64_t top_k) {
  const ImageSpec spec = classifier.image_spec();
  const int64_t classes = classifier.num_classes();
  if (top_k < 1 || top_k > classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be in [1, ", classes, "], got ", top_k));
  }
  if (images.dim() != 4 || images.size(1) != spec.channels || images.size(2) != spec.height ||
      images.size(3) != spec.width) {
    return absl::InvalidArgumentError(absl::StrCat("images must be [B, ", spec.channels, ", ",
                                                   spec.height, ", ", spec.width, "]"));
  }
  if (images.size(0) == 0) return std::vector<std::vector<ClassPrediction>>{};
  {
    c10::InferenceMode guard;
    const torch::Tensor f = images.to(torch::kFloat32);
    if (f.isnan().any().item<bool>() || f.min().item<float>() < 0.0f ||
        f.max().item<float>() > 1.0f) {
      return absl::InvalidArgumentError(
          "pixel values must be in [0, 1] (float32) or 0..255 (uint8)");
    }
  }
  return TorchCall(
      "classifying", [&]() -> absl::StatusOr<std::vector<std::vector<ClassPrediction>>> {
        c10::InferenceMode guard;
        const torch::Tensor probs =
            classifier.ClassifyLogits(images.to(torch::kFloat32)).softmax(1).cpu();
        const auto [values, indices] = probs.topk(top_k, 1);
        std::vector<std::vector<ClassPrediction>> out(static_cast<size_t>(images.size(0)));
        for (int64_t i = 0; i < images.size(0); ++i) {
          for (int64_t k = 0; k < top_k; ++k) {
            const int64_t id = indices[i][k].item<int64_t>();
            out[static_cast<size_t>(i)].push_back(
                {id, classifier.class_name(id), values[i][k].item<double>()});
          }
        }
        return out;
      });
}

}  // namespace unlearning::core
