// Verification behind one interface: each model family has a Verifier that computes its figures
// for the model before (parent version) and after (candidate) an erasure, and decides the
// request's thresholds (thresholds.h) on them. The family registry (core/app/family_registry.h)
// holds one verifier per family; the erasure pipeline calls it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "core/common/cancellation.h"
#include "core/data/erasure_data.h"
#include "core/data/model_probes.h"
#include "core/models/model.h"
#include "core/verify/thresholds.h"

namespace unlearning::core {

struct FigureValue {
  std::string name;
  double before = 0.0;
  double after = 0.0;
};

struct VerificationReport {
  std::vector<FigureValue> figures;  // sorted by name
  bool passed = false;
  std::vector<std::string> checks;  // one line per threshold check
  int forget_examples = 0;
  int retain_examples = 0;
  int holdout_examples = 0;

  // The figure named `name`, or nullptr.
  const FigureValue* Find(const std::string& name) const;
};

struct VerificationInputs {
  const Model* before = nullptr;  // the parent version; never null
  const Model* after = nullptr;   // the candidate; never null
  const ErasureData* data = nullptr;
  const ModelProbes* probes = nullptr;  // never null (may be empty)
  std::vector<Threshold> thresholds;
  const CancellationToken* cancel = nullptr;  // may be null
  // The parent's figures when already known (cached per version); may be null.
  const std::map<std::string, double>* before_figures = nullptr;
};

// Thread-safe (stateless after construction).
class Verifier {
 public:
  virtual ~Verifier() = default;
  // Every figure name Verify() can produce (thresholds may name only these).
  virtual std::vector<std::string> FigureNames() const = 0;
  // The thresholds applied when a request names none.
  virtual std::vector<Threshold> DefaultThresholds() const = 0;
  // Figures before and after, and the threshold decision. kInvalidArgument if a model lacks the
  // capability the family's figures need or the data does not fit; kCancelled if cancelled.
  virtual absl::StatusOr<VerificationReport> Verify(const VerificationInputs& inputs) const = 0;
};

// Builds a report from before/after figure maps and decides `thresholds` (shared by verifiers).
VerificationReport MakeReport(const std::map<std::string, double>& before,
                              const std::map<std::string, double>& after,
                              const std::vector<Threshold>& thresholds);

}  // namespace unlearning::core
