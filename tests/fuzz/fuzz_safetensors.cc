// ParseSafetensors on arbitrary bytes: never crashes; refuses with kInvalidArgument; whatever it
// accepts serialises and parses back to the same tensors and metadata, bit for bit.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

bool BitwiseEqual(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  if (a.numel() == 0) return true;
  return std::memcmp(a.data_ptr(), b.data_ptr(), a.numel() * a.element_size()) == 0;
}

}  // namespace

namespace {

// Files written by SerializeSafetensors: every dtype, a scalar, empty tensors, metadata.
void WriteSeeds(const std::string& dir) {
  torch::manual_seed(3);
  std::map<std::string, torch::Tensor> t;
  t["a.f32"] = torch::randn({3, 4});
  t["b.bf16"] = torch::randn({5}).to(torch::kBFloat16);
  t["c.f16"] = torch::randn({2, 2, 2}).to(torch::kFloat16);
  t["d.i64"] = torch::tensor(std::vector<int64_t>{-1, 0, int64_t{1} << 40});
  t["e.f64"] = torch::randn({2}, torch::kFloat64);
  t["f.bool"] = torch::tensor(std::vector<int64_t>{1, 0, 1}).to(torch::kBool);
  t["g.u8"] = torch::arange(0, 7, torch::kUInt8);
  t["h.scalar"] = torch::tensor(2.5f);
  t["i.empty"] = torch::zeros({0, 3});
  t["j.i32"] = torch::arange(0, 4, torch::kInt32);
  t["k.i16"] = torch::arange(0, 3, torch::kInt16);
  t["l.i8"] = torch::arange(-2, 2, torch::kInt8);
  absl::StatusOr<std::string> all =
      unlearning::core::SerializeSafetensors(t, {{"format", "pt"}, {"generator", "tests/fuzz"}});
  FUZZ_CHECK(all.ok());
  unlearning::fuzz::WriteSeed(dir, "all_dtypes.safetensors", *all);
  absl::StatusOr<std::string> one =
      unlearning::core::SerializeSafetensors({{"w", torch::ones({2, 2})}});
  FUZZ_CHECK(one.ok());
  unlearning::fuzz::WriteSeed(dir, "one_tensor.safetensors", *one);
  absl::StatusOr<std::string> none = unlearning::core::SerializeSafetensors({});
  FUZZ_CHECK(none.ok());
  unlearning::fuzz::WriteSeed(dir, "empty.safetensors", *none);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  unlearning::fuzz::MaybeWriteSeeds(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using unlearning::core::ParseSafetensors;
  using unlearning::core::SafetensorsFile;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(bytes);
  FUZZ_CHECK_OK_OR_INVALID(file.status());
  if (!file.ok()) return 0;

  absl::StatusOr<std::string> again =
      unlearning::core::SerializeSafetensors(file->tensors, file->metadata);
  FUZZ_CHECK(again.ok());
  absl::StatusOr<SafetensorsFile> back = ParseSafetensors(*again);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(back->metadata == file->metadata);
  FUZZ_CHECK(back->tensors.size() == file->tensors.size());
  for (const auto& [name, tensor] : file->tensors) {
    auto it = back->tensors.find(name);
    FUZZ_CHECK(it != back->tensors.end());
    FUZZ_CHECK(BitwiseEqual(tensor, it->second));
  }
  return 0;
}
