// The contact sheet of `unlearnctl sample --out DIR`: the streamed images laid out in one PNG
// grid, in the order they were requested (row-major: left to right, then top to bottom), with a
// 1-pixel grey gutter between cells. The client links no LibTorch, so it carries its own small
// PNG reader and writer (zlib): 8-bit, non-interlaced grey, grey+alpha, RGB or RGBA in (alpha
// dropped), 8-bit grey or RGB out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace unlearning::client {

// An 8-bit image, channel-interleaved: pixels[(y * width + x) * channels + c].
struct Pixels {
  int64_t width = 0;
  int64_t height = 0;
  int channels = 1;  // 1 (grey) or 3 (RGB)
  std::vector<uint8_t> pixels;
};

// Decodes an 8-bit non-interlaced PNG (colour types 0, 2, 4, 6; alpha dropped). kInvalidArgument
// saying what is wrong for anything else (bad signature, CRC, truncated chunk, bad filter, wrong
// data length, unsupported depth/colour type/interlace, over 2^26 pixels).
absl::StatusOr<Pixels> DecodePngPixels(const std::string& png);

// Encodes `image` as an 8-bit PNG (colour type 0 or 2, filter "None", zlib level 9).
// kInvalidArgument for an empty image, channels not in {1, 3} or a pixel count mismatch.
absl::StatusOr<std::string> EncodePngPixels(const Pixels& image);

// Lays `images` out in a grid of `columns` cells per row (the last row may be short), each cell
// as large as the largest image (smaller ones sit in its top-left corner on black), with 1-pixel
// grey (128) gutters. Grey images are promoted to RGB when any image is RGB.
// kInvalidArgument for no images or columns < 1.
absl::StatusOr<Pixels> ContactSheet(const std::vector<Pixels>& images, int columns);

// Columns of the sheet for `n` images: at most 8, and no more than n.
int SheetColumns(int64_t n);

}  // namespace unlearning::client
