// Verification thresholds as data: a list of {figure, comparison, bound}. Every family's verifier
// decides with the same function, so a request can bound any figure its model's family produces,
// and over-unlearning (a figure too low) can fail like under-unlearning (a figure too high).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace unlearning::core {

enum class Comparison {
  kRatioAtMost,   // after / before <= bound
  kRatioAtLeast,  // after / before >= bound
  kAtMost,        // after <= bound
  kAtLeast,       // after >= bound
  kAbsAtMost,     // |after| <= bound (two-sided: e.g. PrivLeak, where both signs are failures)
};

// "ratio_at_most", "ratio_at_least", "at_most", "at_least", "abs_at_most".
const char* ComparisonName(Comparison comparison);
// kInvalidArgument for an unknown name.
absl::StatusOr<Comparison> ParseComparison(std::string_view name);

struct Threshold {
  std::string figure;  // e.g. "forget.answer_probability", "acc_f"
  Comparison comparison = Comparison::kRatioAtMost;
  double bound = 0.0;
  // A required figure that was not computed fails the check; an optional one is skipped (e.g. the
  // retain figures when a request has no retain probes).
  bool required = false;
};

// One line per check, e.g. "forget.answer_probability ratio 0.040 <= 0.50: ok".
struct ThresholdDecision {
  bool passed = false;
  std::vector<std::string> checks;
};

// Applies `thresholds` to the before/after figure maps, in order. A ratio with before = 0 is 1 if
// after = 0 and +inf otherwise; NaN never passes. An empty list passes.
ThresholdDecision DecideThresholds(const std::map<std::string, double>& before,
                                   const std::map<std::string, double>& after,
                                   const std::vector<Threshold>& thresholds);

// kInvalidArgument (naming the threshold's index and what to fix) for a figure that `family_name`
// models do not produce (listing the ones they do), a bound that is not finite, a negative bound
// of a ratio, or a figure named twice with the same comparison.
absl::Status ValidateThresholds(const std::vector<Threshold>& thresholds,
                                const std::vector<std::string>& known_figures,
                                std::string_view family_name);

}  // namespace unlearning::core
