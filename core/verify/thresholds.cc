#include "core/verify/thresholds.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace unlearning::core {
namespace {

const double* Lookup(const std::map<std::string, double>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

double Ratio(double after, double before) {
  if (std::isnan(after) || std::isnan(before)) return std::numeric_limits<double>::quiet_NaN();
  if (before > 0.0) return after / before;
  return after == 0.0 ? 1.0 : std::numeric_limits<double>::infinity();
}

bool IsRatio(Comparison c) {
  return c == Comparison::kRatioAtMost || c == Comparison::kRatioAtLeast;
}
bool IsAtMost(Comparison c) {
  return c == Comparison::kRatioAtMost || c == Comparison::kAtMost || c == Comparison::kAbsAtMost;
}

}  // namespace

const char* ComparisonName(Comparison comparison) {
  switch (comparison) {
    case Comparison::kRatioAtMost:
      return "ratio_at_most";
    case Comparison::kRatioAtLeast:
      return "ratio_at_least";
    case Comparison::kAtMost:
      return "at_most";
    case Comparison::kAtLeast:
      return "at_least";
    case Comparison::kAbsAtMost:
      return "abs_at_most";
  }
  return "unknown";
}

absl::StatusOr<Comparison> ParseComparison(std::string_view name) {
  for (Comparison c : {Comparison::kRatioAtMost, Comparison::kRatioAtLeast, Comparison::kAtMost,
                       Comparison::kAtLeast, Comparison::kAbsAtMost}) {
    if (name == ComparisonName(c)) return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown comparison '", std::string(name),
                   "' (known: ratio_at_most, ratio_at_least, at_most, at_least, abs_at_most)"));
}

ThresholdDecision DecideThresholds(const std::map<std::string, double>& before,
                                   const std::map<std::string, double>& after,
                                   const std::vector<Threshold>& thresholds) {
  ThresholdDecision decision;
  decision.passed = true;
  for (const Threshold& t : thresholds) {
    const double* a = Lookup(after, t.figure);
    const double* b = Lookup(before, t.figure);
    const bool missing = a == nullptr || (IsRatio(t.comparison) && b == nullptr);
    if (missing) {
      if (t.required) {
        decision.checks.push_back(absl::StrCat(t.figure, " missing: FAILED"));
        decision.passed = false;
      } else {
        decision.checks.push_back(absl::StrCat(t.figure, ": skipped (not computed)"));
      }
      continue;
    }
    const bool abs = t.comparison == Comparison::kAbsAtMost;
    const double value = IsRatio(t.comparison) ? Ratio(*a, *b) : abs ? std::fabs(*a) : *a;
    const bool ok = IsAtMost(t.comparison) ? value <= t.bound : value >= t.bound;  // NaN: false
    decision.checks.push_back(
        absl::StrFormat("%s%s %.3f %s %.2f: %s", abs ? absl::StrCat("|", t.figure, "|") : t.figure,
                        IsRatio(t.comparison) ? " ratio" : "", value,
                        IsAtMost(t.comparison) ? "<=" : ">=", t.bound, ok ? "ok" : "FAILED"));
    decision.passed = decision.passed && ok;
  }
  return decision;
}

absl::Status ValidateThresholds(const std::vector<Threshold>& thresholds,
                                const std::vector<std::string>& known_figures,
                                std::string_view family_name) {
  std::set<std::pair<std::string, Comparison>> seen;
  for (size_t i = 0; i < thresholds.size(); ++i) {
    const Threshold& t = thresholds[i];
    const std::string at = absl::StrCat("thresholds.checks[", i, "]");
    if (std::find(known_figures.begin(), known_figures.end(), t.figure) == known_figures.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".figure '", t.figure, "' is not a figure of ", std::string(family_name),
                       " models (known: ", absl::StrJoin(known_figures, ", "), ")"));
    }
    if (!std::isfinite(t.bound)) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".bound must be finite, got ", t.bound));
    }
    if ((IsRatio(t.comparison) || t.comparison == Comparison::kAbsAtMost) && t.bound < 0.0) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".bound of ", ComparisonName(t.comparison),
                                                     " must be >= 0, got ", t.bound));
    }
    if (!seen.insert({t.figure, t.comparison}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " repeats ", t.figure, " ", ComparisonName(t.comparison)));
    }
  }
  return absl::OkStatus();
}

}  // namespace unlearning::core
