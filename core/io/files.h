// Small file helpers shared by the model families' loaders and savers.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace unlearning::core {

// dir / name.
std::string JoinPath(const std::string& dir, const std::string& name);

// The JSON document at `path`. kNotFound if it cannot be opened; kInvalidArgument ("<path>:
// invalid JSON") if it does not parse.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// Writes `contents` to `path` (created or truncated) and fsyncs it. kInternal on failure.
absl::Status WriteFileSynced(const std::string& path, const std::string& contents);

// The storage dtype named by a Hugging Face "torch_dtype" ("bfloat16", "float16"; anything else
// is float32).
torch::ScalarType StorageDtype(const std::string& torch_dtype);

// True for the LoRA factor tensors LoraLinear adds ("....lora_A", "....lora_B").
bool IsLoraFactor(const std::string& name);

}  // namespace unlearning::core
