// A minimal PNG codec for the image families: 8-bit grayscale / RGB (and, on decode, their alpha
// variants, whose alpha is dropped), non-interlaced. Used to write samples and to accept
// uploaded images (the Classify RPC takes PNG bytes). Every length, CRC and filter byte is
// checked: malformed input is kInvalidArgument, never a crash.
//
// Example:
//   UNL_ASSIGN_OR_RETURN(std::string png, EncodePng(images[0]));   // [C, H, W] in [0, 1]
//   UNL_ASSIGN_OR_RETURN(torch::Tensor back, DecodePng(png));       // [C, H, W] float32
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/types.h>

namespace unlearning::core {

// Encodes one image as an 8-bit PNG (colour type 0 for C = 1, 2 for C = 3), each scanline with the
// "Up" filter, zlib level 9.
//   image: [C, H, W] float (any floating dtype, any device), values clamped to [0, 1] and
//          rounded to 0..255; or [C, H, W] uint8 used as is.
// kInvalidArgument for another rank, C not in {1, 3}, an empty image or H/W > 2^24.
absl::StatusOr<std::string> EncodePng(const torch::Tensor& image);

// Decodes an 8-bit, non-interlaced PNG with colour type 0 (gray), 2 (RGB), 4 (gray + alpha) or
// 6 (RGBA); alpha is dropped. Returns [C, H, W] float32 in [0, 1] on the CPU, C = 1 or 3.
// kInvalidArgument (saying what is wrong) for a bad signature, truncated or oversized chunk, CRC
// mismatch, missing IHDR/IDAT/IEND, unsupported bit depth / colour type / interlace, corrupt zlib
// data, a bad filter type or a wrong amount of pixel data. Images over 2^26 pixels are refused.
absl::StatusOr<torch::Tensor> DecodePng(const std::string& bytes);

// EncodePng and write to `path` (kInternal if the file cannot be written).
absl::Status WritePngFile(const std::string& path, const torch::Tensor& image);

}  // namespace unlearning::core
