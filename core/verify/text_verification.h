// Verification of a text erasure job: figures of the model before (parent version) and after
// (candidate) on forget / retain / holdout probe sets, and the threshold decision.
// Definitions follow shared VERIFICATION.md (TOFU / MUSE conventions).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/common/cancellation.h"
#include "core/data/text_example.h"
#include "core/models/causal_lm.h"

namespace unlearning::core {

struct TextProbes {
  std::vector<TextExample> forget;
  std::vector<TextExample> retain;   // may be empty: retain figures are then omitted
  std::vector<TextExample> holdout;  // may be empty: MIA figures are then omitted
};

struct VerificationThresholds {
  double max_forget_probability_ratio = 0.5;  // forget prob after / before <= this
  double min_retain_probability_ratio = 0.5;  // retain prob after / before >= this (0 disables)
  double max_mia_auc = 1.0;                   // mia.loss_auc after <= this
};

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

// Per-example figures of one model (fp32, no grad, batched).
struct ExampleScores {
  std::vector<double> answer_probability;  // P̄(a|q) = p(a|q)^(1/|a|) per example
  std::vector<double> mean_nll;            // mean answer-token NLL per example (LOSS attack)
  std::vector<double> min_k_log_prob;      // mean of the 20% lowest answer-token log-probs
  std::vector<double> rouge_l_recall;      // greedy answer vs true answer (only if with_rouge)
};
absl::StatusOr<ExampleScores> ScoreExamples(const CausalLm& model,
                                            const std::vector<TextExample>& examples,
                                            bool with_rouge, const CancellationToken* cancel);

// Figures of one model, keyed "forget.answer_probability", "forget.rouge_l_recall",
// "forget.paraphrase_answer_probability", "forget.truth_ratio", "retain.answer_probability",
// "retain.rouge_l_recall", "holdout.answer_probability", "holdout.rouge_l_recall",
// "mia.loss_auc", "mia.min_k_auc" (those whose probe data exist).
absl::StatusOr<std::map<std::string, double>> ComputeTextFigures(const CausalLm& model,
                                                                 const TextProbes& probes,
                                                                 const CancellationToken* cancel);

// Mean over retain answer positions of KL(p_before || p_after) over the vocabulary.
absl::StatusOr<double> CollateralKl(const CausalLm& before, const CausalLm& after,
                                    const std::vector<TextExample>& retain,
                                    const CancellationToken* cancel);

// Full report: figures before and after, "retain.collateral_kl" (before = 0), threshold checks.
// `before_figures` may be passed in when already known (cached per model version).
absl::StatusOr<VerificationReport> VerifyText(
    const CausalLm& before, const CausalLm& after, const TextProbes& probes,
    const VerificationThresholds& thresholds, const CancellationToken* cancel,
    const std::map<std::string, double>* before_figures = nullptr);

}  // namespace unlearning::core
