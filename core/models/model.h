// Family-neutral view of a model held by the server: what the registry, the model store and the
// scheduler need, whatever the family. What a model can do is asked through its capabilities
// (capabilities.h); loading a directory of any family goes through core/app/family_registry.h.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/family.h"
#include "core/models/capabilities.h"

namespace unlearning::core {

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

  // Capabilities (capabilities.h): the interface, or nullptr when the model lacks it.
  virtual const LanguageModel* AsLanguageModel() const { return nullptr; }
  virtual const ImageClassifier* AsImageClassifier() const { return nullptr; }
  virtual const ImageSampler* AsImageSampler() const { return nullptr; }
};

}  // namespace unlearning::core
