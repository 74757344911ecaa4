// The unlearning-method interface: every method (FLAT, GA, GD, NPO now; ULD, GS-LoRA, SFD next) is
// one folder under core/methods/ implementing UnlearningMethod, registered by name in
// method_registry.cc. The server and the offline tool know methods only through the registry and
// run them through the erasure pipeline (core/app/erasure_pipeline.h).
//
// A method never modifies the version it is given: it returns a Candidate (an artifact of one of
// four kinds plus the servable model it makes), which the pipeline verifies and, if it passes, the
// server stores as a new version whose manifest lists the artifact's files.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/common/progress.h"
#include "core/data/erasure_data.h"
#include "core/data/model_probes.h"
#include "core/models/model.h"

namespace unlearning::core {

// What a version's files are, relative to its parent version.
enum class ArtifactKind {
  kFullWeights,  // a self-contained model directory (config.json + weights)
  kLoraAdapter,  // adapters applied on top of the parent version (GS-LoRA)
  kAssistant,    // a model combined with the parent at inference (ULD)
  // A distilled generator (SFD) that samples on its own but loads on the teacher it was distilled
  // from, which a later request distils again from.
  kOneStepGenerator,
};

// "full_weights", "lora_adapter", "assistant", "one_step_generator" (manifest and journal names).
const char* ArtifactKindName(ArtifactKind kind);
// kInvalidArgument for an unknown name.
absl::StatusOr<ArtifactKind> ParseArtifactKind(std::string_view name);
// True for the kinds whose version loads on its parent version (adapters, assistants, one-step
// generators: their teacher).
bool NeedsParent(ArtifactKind kind);

// What a method run produces.
struct Candidate {
  ArtifactKind kind = ArtifactKind::kFullWeights;
  // The servable model (for adapters and assistants: the composite users will query). It is what
  // verification judges and what the server publishes.
  std::unique_ptr<Model> model;
  // Writes the artifact's files into an existing empty directory. For self-contained kinds this
  // is model->Save(dir); for adapters and assistants only the files that sit beside the parent.
  std::function<absl::Status(const std::string& dir)> write;
  // Facts about the artifact recorded in the version's manifest and the certificate (e.g. adapter
  // sizes, zero-group ratio, sampling steps). A JSON object; may be empty.
  nlohmann::json facts = nlohmann::json::object();

  // A self-contained candidate of `kind` whose files are model->Save(dir).
  static Candidate SelfContained(ArtifactKind kind, std::unique_ptr<Model> model);
};

// What a method run gets. Pointers are borrowed for the duration of Run().
struct MethodContext {
  const Model* parent = nullptr;  // the version the request applies to; never modified, never null
  torch::Device device = torch::kCPU;  // where the candidate is built
  const ErasureData* data = nullptr;   // never null
  // The data the model keeps (probes/): replay samples for methods that need retain data the
  // request does not carry. May be null.
  const ModelProbes* probes = nullptr;
  ProgressSink* progress = nullptr;           // never null
  const CancellationToken* cancel = nullptr;  // never null
  // `parent` as shared ownership when the caller holds it so (the server does). A candidate that
  // refers to its parent instead of copying it (ULD's composite) keeps it alive through this; when
  // null, such a candidate must not outlive `parent`.
  std::shared_ptr<const Model> parent_owner;
};

// One configured run of a method. Created by MethodRegistry::Create with validated parameters.
// Not thread-safe; one instance per job.
class UnlearningMethod {
 public:
  virtual ~UnlearningMethod() = default;
  // Registry name, e.g. "flat".
  virtual std::string name() const = 0;
  // The family of models the method works on (checked at submit time).
  virtual ModelFamily family() const = 0;
  // The kind of artifact Run() produces.
  virtual ArtifactKind artifact_kind() const { return ArtifactKind::kFullWeights; }
  // The parameters in effect (defaults filled in), as canonical JSON for the certificate.
  virtual nlohmann::json EffectiveParams() const = 0;
  // Checks that the request's data suits the method (e.g. gradient difference needs a retain set).
  // kInvalidArgument with what to fix.
  virtual absl::Status CheckData(const ErasureData& data) const { return absl::OkStatus(); }
  // Checks that the method can run on `parent` (the version a request applies to), e.g. a
  // full-weights text method cannot run on a ULD composite. kFailedPrecondition with what to do.
  virtual absl::Status CheckParent(const Model& parent) const { return absl::OkStatus(); }
  // Optimisation steps Run() will take on `data` (for progress and ETA).
  virtual int64_t TotalSteps(const ErasureData& data) const = 0;
  // Runs the method against ctx.parent and returns the candidate. kCancelled if ctx.cancel fired;
  // kInvalidArgument if the parent is not of the method's family or the data does not fit; other
  // errors for failures.
  virtual absl::StatusOr<Candidate> Run(const MethodContext& ctx) = 0;
};

}  // namespace unlearning::core
