#include "core/verify/verifier.h"

#include <limits>

namespace unlearning::core {

const FigureValue* VerificationReport::Find(const std::string& name) const {
  for (const FigureValue& f : figures) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

VerificationReport MakeReport(const std::map<std::string, double>& before,
                              const std::map<std::string, double>& after,
                              const std::vector<Threshold>& thresholds) {
  VerificationReport report;
  for (const auto& [name, value] : after) {  // std::map: sorted by name
    auto b = before.find(name);
    report.figures.push_back(
        {name, b != before.end() ? b->second : std::numeric_limits<double>::quiet_NaN(), value});
  }
  ThresholdDecision decision = DecideThresholds(before, after, thresholds);
  report.passed = decision.passed;
  report.checks = std::move(decision.checks);
  return report;
}

}  // namespace unlearning::core
