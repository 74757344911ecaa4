#include "core/data/idx.h"

#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::string TempPath(const std::string& name) {
  return (fs::path(::testing::TempDir()) / ("idx_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

torch::Tensor Sample() {
  return torch::arange(0, 2 * 3 * 5, torch::kInt64)
      .remainder(256)
      .to(torch::kUInt8)
      .view({2, 3, 5});
}

TEST(IdxTest, WriteThenReadRoundTrips) {
  const std::string path = TempPath("plain");
  ASSERT_THAT(WriteIdxU8(path, Sample()), ::unlearning::testing::IsOk());
  const std::string bytes = ReadBytes(path);
  ASSERT_EQ(bytes.size(), 4u + 3u * 4u + 30u);
  EXPECT_EQ(bytes.substr(0, 4), std::string("\0\0\x08\x03", 4));
  EXPECT_EQ(bytes.substr(4, 4), std::string("\0\0\0\x02", 4));  // big-endian dims
  absl::StatusOr<torch::Tensor> back = ReadIdxU8(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(*back, Sample()));
  fs::remove(path);
}

TEST(IdxTest, ReadsGzippedFiles) {
  const std::string plain = TempPath("to_gzip");
  ASSERT_TRUE(WriteIdxU8(plain, Sample()).ok());
  const std::string bytes = ReadBytes(plain);
  const std::string gz = TempPath("file.gz");
  gzFile f = gzopen(gz.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
  EXPECT_NE(ReadBytes(gz), bytes);  // really compressed
  absl::StatusOr<torch::Tensor> back = ReadIdxU8(gz);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(*back, Sample()));
  fs::remove(plain);
  fs::remove(gz);
}

TEST(IdxTest, CorruptHeadersAreInvalidArgument) {
  const std::string path = TempPath("corrupt");
  ASSERT_TRUE(WriteIdxU8(path, Sample()).ok());
  const std::string good = ReadBytes(path);

  std::string bad_magic = good;
  bad_magic[0] = '\x01';
  WriteBytes(path, bad_magic);
  EXPECT_THAT(ReadIdxU8(path).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad magic")));

  std::string bad_type = good;
  bad_type[2] = '\x0D';  // float32 elements
  WriteBytes(path, bad_type);
  EXPECT_THAT(ReadIdxU8(path).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("element type")));

  std::string bad_dims = good;
  bad_dims[7] = '\x09';  // first dimension 9 instead of 2
  WriteBytes(path, bad_dims);
  EXPECT_THAT(ReadIdxU8(path).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header says")));

  WriteBytes(path, good.substr(0, good.size() - 1));  // truncated data
  EXPECT_THAT(ReadIdxU8(path).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
  fs::remove(path);
}

TEST(IdxTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadIdxU8(TempPath("absent")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
  EXPECT_THAT(LoadFashionMnist("train", TempPath("nodir")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("dataset-fashion-mnist")));
  EXPECT_THAT(LoadFashionMnist("validation").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validation")));
}

TEST(IdxTest, WriteRejectsNonUint8) {
  EXPECT_THAT(WriteIdxU8(TempPath("f32"), torch::zeros({2, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uint8")));
}

TEST(FashionMnistTest, LoadsTheTestSplit) {
  absl::StatusOr<LabelledImages> test = LoadFashionMnist("test");
  if (absl::IsNotFound(test.status())) GTEST_SKIP() << test.status();
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(test->labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_GE(test->images.min().item<float>(), 0.0f);
  EXPECT_LE(test->images.max().item<float>(), 1.0f);
  // Balanced: 1,000 images per class.
  EXPECT_TRUE(torch::equal(at::bincount(test->labels), torch::full({10}, 1000, torch::kInt64)));
  EXPECT_EQ(FashionMnistClassNames().size(), 10u);
}

}  // namespace
}  // namespace unlearning::core
