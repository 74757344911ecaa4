#include "core/verify/verifier.h"

#include <limits>

namespace unlearning::core {

const FigureValue* VerificationReport::Find(const std::string& name) const {
  for (const FigureValue& f : figures) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kT0:
      return "T0";
    case Tier::kT1:
      return "T1";
    case Tier::kT2:
      return "T2";
  }
  return "T0";
}

VerificationReport MakeReport(const std::map<std::string, double>& before,
                              const std::map<std::string, double>& after,
                              const std::vector<Threshold>& thresholds, const Verifier* verifier) {
  VerificationReport report;
  for (const auto& [name, value] : after) {  // std::map: sorted by name
    auto b = before.find(name);
    report.figures.push_back(
        {name, b != before.end() ? b->second : std::numeric_limits<double>::quiet_NaN(), value,
         verifier != nullptr ? verifier->FigureTier(name) : Tier::kT0});
  }
  ThresholdDecision decision = DecideThresholds(before, after, thresholds);
  report.passed = decision.passed;
  report.checks = std::move(decision.checks);
  return report;
}

}  // namespace unlearning::core
