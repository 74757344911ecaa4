// DecodePng (the Classify RPC's image decoding) on arbitrary bytes: never crashes; refuses with
// kInvalidArgument; a decoded image is [C, H, W] float32 in [0, 1] with C = 1 or 3, and
// EncodePng -> DecodePng gives it back exactly (8-bit values survive the round trip).
#include <cstddef>
#include <cstdint>
#include <string>

#include <torch/types.h>

#include "core/io/png.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// PNGs written by EncodePng (gray and RGB). tests/fuzz/corpus/fuzz_png/ also holds hand-made
// files with the other colour types and filters (docs/fuzzing.md).
void WriteSeeds(const std::string& dir) {
  torch::manual_seed(5);
  const std::pair<const char*, torch::Tensor> images[] = {
      {"gray_4x3.png", torch::rand({1, 3, 4})},
      {"rgb_5x2.png", torch::rand({3, 2, 5})},
      {"gray_1x1.png", torch::zeros({1, 1, 1})},
      {"rgb_8x8_u8.png", torch::arange(0, 192, torch::kUInt8).reshape({3, 8, 8})},
  };
  for (const auto& [name, image] : images) {
    absl::StatusOr<std::string> png = unlearning::core::EncodePng(image);
    FUZZ_CHECK(png.ok());
    unlearning::fuzz::WriteSeed(dir, name, *png);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<torch::Tensor> image = unlearning::core::DecodePng(bytes);
  FUZZ_CHECK_OK_OR_INVALID(image.status());
  if (!image.ok()) return 0;
  FUZZ_CHECK(image->dim() == 3);
  FUZZ_CHECK(image->size(0) == 1 || image->size(0) == 3);
  FUZZ_CHECK(image->scalar_type() == torch::kFloat32);
  FUZZ_CHECK(image->min().item<float>() >= 0.0f && image->max().item<float>() <= 1.0f);

  absl::StatusOr<std::string> png = unlearning::core::EncodePng(*image);
  FUZZ_CHECK(png.ok());
  absl::StatusOr<torch::Tensor> back = unlearning::core::DecodePng(*png);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->sizes() == image->sizes());
  FUZZ_CHECK(torch::equal(*back, *image));
  return 0;
}
