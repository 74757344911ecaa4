#include "core/io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

std::string TempPath(const std::string& name) {
  static int counter = 0;
  return (std::filesystem::path(::testing::TempDir()) /
          (std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name))
      .string();
}

// A file with the given JSON header text and data section.
std::string MakeFile(const std::string& header, const std::string& data = "") {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

bool BitwiseEqual(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  if (a.numel() == 0) return true;
  return std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(),
                     a.numel() * a.element_size()) == 0;
}

std::map<std::string, torch::Tensor> SampleTensors() {
  torch::manual_seed(3);
  std::map<std::string, torch::Tensor> t;
  t["a.f32"] = torch::randn({3, 4});
  t["b.bf16"] = torch::randn({5}).to(torch::kBFloat16);
  t["c.f16"] = torch::randn({2, 2, 2}).to(torch::kFloat16);
  t["d.i64"] = torch::tensor(std::vector<int64_t>{-1, 0, 1LL << 40});
  t["e.f64"] = torch::randn({2}, torch::kFloat64);
  t["f.bool"] = torch::tensor(std::vector<int64_t>{1, 0, 1}).to(torch::kBool);
  t["g.u8"] = torch::arange(0, 7, torch::kUInt8);
  t["h.scalar"] = torch::tensor(2.5f);
  t["i.empty"] = torch::zeros({0, 3});
  t["j.i32"] = torch::arange(-3, 3, torch::kInt32);
  t["k.i16"] = torch::arange(-3, 3, torch::kInt16);
  t["l.i8"] = torch::arange(-3, 3, torch::kInt8);
  // A non-contiguous view is written contiguously.
  t["m.transposed"] = torch::randn({3, 2}).t();
  return t;
}

TEST(SafetensorsTest, RoundTripThroughFileKeepsDtypesValuesAndMetadata) {
  const auto tensors = SampleTensors();
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "héllo"}};
  const std::string path = TempPath("round_trip.safetensors");
  UNL_ASSERT_OK(WriteSafetensors(path, tensors, metadata));
  UNL_ASSERT_OK_AND_ASSIGN(SafetensorsFile file, ReadSafetensors(path));
  EXPECT_EQ(file.metadata, metadata);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(file.tensors.count(name)) << name;
    const torch::Tensor& got = file.tensors.at(name);
    EXPECT_TRUE(got.is_contiguous()) << name;
    EXPECT_TRUE(BitwiseEqual(got, t.contiguous())) << name;
  }
  std::filesystem::remove(path);
}

TEST(SafetensorsTest, SerializedLayoutIsAlignedAndParsesBack) {
  UNL_ASSERT_OK_AND_ASSIGN(std::string bytes, SerializeSafetensors(SampleTensors()));
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  UNL_ASSERT_OK_AND_ASSIGN(SafetensorsFile file, ParseSafetensors(bytes));
  EXPECT_TRUE(file.metadata.empty());
  EXPECT_EQ(file.tensors.size(), SampleTensors().size());
}

TEST(SafetensorsTest, ParsesHandWrittenFile) {
  const float values[2] = {1.5f, -2.0f};
  const std::string data(reinterpret_cast<const char*>(values), sizeof(values));
  UNL_ASSERT_OK_AND_ASSIGN(
      SafetensorsFile file,
      ParseSafetensors(MakeFile(
          R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )",
          data)));
  ASSERT_TRUE(file.tensors.count("x"));
  EXPECT_FLOAT_EQ(file.tensors["x"][0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(file.tensors["x"][1].item<float>(), -2.0f);
  EXPECT_EQ(file.metadata["k"], "v");
}

TEST(SafetensorsTest, MalformedInputsAreInvalidArgument) {
  const std::string eight(8, 'x');
  struct Case {
    std::string name;
    std::string bytes;
  };
  uint64_t huge = 1ULL << 62;
  const std::vector<Case> cases = {
      {"empty", ""},
      {"short length", std::string(5, '\0')},
      {"header beyond file", MakeFile("{}").substr(0, 8) + "{"},
      {"huge header length", std::string(reinterpret_cast<const char*>(&huge), 8) + "{}"},
      {"not json", MakeFile("{not json")},
      {"json array", MakeFile("[1,2]")},
      {"entry not object", MakeFile(R"({"x":3})")},
      {"missing dtype", MakeFile(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", eight.substr(4))},
      {"unknown dtype", MakeFile(R"({"x":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", "a")},
      {"negative dim",
       MakeFile(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", eight.substr(4))},
      {"float dim",
       MakeFile(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", eight.substr(4))},
      {"shape overflow", MakeFile(R"({"x":{"dtype":"F32","shape":[4611686018427387904,
           4611686018427387904],"data_offsets":[0,4]}})",
                                  eight.substr(4))},
      {"offsets out of range",
       MakeFile(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight.substr(4))},
      {"begin after end",
       MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", eight)},
      {"negative offset",
       MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", eight.substr(4))},
      {"one offset", MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", eight)},
      {"size mismatch",
       MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", eight)},
      {"overlap", MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                               "y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                           eight)},
      {"gap", MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)},
      {"trailing bytes",
       MakeFile(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight)},
      {"metadata not strings", MakeFile(R"({"__metadata__":{"k":1}})")},
      {"metadata not object", MakeFile(R"({"__metadata__":[]})")},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseSafetensors(c.bytes),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << c.name;
  }
}

TEST(SafetensorsTest, EveryTruncationOfAValidFileIsRejected) {
  std::map<std::string, torch::Tensor> tensors = {{"w", torch::randn({4, 3})},
                                                  {"b", torch::randn({3}).to(torch::kBFloat16)}};
  UNL_ASSERT_OK_AND_ASSIGN(std::string bytes, SerializeSafetensors(tensors, {{"k", "v"}}));
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THAT(ParseSafetensors(bytes.substr(0, n)),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << "prefix " << n;
  }
  // A truncated file on disk, too.
  const std::string path = TempPath("truncated.safetensors");
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes.substr(0, bytes.size() - 5);
  }
  EXPECT_THAT(ReadSafetensors(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated.safetensors")));
  std::filesystem::remove(path);
}

TEST(SafetensorsTest, CorruptedBytesNeverCrash) {
  std::map<std::string, torch::Tensor> tensors = {{"w", torch::randn({4, 3})},
                                                  {"n", torch::arange(5)}};
  UNL_ASSERT_OK_AND_ASSIGN(const std::string bytes, SerializeSafetensors(tensors));
  std::mt19937 rng(17);
  int failures = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string corrupt = bytes;
    // Corrupt the length field or the header, where the structure lives.
    const size_t limit = std::min<size_t>(corrupt.size(), 8 + 120);
    corrupt[rng() % limit] = static_cast<char>(rng() % 256);
    absl::StatusOr<SafetensorsFile> file = ParseSafetensors(corrupt);
    if (!file.ok()) {
      EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
      ++failures;
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadSafetensors(TempPath("does_not_exist.safetensors")),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST(SafetensorsTest, UnsupportedDtypeOnWriteIsInvalidArgument) {
  std::map<std::string, torch::Tensor> tensors = {{"c", torch::zeros({2}, torch::kComplexFloat)}};
  EXPECT_THAT(SerializeSafetensors(tensors),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("c")));
  EXPECT_THAT(SerializeSafetensors({{"__metadata__", torch::zeros({1})}}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(SafetensorsTest, WriteIntoMissingDirectoryFails) {
  EXPECT_FALSE(
      WriteSafetensors(TempPath("no_dir") + "/x.safetensors", {{"a", torch::zeros({1})}}).ok());
}

}  // namespace
}  // namespace unlearning::core
