// The one erasure pipeline, shared by the server's job runner and the offline tool
// (unlearn-train unlearn): plan (method + family + thresholds, checked together), then run
// (method -> candidate -> verification -> report). Publishing is the caller's: the server stores
// the candidate as a version and issues a certificate; the offline tool writes it to a directory.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "core/app/family_registry.h"
#include "core/methods/method.h"
#include "core/methods/method_registry.h"
#include "core/verify/thresholds.h"
#include "core/verify/verifier.h"

namespace unlearning::core {

// A checked erasure: the configured method, the model's family row and the thresholds to apply.
struct ErasurePlan {
  std::unique_ptr<UnlearningMethod> method;
  const FamilySpec* family = nullptr;
  std::vector<Threshold> thresholds;
};

// Checks everything that can be checked before any work, in the order a user fixes them:
//   - the method exists (kNotFound listing the known ones) and its parameters are valid
//     (kInvalidArgument naming the key);
//   - it applies to `model_family` (kFailedPrecondition naming both families);
//   - the server serves that family (kNotFound);
//   - `data` is the payload of that family and suits the method (kInvalidArgument); with
//     `model`, class ids exist in it, not every class is forgotten, and an override class is a
//     class it keeps;
//   - every threshold names a figure of the family, with a sane bound (kInvalidArgument); an
//     empty `thresholds` takes the family's defaults.
absl::StatusOr<ErasurePlan> PlanErasure(const MethodRegistry& methods,
                                        const FamilyRegistry& families, ModelFamily model_family,
                                        const std::string& method_name,
                                        const nlohmann::json& params, const ErasureData& data,
                                        std::vector<Threshold> thresholds,
                                        const Model* model = nullptr);

struct ErasureOutcome {
  // Empty (no model) when already_absent.
  Candidate candidate;
  // The parent already met the thresholds on this forget set (evidence at T1 or above): nothing
  // was trained and there is nothing to publish; `report` is the evidence (before == after).
  bool already_absent = false;
  VerificationReport report;
  int64_t steps = 0;
  double method_seconds = 0.0;
  double verify_seconds = 0.0;
};

// Runs a plan against `parent` (never modified). First the family's verifier checks whether the
// parent, judged as its own candidate, already meets the thresholds on evidence of tier T1 or
// above (Verifier::CheckAlreadyAbsent): then nothing is trained and the outcome says so. Otherwise
// the method makes a candidate on `device` and the verifier compares it with the parent on the
// request's data and the model's probes. Progress phases: "checking", "training" (from the
// method), "verifying". kCancelled if `cancel` fires. A report that misses its thresholds is an OK
// outcome with report.passed = false. `parent_key` identifies the parent version's content for
// the verifier's cache of parent figures (e.g. "demo@3:<manifest sha256>"); empty = this run only.
// verify_seconds counts both checks. `parent_owner` (may be null) is `parent` as shared ownership,
// for candidates that refer to their parent (MethodContext::parent_owner).
absl::StatusOr<ErasureOutcome> RunErasure(ErasurePlan& plan, const Model& parent,
                                          const ModelProbes& probes, const ErasureData& data,
                                          torch::Device device, ProgressSink* progress,
                                          const CancellationToken* cancel,
                                          const std::string& parent_key = "",
                                          std::shared_ptr<const Model> parent_owner = nullptr);

}  // namespace unlearning::core
