#include "core/io/png.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/types.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

void PutU32(std::string* out, uint32_t v) {
  for (int shift : {24, 16, 8, 0}) out->push_back(static_cast<char>(v >> shift));
}

void PutChunk(std::string* out, const std::string& type, const std::string& data) {
  PutU32(out, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  out->append(body);
  PutU32(out, static_cast<uint32_t>(
                  crc32(0L, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

// An independent PNG writer for the decoder test: row y uses filter type y % 5 (None, Sub, Up,
// Average, Paeth), encoded with the PNG spec's formulas.
std::string HandMadePng(const std::vector<uint8_t>& pixels, int width, int height, int channels,
                        int color_type) {
  const int row = width * channels;
  std::string raw;
  for (int y = 0; y < height; ++y) {
    const int filter = y % 5;
    raw.push_back(static_cast<char>(filter));
    for (int i = 0; i < row; ++i) {
      const int x = pixels[y * row + i];
      const int a = i >= channels ? pixels[y * row + i - channels] : 0;
      const int b = y > 0 ? pixels[(y - 1) * row + i] : 0;
      const int c = (y > 0 && i >= channels) ? pixels[(y - 1) * row + i - channels] : 0;
      int pred = 0;
      if (filter == 1) pred = a;
      if (filter == 2) pred = b;
      if (filter == 3) pred = (a + b) / 2;
      if (filter == 4) {
        const int p = a + b - c;
        const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
      }
      raw.push_back(static_cast<char>((x - pred) & 0xff));
    }
  }
  uLongf len = compressBound(raw.size());
  std::string z(len, '\0');
  compress2(reinterpret_cast<Bytef*>(z.data()), &len, reinterpret_cast<const Bytef*>(raw.data()),
            raw.size(), 6);
  z.resize(len);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  PutU32(&ihdr, width);
  PutU32(&ihdr, height);
  ihdr += std::string{8, static_cast<char>(color_type), 0, 0, 0};
  PutChunk(&png, "IHDR", ihdr);
  PutChunk(&png, "tEXt", std::string("Comment\0test", 12));  // ancillary, skipped
  // IDAT split in two chunks.
  PutChunk(&png, "IDAT", z.substr(0, z.size() / 2));
  PutChunk(&png, "IDAT", z.substr(z.size() / 2));
  PutChunk(&png, "IEND", "");
  return png;
}

torch::Tensor RandomU8(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, shape, torch::kInt64).to(torch::kUInt8);
}

TEST(PngTest, RoundTripsGrayAndRgbExactly) {
  for (int64_t channels : {1, 3}) {
    torch::Tensor image = RandomU8({channels, 13, 7}, channels);
    UNL_ASSERT_OK_AND_ASSIGN(std::string png, EncodePng(image));
    UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor back, DecodePng(png));
    ASSERT_EQ(back.sizes(), image.sizes());
    EXPECT_EQ(back.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(back.mul(255.0).round().to(torch::kUInt8).equal(image)) << channels;
  }
}

TEST(PngTest, RoundTripsFloatImagesToWithinHalfAStep) {
  torch::manual_seed(3);
  torch::Tensor image = torch::rand({1, 28, 28});
  image[0][0][0] = -0.5;  // clamped to 0
  image[0][0][1] = 1.5;   // clamped to 1
  UNL_ASSERT_OK_AND_ASSIGN(std::string png, EncodePng(image));
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor back, DecodePng(png));
  EXPECT_LE((back - image.clamp(0, 1)).abs().max().item<float>(), 0.5f / 255.0f + 1e-6f);
}

TEST(PngTest, DecodesEveryFilterTypeAndDropsAlpha) {
  torch::Tensor rgba = RandomU8({11, 9, 4}, 5);  // [H, W, 4]
  std::vector<uint8_t> pixels(rgba.data_ptr<uint8_t>(), rgba.data_ptr<uint8_t>() + rgba.numel());
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor rgb, DecodePng(HandMadePng(pixels, 9, 11, 4, 6)));
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{3, 11, 9}));
  torch::Tensor expected = rgba.narrow(2, 0, 3).permute({2, 0, 1});
  EXPECT_TRUE(rgb.mul(255.0).round().to(torch::kUInt8).equal(expected));

  torch::Tensor gray = RandomU8({10, 6, 1}, 6);
  std::vector<uint8_t> g(gray.data_ptr<uint8_t>(), gray.data_ptr<uint8_t>() + gray.numel());
  UNL_ASSERT_OK_AND_ASSIGN(torch::Tensor g_back, DecodePng(HandMadePng(g, 6, 10, 1, 0)));
  EXPECT_TRUE(g_back.mul(255.0).round().to(torch::kUInt8).equal(gray.permute({2, 0, 1})));
}

TEST(PngTest, CorruptInputIsInvalidArgument) {
  UNL_ASSERT_OK_AND_ASSIGN(std::string png, EncodePng(RandomU8({1, 8, 8}, 1)));
  EXPECT_THAT(DecodePng("GIF89a...."),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signature")));
  EXPECT_THAT(DecodePng(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signature")));
  // A flipped byte inside IDAT data breaks its CRC.
  std::string flipped = png;
  flipped[8 + 25 + 10] ^= 0x40;
  EXPECT_THAT(DecodePng(flipped), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CRC")));
  for (size_t keep : {size_t{12}, size_t{40}, png.size() - 12, png.size() - 1}) {
    EXPECT_THAT(DecodePng(png.substr(0, keep)),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << "truncated to " << keep;
  }
  // Valid chunks around a bad zlib stream / wrong amount of data / bad filter byte.
  auto with_idat = [](const std::string& raw_or_z, bool compress) {
    std::string z = raw_or_z;
    if (compress) {
      uLongf len = compressBound(raw_or_z.size());
      z.assign(len, '\0');
      compress2(reinterpret_cast<Bytef*>(z.data()), &len,
                reinterpret_cast<const Bytef*>(raw_or_z.data()), raw_or_z.size(), 6);
      z.resize(len);
    }
    std::string out("\x89PNG\r\n\x1a\n", 8);
    std::string ihdr;
    PutU32(&ihdr, 2);
    PutU32(&ihdr, 2);
    ihdr += std::string{8, 0, 0, 0, 0};
    PutChunk(&out, "IHDR", ihdr);
    PutChunk(&out, "IDAT", z);
    PutChunk(&out, "IEND", "");
    return out;
  };
  EXPECT_THAT(DecodePng(with_idat("not zlib", false)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zlib")));
  EXPECT_THAT(DecodePng(with_idat(std::string("\0\1\2\0\3", 5), true)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 6")));
  EXPECT_THAT(DecodePng(with_idat(std::string("\0\1\2\7\3\4", 6), true)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad filter type 7")));
  UNL_EXPECT_OK(DecodePng(with_idat(std::string("\0\1\2\1\3\4", 6), true)));
}

// A few hundred bytes that declare an 8192 x 8192 RGBA image (the largest png.h accepts) but hold
// 100 bytes of data: refused for their size, and the decoder must not allocate the declared
// 268 MB first (found by fuzz_png). The child runs under an address-space limit 64 MiB above its
// current size, so an up-front allocation of the declared image fails and aborts it.
TEST(PngDeathTest, ASmallFileDeclaringAHugeImageIsRefusedWithoutAllocatingIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::string z(compressBound(100), '\0');
  uLongf len = z.size();
  const std::string raw(100, '\0');
  compress2(reinterpret_cast<Bytef*>(z.data()), &len, reinterpret_cast<const Bytef*>(raw.data()),
            raw.size(), 9);
  z.resize(len);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  PutU32(&ihdr, 8192);
  PutU32(&ihdr, 8192);
  ihdr += std::string{8, 6, 0, 0, 0};  // 8-bit RGBA
  PutChunk(&png, "IHDR", ihdr);
  PutChunk(&png, "IDAT", z);
  PutChunk(&png, "IEND", "");
  ASSERT_LT(png.size(), 200u);
  auto decode_under_limit = [&png]() {
    std::ifstream statm("/proc/self/statm");
    uint64_t pages = 0;
    statm >> pages;
    const rlim_t limit = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) + (64u << 20);
    const rlimit rl{limit, limit};
    if (::setrlimit(RLIMIT_AS, &rl) != 0) std::_Exit(2);
    absl::StatusOr<torch::Tensor> image = DecodePng(png);
    const bool refused = image.status().code() == absl::StatusCode::kInvalidArgument &&
                         absl::StrContains(image.status().message(), "expected 268443648");
    std::_Exit(refused ? 0 : 1);
  };
  EXPECT_EXIT(decode_under_limit(), ::testing::ExitedWithCode(0), "");
}

TEST(PngTest, RejectsUnsupportedFormats) {
  std::vector<uint8_t> px(4 * 4 * 3, 7);
  std::string png = HandMadePng(px, 4, 4, 3, 2);
  std::string sixteen_bit = png;
  sixteen_bit[8 + 8 + 8] = 16;  // bit depth byte of IHDR (CRC now wrong, so fix it)
  const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(sixteen_bit.data() + 12), 17);
  for (int i = 0; i < 4; ++i) sixteen_bit[29 + i] = static_cast<char>(crc >> (24 - 8 * i));
  EXPECT_THAT(DecodePng(sixteen_bit),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bit depth 16")));
  EXPECT_THAT(EncodePng(torch::zeros({2, 4, 4})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 or 3 channels")));
  EXPECT_THAT(EncodePng(torch::zeros({4, 4})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[C, H, W]")));
}

}  // namespace
}  // namespace unlearning::core
