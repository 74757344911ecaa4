// IDX files (the MNIST / Fashion-MNIST format, optionally gzip-compressed) and the Fashion-MNIST
// data set as Debian's `dataset-fashion-mnist` installs it (/usr/share/datasets/fashion-mnist).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

namespace unlearning::core {

// Reads an IDX file of unsigned bytes (type 0x08), gzip-compressed or not (detected by its magic).
// Returns a uint8 tensor with the file's dimensions, e.g. [60000, 28, 28] or [60000].
// kNotFound if the file is missing; kInvalidArgument (naming the file and what is wrong) for a bad
// magic number, an element type other than uint8, or a size that does not match the header.
absl::StatusOr<torch::Tensor> ReadIdxU8(const std::string& path);

// Writes `tensor` (uint8, contiguous, 1 to 4 dims) as an uncompressed IDX file.
absl::Status WriteIdxU8(const std::string& path, const torch::Tensor& tensor);

// One split of a labelled image data set.
struct LabelledImages {
  torch::Tensor images;  // [N, 1, H, W] float32 in [0, 1]
  torch::Tensor labels;  // [N] int64
};

// Reads an image IDX file ([N, H, W] uint8) and its label file ([N] uint8) as LabelledImages.
// kInvalidArgument if their sizes disagree.
absl::StatusOr<LabelledImages> ReadLabelledIdx(const std::string& images_path,
                                               const std::string& labels_path);
// Writes `data` (pixels in [0, 1], rounded to uint8; labels 0..255) as two IDX files.
absl::Status WriteLabelledIdx(const LabelledImages& data, const std::string& images_path,
                              const std::string& labels_path);

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
// Fashion-MNIST class names, index = label.
const std::vector<std::string>& FashionMnistClassNames();

// Loads the "train" (60,000) or "test" (10,000) split from `dir` (files
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]). kNotFound names the package to install.
absl::StatusOr<LabelledImages> LoadFashionMnist(const std::string& split,
                                                const std::string& dir = kFashionMnistDir);

}  // namespace unlearning::core
