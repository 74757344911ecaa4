#include "client/contact_sheet.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace unlearning::client {
namespace {

constexpr char kSignature[] = "\x89PNG\r\n\x1a\n";
constexpr int64_t kMaxPixels = int64_t{1} << 26;

uint32_t ReadU32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

void AppendU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void AppendChunk(std::string* out, const char* type, const std::string& data) {
  AppendU32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out->append(body);
  AppendU32(out, static_cast<uint32_t>(
                     crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

absl::Status Bad(const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("PNG: ", why));
}

int Paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

}  // namespace

absl::StatusOr<Pixels> DecodePngPixels(const std::string& png) {
  if (png.size() < 8 || png.compare(0, 8, std::string(kSignature, 8)) != 0) {
    return Bad("not a PNG (bad signature)");
  }
  size_t at = 8;
  int64_t width = 0, height = 0;
  int colour = -1;
  std::string idat;
  bool ended = false;
  while (!ended) {
    if (at + 12 > png.size()) return Bad("truncated chunk");
    const uint32_t length = ReadU32(png, at);
    if (length > png.size() - at - 12) return Bad("truncated chunk");
    const std::string type = png.substr(at + 4, 4);
    const uint32_t crc = ReadU32(png, at + 8 + length);
    if (crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), length + 4) != crc) {
      return Bad(absl::StrCat("CRC mismatch in chunk ", type));
    }
    const size_t data = at + 8;
    if (type == "IHDR") {
      if (length != 13) return Bad("IHDR length");
      width = ReadU32(png, data);
      height = ReadU32(png, data + 4);
      const int depth = static_cast<uint8_t>(png[data + 8]);
      colour = static_cast<uint8_t>(png[data + 9]);
      const int interlace = static_cast<uint8_t>(png[data + 12]);
      if (depth != 8) return Bad(absl::StrCat("bit depth ", depth, " (only 8 is supported)"));
      if (colour != 0 && colour != 2 && colour != 4 && colour != 6) {
        return Bad(absl::StrCat("colour type ", colour, " is not supported"));
      }
      if (interlace != 0) return Bad("interlaced images are not supported");
      if (width == 0 || height == 0 || width * height > kMaxPixels) return Bad("image size");
    } else if (type == "IDAT") {
      idat.append(png, data, length);
    } else if (type == "IEND") {
      ended = true;
    }
    at = data + length + 4;
  }
  if (colour < 0) return Bad("no IHDR");
  if (idat.empty()) return Bad("no IDAT");
  const int in_channels = colour == 0 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : 4;
  const size_t stride = static_cast<size_t>(width) * in_channels;
  std::string raw((stride + 1) * static_cast<size_t>(height), '\0');
  uLongf raw_size = raw.size();
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_size,
                 reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_size != raw.size()) {
    return Bad("corrupt zlib data or wrong amount of pixel data");
  }
  std::vector<uint8_t> cur(stride), prev(stride, 0);
  Pixels out;
  out.width = width;
  out.height = height;
  out.channels = in_channels >= 3 ? 3 : 1;
  out.pixels.resize(static_cast<size_t>(width * height) * out.channels);
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* line = reinterpret_cast<const uint8_t*>(raw.data()) + y * (stride + 1);
    const int filter = line[0];
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= static_cast<size_t>(in_channels) ? cur[i - in_channels] : 0;
      const int b = prev[i];
      const int c = i >= static_cast<size_t>(in_channels) ? prev[i - in_channels] : 0;
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
      cur[i] = static_cast<uint8_t>(line[1 + i] + pred);
    }
    for (int64_t x = 0; x < width; ++x) {
      for (int ch = 0; ch < out.channels; ++ch) {
        out.pixels[static_cast<size_t>((y * width + x) * out.channels + ch)] =
            cur[static_cast<size_t>(x * in_channels + ch)];
      }
    }
    std::swap(cur, prev);
  }
  return out;
}

absl::StatusOr<std::string> EncodePngPixels(const Pixels& image) {
  if (image.width <= 0 || image.height <= 0 || image.width * image.height > kMaxPixels) {
    return absl::InvalidArgumentError("PNG: empty or oversized image");
  }
  if (image.channels != 1 && image.channels != 3) {
    return absl::InvalidArgumentError("PNG: channels must be 1 or 3");
  }
  const size_t stride = static_cast<size_t>(image.width) * image.channels;
  if (image.pixels.size() != stride * static_cast<size_t>(image.height)) {
    return absl::InvalidArgumentError("PNG: pixel count does not match the size");
  }
  std::string raw;
  raw.reserve((stride + 1) * image.height);
  for (int64_t y = 0; y < image.height; ++y) {
    raw.push_back('\0');  // filter: None
    raw.append(reinterpret_cast<const char*>(image.pixels.data()) + y * stride, stride);
  }
  uLongf packed_size = compressBound(raw.size());
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 9) != Z_OK) {
    return absl::InternalError("PNG: zlib compression failed");
  }
  packed.resize(packed_size);
  std::string header;
  AppendU32(&header, static_cast<uint32_t>(image.width));
  AppendU32(&header, static_cast<uint32_t>(image.height));
  header += std::string{8, static_cast<char>(image.channels == 1 ? 0 : 2), 0, 0, 0};
  std::string out(kSignature, 8);
  AppendChunk(&out, "IHDR", header);
  AppendChunk(&out, "IDAT", packed);
  AppendChunk(&out, "IEND", "");
  return out;
}

int SheetColumns(int64_t n) { return static_cast<int>(std::clamp<int64_t>(n, 1, 8)); }

absl::StatusOr<Pixels> ContactSheet(const std::vector<Pixels>& images, int columns) {
  if (images.empty()) return absl::InvalidArgumentError("contact sheet: no images");
  if (columns < 1) return absl::InvalidArgumentError("contact sheet: columns must be >= 1");
  int64_t cell_w = 0, cell_h = 0;
  int channels = 1;
  for (const Pixels& im : images) {
    cell_w = std::max(cell_w, im.width);
    cell_h = std::max(cell_h, im.height);
    channels = std::max(channels, im.channels);
  }
  const int64_t n = static_cast<int64_t>(images.size());
  const int64_t cols = std::min<int64_t>(columns, n);
  const int64_t rows = (n + cols - 1) / cols;
  Pixels sheet;
  sheet.width = cols * cell_w + (cols - 1);
  sheet.height = rows * cell_h + (rows - 1);
  sheet.channels = channels;
  sheet.pixels.assign(static_cast<size_t>(sheet.width * sheet.height * channels), 128);
  for (int64_t i = 0; i < n; ++i) {
    const Pixels& im = images[static_cast<size_t>(i)];
    const int64_t x0 = (i % cols) * (cell_w + 1), y0 = (i / cols) * (cell_h + 1);
    for (int64_t y = 0; y < cell_h; ++y) {
      for (int64_t x = 0; x < cell_w; ++x) {
        for (int ch = 0; ch < channels; ++ch) {
          uint8_t v = 0;  // black padding for smaller images
          if (y < im.height && x < im.width) {
            v = im.pixels[static_cast<size_t>((y * im.width + x) * im.channels +
                                              (im.channels == 1 ? 0 : ch))];
          }
          sheet.pixels[static_cast<size_t>(((y0 + y) * sheet.width + x0 + x) * channels + ch)] = v;
        }
      }
    }
  }
  return sheet;
}

}  // namespace unlearning::client
