// PNG (ISO/IEC 15948, W3C PNG 2nd ed.) subset: signature, IHDR/IDAT/IEND chunks with CRC-32,
// zlib-compressed scanlines with per-row filters 0-4 (§9, Paeth predictor §9.4).
#include "core/io/png.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr int64_t kMaxPixels = int64_t{1} << 26;
constexpr int64_t kMaxSide = int64_t{1} << 24;

void PutU32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

uint32_t GetU32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void PutChunk(std::string* out, const char type[5], const std::string& data) {
  PutU32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out->size();
  out->append(type, 4);
  out->append(data);
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out->data() + start),
                    static_cast<uInt>(out->size() - start));
  PutU32(out, static_cast<uint32_t>(crc));
}

int Paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a);
  const int pb = std::abs(p - b);
  const int pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("png: ", what));
}

// Inflates a zlib stream, refusing more than `limit` bytes of output. The output buffer grows with
// what zlib really produces (from 64 KiB, doubling), so a few hundred bytes that declare a large
// image cost kilobytes, not the `limit` the header asks for (found by fuzz_png: ~285 MB before).
absl::StatusOr<std::string> Inflate(const std::string& in, size_t limit) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return absl::InternalError("png: inflateInit failed");
  std::string out(std::min<size_t>(limit, size_t{1} << 16), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  bool too_large = false;
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + zs.total_out);
    zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
    rc = inflate(&zs, Z_FINISH);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || zs.avail_out != 0) break;  // ended, failed or starved
    // The output is full and the stream goes on: grow, unless the image cannot take more.
    if (out.size() == limit) {
      too_large = true;
      break;
    }
    out.resize(std::min(limit, out.size() * 2));
  }
  const size_t produced = zs.total_out;
  inflateEnd(&zs);
  if (too_large) {
    return Bad(absl::StrCat("image data larger than the expected ", limit, " bytes"));
  }
  if (rc != Z_STREAM_END) {
    return Bad(absl::StrCat("corrupt zlib data in IDAT (zlib error ", rc, ")"));
  }
  out.resize(produced);
  return out;
}

}  // namespace

absl::StatusOr<std::string> EncodePng(const torch::Tensor& image) {
  if (!image.defined() || image.dim() != 3) {
    return Bad("EncodePng expects a [C, H, W] tensor");
  }
  const int64_t channels = image.size(0);
  const int64_t height = image.size(1);
  const int64_t width = image.size(2);
  if (channels != 1 && channels != 3) {
    return Bad(absl::StrCat("EncodePng supports 1 or 3 channels, got ", channels));
  }
  if (height < 1 || width < 1 || height > kMaxSide || width > kMaxSide) {
    return Bad(absl::StrCat("image size ", height, "x", width, " outside [1, ", kMaxSide, "]"));
  }
  torch::Tensor hwc;  // [H, W, C] uint8 CPU contiguous
  UNL_RETURN_IF_ERROR(TorchCall("png encode", [&] {
    torch::Tensor u8 = image.scalar_type() == torch::kUInt8 ? image.to(torch::kCPU)
                                                            : image.to(torch::kCPU, torch::kFloat32)
                                                                  .clamp(0.0, 1.0)
                                                                  .mul(255.0)
                                                                  .round()
                                                                  .to(torch::kUInt8);
    hwc = u8.permute({1, 2, 0}).contiguous();
  }));
  const size_t row = static_cast<size_t>(width * channels);
  const auto* px = hwc.data_ptr<uint8_t>();
  std::string raw;
  raw.reserve((row + 1) * static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* cur = px + y * row;
    if (y == 0) {
      raw.push_back(0);  // None
      raw.append(reinterpret_cast<const char*>(cur), row);
      continue;
    }
    raw.push_back(2);  // Up
    const uint8_t* up = cur - row;
    for (size_t i = 0; i < row; ++i) raw.push_back(static_cast<char>(cur[i] - up[i]));
  }
  uLongf bound = compressBound(static_cast<uLong>(raw.size()));
  std::string compressed(bound, '\0');
  if (compress2(reinterpret_cast<Bytef*>(compressed.data()), &bound,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                9) != Z_OK) {
    return absl::InternalError("png: zlib compression failed");
  }
  compressed.resize(bound);

  std::string out(reinterpret_cast<const char*>(kSignature), sizeof(kSignature));
  std::string ihdr;
  PutU32(&ihdr, static_cast<uint32_t>(width));
  PutU32(&ihdr, static_cast<uint32_t>(height));
  ihdr.push_back(8);                      // bit depth
  ihdr.push_back(channels == 1 ? 0 : 2);  // colour type
  ihdr.append(std::string(3, '\0'));      // compression, filter, interlace
  PutChunk(&out, "IHDR", ihdr);
  PutChunk(&out, "IDAT", compressed);
  PutChunk(&out, "IEND", "");
  return out;
}

absl::StatusOr<torch::Tensor> DecodePng(const std::string& bytes) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  if (size < sizeof(kSignature) || std::memcmp(data, kSignature, sizeof(kSignature)) != 0) {
    return Bad("not a PNG file (bad signature)");
  }
  size_t pos = sizeof(kSignature);
  int64_t width = 0;
  int64_t height = 0;
  int color_type = -1;
  std::string idat;
  bool seen_ihdr = false;
  bool seen_iend = false;
  while (pos < size && !seen_iend) {
    if (size - pos < 12) return Bad(absl::StrCat("truncated chunk header at byte ", pos));
    const uint32_t length = GetU32(data + pos);
    const std::string type(reinterpret_cast<const char*>(data + pos + 4), 4);
    if (length > size - pos - 12) {
      return Bad(absl::StrCat("chunk ", type, " of ", length, " bytes overruns the file"));
    }
    const unsigned char* body = data + pos + 8;
    const uint32_t stored_crc = GetU32(body + length);
    const uint32_t crc =
        static_cast<uint32_t>(crc32(0L, data + pos + 4, static_cast<uInt>(length + 4)));
    if (crc != stored_crc) return Bad(absl::StrCat("CRC mismatch in chunk ", type));
    if (!seen_ihdr && type != "IHDR") return Bad("the first chunk is not IHDR");
    if (type == "IHDR") {
      if (seen_ihdr || length != 13) return Bad("bad IHDR chunk");
      seen_ihdr = true;
      width = GetU32(body);
      height = GetU32(body + 4);
      const int bit_depth = body[8];
      color_type = body[9];
      if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide ||
          width * height > kMaxPixels) {
        return Bad(absl::StrCat("unsupported image size ", width, "x", height));
      }
      if (bit_depth != 8)
        return Bad(absl::StrCat("bit depth ", bit_depth, " is not supported (8)"));
      if (color_type != 0 && color_type != 2 && color_type != 4 && color_type != 6) {
        return Bad(absl::StrCat("colour type ", color_type,
                                " is not supported (0 gray, 2 RGB, 4 gray+alpha, 6 RGBA)"));
      }
      if (body[10] != 0 || body[11] != 0) return Bad("unknown compression or filter method");
      if (body[12] != 0) return Bad("interlaced images are not supported");
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(body), length);
    } else if (type == "IEND") {
      seen_iend = true;
    } else if (type == "PLTE") {
      return Bad("palette images are not supported");
    }
    // Other ancillary chunks are skipped.
    pos += 12 + static_cast<size_t>(length);
  }
  if (!seen_iend) return Bad("missing IEND chunk (truncated file)");
  if (idat.empty()) return Bad("no IDAT chunk");
  const int64_t in_channels = color_type == 0 ? 1 : color_type == 2 ? 3 : color_type == 4 ? 2 : 4;
  const size_t row = static_cast<size_t>(width * in_channels);
  const size_t expected = (row + 1) * static_cast<size_t>(height);
  UNL_ASSIGN_OR_RETURN(std::string raw, Inflate(idat, expected));
  if (raw.size() != expected) {
    return Bad(absl::StrCat("image data has ", raw.size(), " bytes, expected ", expected));
  }
  std::vector<uint8_t> pixels(row * static_cast<size_t>(height));
  const size_t bpp = static_cast<size_t>(in_channels);
  for (int64_t y = 0; y < height; ++y) {
    const auto filter = static_cast<uint8_t>(raw[static_cast<size_t>(y) * (row + 1)]);
    const auto* src = reinterpret_cast<const uint8_t*>(raw.data() + y * (row + 1) + 1);
    uint8_t* cur = pixels.data() + y * row;
    const uint8_t* up = y > 0 ? cur - row : nullptr;
    for (size_t i = 0; i < row; ++i) {
      const int a = i >= bpp ? cur[i - bpp] : 0;
      const int b = up != nullptr ? up[i] : 0;
      const int c = (up != nullptr && i >= bpp) ? up[i - bpp] : 0;
      int pred = 0;
      switch (filter) {
        case 0:
          pred = 0;
          break;
        case 1:
          pred = a;
          break;
        case 2:
          pred = b;
          break;
        case 3:
          pred = (a + b) / 2;
          break;
        case 4:
          pred = Paeth(a, b, c);
          break;
        default:
          return Bad(absl::StrCat("bad filter type ", filter, " in row ", y));
      }
      cur[i] = static_cast<uint8_t>(src[i] + pred);
    }
  }
  const int64_t out_channels = in_channels >= 3 ? 3 : 1;
  return TorchCall("png decode", [&]() -> absl::StatusOr<torch::Tensor> {
    torch::Tensor hwc =
        torch::from_blob(pixels.data(), {height, width, in_channels}, torch::kUInt8);
    return hwc.narrow(2, 0, out_channels)
        .permute({2, 0, 1})
        .to(torch::kFloat32)
        .div(255.0)
        .contiguous();
  });
}

absl::Status WritePngFile(const std::string& path, const torch::Tensor& image) {
  UNL_ASSIGN_OR_RETURN(std::string png, EncodePng(image));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(png.data(), static_cast<std::streamsize>(png.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace unlearning::core
