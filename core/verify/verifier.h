// Verification behind one interface: each model family has a Verifier that computes its figures
// for the model before (parent version) and after (candidate) an erasure, and decides the
// request's thresholds (thresholds.h) on them. The family registry (core/app/family_registry.h)
// holds one verifier per family; the erasure pipeline calls it.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "core/common/cancellation.h"
#include "core/data/erasure_data.h"
#include "core/data/model_probes.h"
#include "core/models/model.h"
#include "core/verify/thresholds.h"

namespace unlearning::core {

// What a figure rests on (VERIFICATION.md "tiers"): T0 needs only the two models (and the request's
// data), T1 also a holdout set the model never trained on, T2 also a reference model never trained
// on the forget set (a retain-only model). Higher tiers are stronger evidence that the forget set
// looks "as if never trained on"; none is proof.
enum class Tier { kT0 = 0, kT1 = 1, kT2 = 2 };
// "T0", "T1", "T2".
const char* TierName(Tier tier);

struct FigureValue {
  std::string name;
  double before = 0.0;
  double after = 0.0;
  Tier tier = Tier::kT0;
};

// Whether the report could compute a tier's figures, and what they rest on or why not, e.g.
// {kT1, true, "32 holdout examples the model never trained on (probes/holdout.jsonl)"} or
// {kT2, false, "no reference model: the model directory has no reference/"}.
struct TierCoverage {
  Tier tier = Tier::kT0;
  bool computed = false;
  std::string basis;
};

struct VerificationReport {
  std::vector<FigureValue> figures;  // sorted by name
  bool passed = false;
  std::vector<std::string> checks;  // one line per threshold check
  int forget_examples = 0;
  int retain_examples = 0;
  int holdout_examples = 0;
  std::vector<TierCoverage> tiers;  // T0, T1, T2 in order
  // SHA-256 (hex) of the evaluation suite: probe sets, reference models, scoring constants and
  // seeds, and the suite's definition version. Equal hashes mean comparable figures.
  std::string suite_sha256;
  // Set when the parent version already met the thresholds on this forget set (nothing was
  // trained): the data was already absent, on the evidence of `figures` (before == after).
  bool already_absent = false;

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
  // Identifies the parent version's content (e.g. "demo@3:<manifest sha256>"): verifiers cache
  // what they compute on the parent's probe sets under it. Empty: no caching.
  std::string parent_key;
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
  // The tier of a figure named by FigureNames().
  virtual Tier FigureTier(const std::string& figure) const { return Tier::kT0; }
  // Whether the parent version, judged as its own candidate, already meets the "as if never seen"
  // checks of `inputs.thresholds` (absolute checks of tier T1 or above; ratio checks are
  // meaningless against itself) on evidence of at least T1: a second request for data already
  // erased. Returns the report (on those checks) with already_absent set when so, std::nullopt
  // otherwise (the method must run). `inputs.after` is ignored. The default never claims absence.
  virtual absl::StatusOr<std::optional<VerificationReport>> CheckAlreadyAbsent(
      const VerificationInputs& inputs) const {
    return std::optional<VerificationReport>();
  }
};

// Builds a report from before/after figure maps and decides `thresholds` (shared by verifiers).
// Figures are tagged with `verifier`'s tiers when it is given.
VerificationReport MakeReport(const std::map<std::string, double>& before,
                              const std::map<std::string, double>& after,
                              const std::vector<Threshold>& thresholds,
                              const Verifier* verifier = nullptr);

}  // namespace unlearning::core
