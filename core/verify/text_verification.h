// Verification of a text erasure job: figures of the model before (parent version) and after
// (candidate) on forget / retain / holdout probe sets, and the threshold decision.
// Definitions follow shared VERIFICATION.md (TOFU / MUSE conventions).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "core/common/cancellation.h"
#include "core/data/text_example.h"
#include "core/models/causal_lm.h"
#include "core/verify/thresholds.h"
#include "core/verify/verifier.h"

namespace unlearning::core {

struct TextProbes {
  std::vector<TextExample> forget;
  std::vector<TextExample> retain;   // may be empty: retain figures are then omitted
  std::vector<TextExample> holdout;  // may be empty: MIA figures are then omitted
};

// The text family's default thresholds as three numbers (the request's and unlearn-train's
// shorthand; the general form is a list of Threshold):
//   forget.answer_probability after / before <= max_forget_probability_ratio (required);
//   retain.answer_probability after / before >= min_retain_probability_ratio (0 omits the check;
//     skipped when there are no retain probes);
//   mia.loss_auc after <= max_mia_auc (skipped when there are no holdout probes).
struct VerificationThresholds {
  double max_forget_probability_ratio = 0.5;
  double min_retain_probability_ratio = 0.5;
  double max_mia_auc = 1.0;

  std::vector<Threshold> List() const;
};

// Scoring constants (pinned: part of the evaluation suite's definition).
inline constexpr double kMinKFraction = 0.2;     // Min-K%: the 20% lowest token log-probs
inline constexpr int64_t kRougeExtraTokens = 8;  // greedy answer budget: |a| + 8 tokens
inline constexpr int64_t kVerificationBatchSize = 16;

// Per-example figures of one model (fp32, no grad, batched). Answer tokens are the tokens of the
// answer text after QaPrompt(question) (no EOS). The greedy answer for ROUGE is cut at the first
// newline or EOS. kCancelled if `cancel` fires; kInvalidArgument if an answer has no token within
// the model's max_position_embeddings.
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
// "mia.loss_auc", "mia.min_k_auc" (those whose probe data exist), plus "retain.truth_ratio" and
// "holdout.truth_ratio".
//
// Definitions (shared VERIFICATION.md):
//   answer_probability            mean_i exp(-mean answer-token NLL of (q_i, a_i))
//   paraphrase_answer_probability mean_i over items with paraphrases of
//                                 mean_j exp(-mean NLL of (paraphrased q_ij, a_i))
//   truth ratio per item          TR_i = mean_j P̄(perturbed a_ij | q_i) / (P̄(a_i | q_i) + 1e-10)
//                                 (the data has no paraphrased answers, so the correct side is the
//                                 true answer, as open-unlearning does for ra/wf); aggregated as
//                                 TOFU/open-unlearning do: forget and holdout "closer to 1 better"
//                                 mean_i min(TR_i, 1/TR_i) in [0, 1] (1 = true and wrong answers
//                                 equally likely, i.e. nothing known); retain "true better"
//                                 mean_i max(0, 1 - TR_i) (high = truth preferred).
//   rouge_l_recall                mean_i ROUGE-L recall of the greedy answer vs a_i (rouge.h).
//   mia.loss_auc, mia.min_k_auc   ROC AUC with forget items as positives (members) and holdout
//                                 items as negatives, scored by membership likelihood: -mean NLL
//                                 (LOSS) and the mean of the 20% lowest answer-token log-probs
//                                 (Min-K%). 1 = forget set clearly memorised, 0.5 = forget
//                                 indistinguishable from never-seen data, < 0.5 = over-unlearned.
//                                 Equals open-unlearning's P(loss(holdout) > loss(forget)).
// kInvalidArgument if probes.forget is empty.
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
    const std::vector<Threshold>& thresholds, const CancellationToken* cancel,
    const std::map<std::string, double>* before_figures = nullptr);

// The causal-LM family's verifier: VerifyText on the request's forget set, its retain set (or the
// model's retain probes when the request has none) and the model's holdout probes, each capped at
// `max_probe_examples` (the forget set is never capped).
class TextVerifier : public Verifier {
 public:
  explicit TextVerifier(int max_probe_examples = 200) : max_probe_examples_(max_probe_examples) {}
  std::vector<std::string> FigureNames() const override;
  std::vector<Threshold> DefaultThresholds() const override;
  absl::StatusOr<VerificationReport> Verify(const VerificationInputs& inputs) const override;

 private:
  int max_probe_examples_;
};

}  // namespace unlearning::core
