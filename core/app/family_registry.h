// The model families the service serves, one row each: how a directory of the family is
// recognised, how it loads (on its own, or on top of a parent version for adapter and assistant
// artifacts), the probe data it keeps for verification and its verifier. Replaces if-chains on
// architecture names: the server, the offline tool and the tests ask the registry.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/methods/method.h"
#include "core/models/model.h"
#include "core/verify/verifier.h"

namespace unlearning::core {

struct FamilySpec {
  ModelFamily family = ModelFamily::kCausalLm;
  // Architectures this row loads, for messages (e.g. "LlamaForCausalLM").
  std::vector<std::string> architectures;
  // True if `dir` holds a model of this family. Reads config files only; never fails.
  std::function<bool(const std::string& dir)> recognises;
  // Loads a self-contained model directory. kNotFound / kInvalidArgument as the family's loader.
  std::function<absl::StatusOr<std::unique_ptr<Model>>(const std::string& dir,
                                                       torch::Device device)>
      load;
  // Loads an artifact that needs its parent (NeedsParent(kind)) on top of the loaded parent.
  // Null when the family has no such artifact yet.
  std::function<absl::StatusOr<std::unique_ptr<Model>>(ArtifactKind kind, const std::string& dir,
                                                       std::shared_ptr<const Model> parent,
                                                       torch::Device device)>
      load_on_parent;
  // Reads the verification probes shipped with a model directory (<dir>/probes/); empty probes
  // when it ships none. Null = none.
  std::function<absl::StatusOr<ModelProbes>(const std::string& dir)> load_probes;
  std::shared_ptr<const Verifier> verifier;  // never null
};

// Thread-safe after construction (read-only).
class FamilyRegistry {
 public:
  // Every family built into the service.
  static const FamilyRegistry& Builtin();

  // Replaces the row of spec.family.
  void Register(FamilySpec spec);
  // kNotFound if the family has no row.
  absl::StatusOr<const FamilySpec*> Find(ModelFamily family) const;
  // The row whose `recognises` accepts `dir`. kNotFound if `dir` has no config.json /
  // model_index.json; kInvalidArgument naming the supported architectures otherwise.
  absl::StatusOr<const FamilySpec*> Recognise(const std::string& dir) const;
  // Recognise + load.
  absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir, torch::Device device) const;
  std::vector<ModelFamily> families() const;

 private:
  std::map<ModelFamily, FamilySpec> rows_;
};

// The text family's row (Llama-architecture causal LMs with probes/{retain,holdout}.jsonl).
FamilySpec CausalLmFamily();
// The image-classifier family's row (ViTForImageClassification with labelled probes
// probes/{test,train}-{images,labels}.idx).
FamilySpec ImageClassifierFamily();
// The diffusion family's row (diffusers UNet2DModel pipelines; the classifier that judges their
// samples ships in <dir>/judge/).
FamilySpec DiffusionFamily();

}  // namespace unlearning::core
