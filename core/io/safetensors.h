// Reader/writer for the safetensors format: 8-byte little-endian header length, a JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// raw little-endian tensor bytes. Every offset, shape and size is bounds-checked: a malformed file
// is a kInvalidArgument error, never a crash.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/types.h>

namespace unlearning::core {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU, contiguous, in the stored dtype
  std::map<std::string, std::string> metadata;   // "__metadata__"
};

// Supported dtypes: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);
// Parses an in-memory buffer (the whole file).
absl::StatusOr<SafetensorsFile> ParseSafetensors(const std::string& bytes);

// Writes tensors (any device; copied to CPU contiguous) in name order. The write is not atomic;
// callers that need atomicity write to a temporary path and rename. Flushes and fsyncs the file.
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});
// Serialises to bytes (same layout as the file).
absl::StatusOr<std::string> SerializeSafetensors(
    const std::map<std::string, torch::Tensor>& tensors,
    const std::map<std::string, std::string>& metadata = {});

}  // namespace unlearning::core
