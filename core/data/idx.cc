#include "core/data/idx.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace unlearning::core {
namespace {

// Reads the whole file, inflating it when it starts with the gzip magic 1f 8b.
absl::StatusOr<std::string> ReadMaybeGzip(const std::string& path) {
  if (!std::filesystem::exists(path)) return absl::NotFoundError(absl::StrCat("no file ", path));
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files unchanged too
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string out;
  char buffer[1 << 16];
  int n = 0;
  while ((n = gzread(f, buffer, sizeof(buffer))) > 0) out.append(buffer, static_cast<size_t>(n));
  int err = 0;
  const char* message = gzerror(f, &err);
  gzclose(f);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": corrupt gzip data (", message, ")"));
  }
  return out;
}

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

absl::StatusOr<torch::Tensor> ReadIdxU8(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadMaybeGzip(path);
  if (!bytes.ok()) return bytes.status();
  const auto* p = reinterpret_cast<const unsigned char*>(bytes->data());
  if (bytes->size() < 4 || p[0] != 0 || p[1] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not an IDX file (bad magic)"));
  }
  if (p[2] != 0x08) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": element type 0x", absl::Hex(p[2]),
                                                   " is not supported (only 0x08, uint8)"));
  }
  const int ndims = p[3];
  if (ndims < 1 || ndims > 4 || bytes->size() < 4u + 4u * ndims) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bad dimension count ", ndims));
  }
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    shape.push_back(BigEndian32(p + 4 + 4 * d));
    count *= shape.back();
  }
  const size_t header = 4u + 4u * static_cast<size_t>(ndims);
  if (bytes->size() - header != static_cast<size_t>(count)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header says ", count, " elements, file holds ", bytes->size() - header));
  }
  torch::Tensor out = torch::empty(shape, torch::kUInt8);
  std::memcpy(out.data_ptr<uint8_t>(), p + header, static_cast<size_t>(count));
  return out;
}

absl::Status WriteIdxU8(const std::string& path, const torch::Tensor& tensor) {
  if (tensor.scalar_type() != torch::kUInt8 || tensor.dim() < 1 || tensor.dim() > 4) {
    return absl::InvalidArgumentError("WriteIdxU8 takes a uint8 tensor of 1 to 4 dimensions");
  }
  const torch::Tensor t = tensor.contiguous().cpu();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  const unsigned char magic[4] = {0, 0, 0x08, static_cast<unsigned char>(t.dim())};
  out.write(reinterpret_cast<const char*>(magic), 4);
  for (int64_t d = 0; d < t.dim(); ++d) {
    const auto v = static_cast<uint32_t>(t.size(d));
    const unsigned char be[4] = {static_cast<unsigned char>(v >> 24),
                                 static_cast<unsigned char>(v >> 16),
                                 static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
  out.write(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), t.numel());
  if (!out) return absl::InternalError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

absl::StatusOr<LabelledImages> ReadLabelledIdx(const std::string& images_path,
                                               const std::string& labels_path) {
  absl::StatusOr<torch::Tensor> images = ReadIdxU8(images_path);
  if (!images.ok()) return images.status();
  absl::StatusOr<torch::Tensor> labels = ReadIdxU8(labels_path);
  if (!labels.ok()) return labels.status();
  if (images->dim() != 3 || labels->dim() != 1 || images->size(0) != labels->size(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, " and ", labels_path, " do not form an [N, H, W] / [N] pair"));
  }
  LabelledImages out;
  out.images = images->to(torch::kFloat32).div_(255.0).unsqueeze(1);
  out.labels = labels->to(torch::kInt64);
  return out;
}

absl::Status WriteLabelledIdx(const LabelledImages& data, const std::string& images_path,
                              const std::string& labels_path) {
  if (!data.images.defined() || data.images.dim() != 4 || data.images.size(1) != 1) {
    return absl::InvalidArgumentError("WriteLabelledIdx takes [N, 1, H, W] images");
  }
  const torch::Tensor pixels =
      data.images.squeeze(1).mul(255.0).round().clamp(0, 255).to(torch::kUInt8);
  absl::Status s = WriteIdxU8(images_path, pixels);
  if (!s.ok()) return s;
  return WriteIdxU8(labels_path, data.labels.clamp(0, 255).to(torch::kUInt8));
}

const std::vector<std::string>& FashionMnistClassNames() {
  static const auto* names =
      new std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return *names;
}

absl::StatusOr<LabelledImages> LoadFashionMnist(const std::string& split, const std::string& dir) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError(
        absl::StrCat("Fashion-MNIST split '", split, "' does not exist (train, test)"));
  }
  const std::string prefix = split == "train" ? "train" : "t10k";
  auto find = [&](const std::string& stem) -> std::string {
    const std::string plain = absl::StrCat(dir, "/", prefix, "-", stem, "-ubyte");
    if (std::filesystem::exists(plain)) return plain;
    return plain + ".gz";
  };
  const std::string images_path = find("images-idx3");
  const std::string labels_path = find("labels-idx1");
  if (!std::filesystem::exists(images_path) || !std::filesystem::exists(labels_path)) {
    return absl::NotFoundError(absl::StrCat("Fashion-MNIST ", split, " split not found in ", dir,
                                            " (install the Debian package dataset-fashion-mnist)"));
  }
  absl::StatusOr<LabelledImages> read = ReadLabelledIdx(images_path, labels_path);
  if (!read.ok()) return read.status();
  LabelledImages out = *std::move(read);
  if (out.labels.max().item<int64_t>() >= 10) {
    return absl::InvalidArgumentError(absl::StrCat(labels_path, " has a label above 9"));
  }
  return out;
}

}  // namespace unlearning::core
