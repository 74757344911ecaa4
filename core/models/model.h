// Family-neutral view of a model held by the server: what the registry, the model store and the
// scheduler need, whatever the family (causal LM now; ViT classifier and diffusion later).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/types.h>

namespace unlearning::core {

enum class ModelFamily { kCausalLm, kImageClassifier, kDiffusion };

const char* ModelFamilyName(ModelFamily family);

// A loaded model. Implementations are thread-compatible: const methods (inference) may run
// concurrently; training runs on a private Clone().
class Model {
 public:
  virtual ~Model() = default;
  virtual ModelFamily family() const = 0;
  // Architecture name as in config.json "architectures"[0], e.g. "LlamaForCausalLM".
  virtual std::string architecture() const = 0;
  virtual int64_t num_parameters() const = 0;
  virtual torch::Device device() const = 0;
  // Writes the model in the Hugging Face layout into `dir` (which must exist): config.json,
  // model.safetensors and, for language models, tokenizer files. Not atomic: the model store
  // writes into a temporary directory and renames it.
  virtual absl::Status Save(const std::string& dir) const = 0;
  // A deep copy (own parameters) on `device`, e.g. the working copy a job trains.
  virtual absl::StatusOr<std::unique_ptr<Model>> Clone(torch::Device device) const = 0;
};

// Loads a model directory, dispatching on config.json ("architectures" / "model_type").
// kNotFound if files are missing; kInvalidArgument if the config or weights are malformed or the
// architecture is unsupported.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir, torch::Device device);

}  // namespace unlearning::core
