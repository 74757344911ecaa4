// Verification of a text erasure job: figures of the model before (parent version) and after
// (candidate) on forget / retain / holdout probe sets, and the threshold decision.
// Definitions follow shared VERIFICATION.md (TOFU / MUSE conventions).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "core/common/cancellation.h"
#include "core/data/text_example.h"
#include "core/models/language_model.h"
#include "core/verify/thresholds.h"
#include "core/verify/verifier.h"

namespace unlearning::core {

struct TextProbes {
  std::vector<TextExample> forget;
  std::vector<TextExample> retain;   // may be empty: retain figures are then omitted
  std::vector<TextExample> holdout;  // may be empty: the T1 figures are then omitted
  // T2: a model never trained on (part of) the forget set, e.g. one trained on the retain set
  // only, and the questions it never trained on. The T2 figures use the forget examples whose
  // question is in `reference_unseen`, and only when every forget example is there (otherwise the
  // reference would be compared on data it saw). May be null.
  const LanguageModel* reference = nullptr;
  std::set<std::string> reference_unseen;
};

// The text family's legacy three-number policy (the request's shorthand and unlearn-train's
// --max-forget-ratio etc.): only these three checks, instead of the defaults:
//   forget.answer_probability after / before <= max_forget_probability_ratio (required);
//   retain.answer_probability after / before >= min_retain_probability_ratio (0 omits the check;
//     skipped when there are no retain probes);
//   mia.loss_auc after <= max_mia_auc (skipped when there are no holdout probes).
struct VerificationThresholds {
  double max_forget_probability_ratio = 0.5;
  double min_retain_probability_ratio = 0.5;
  double max_mia_auc = 1.0;

  // Inline: the request side of server/proto_convert.cc (and its fuzzer) uses it without the rest
  // of text verification.
  std::vector<Threshold> List() const {
    std::vector<Threshold> out;
    out.push_back({"forget.answer_probability", Comparison::kRatioAtMost,
                   max_forget_probability_ratio, /*required=*/true});
    if (min_retain_probability_ratio > 0.0) {
      out.push_back({"retain.answer_probability", Comparison::kRatioAtLeast,
                     min_retain_probability_ratio, /*required=*/false});
    }
    out.push_back({"mia.loss_auc", Comparison::kAtMost, max_mia_auc, /*required=*/false});
    return out;
  }
};

// The text family's default checks (README "Verification and the certificate" says why each
// bound; calibrated so that the demo's retain-only reference model, which never saw the forget
// set, passes the forget-side checks: it reads ratio 1.64 and PrivLeak +0.55 there, since four
// forget entities are not an i.i.d. sample of four holdout entities):
//   unseen.answer_probability_ratio  at_most 2.0   forget set not much likelier than never-seen
//                                                  data (the memorised demo model reads 5.4) (T1)
//   mia.privleak                     at_least -0.4  not over-unlearned: membership AUC >= 0.3 (T1)
//   forget.answer_plausibility       at_least -1.5  forgotten answers are language, not noise (T1)
//   forget.answer_repetition         at_most 0.5    ... and not a repeated token
//   retain.rouge_l_recall            ratio_at_least 0.9   the model still answers what it keeps
//   retain.answer_probability        ratio_at_least 0.85
//   retain.model_utility             ratio_at_least 0.9
// The T1 checks are required: a model without holdout probes fails them unless the request
// states its own checks. The retain checks are skipped when there are no retain probes.
std::vector<Threshold> DefaultTextThresholds();

// Scoring constants (pinned: part of the evaluation suite's definition).
inline constexpr double kMinKFraction = 0.2;     // Min-K%: the 20% lowest token log-probs
inline constexpr int64_t kRougeExtraTokens = 8;  // greedy answer budget: |a| + 8 tokens
inline constexpr int64_t kVerificationBatchSize = 16;
inline constexpr int kRepetitionGram = 4;  // repetition rate over character 4-grams
// Greedy decoding dominates verification time: the greedy figures (ROUGE-L, repetition,
// plausibility) use the first kGreedyExamples examples of each split.
inline constexpr int64_t kGreedyExamples = 32;
// The version of the text suite's definitions; bump when a figure's definition changes.
inline constexpr const char* kTextSuiteVersion = "text-suite-v3";

// Per-example figures of one model (fp32, no grad, batched). Answer tokens are the tokens of the
// answer text after the QA prompt (EncodeQa) (no EOS). The greedy answer for ROUGE is cut at the
// first newline or EOS. kCancelled if `cancel` fires; kInvalidArgument if an answer has no token
// within the model's context.
struct ExampleScores {
  std::vector<double> answer_probability;  // P̄(a|q) = p(a|q)^(1/|a|) per example
  std::vector<double> mean_nll;            // mean answer-token NLL per example (LOSS attack)
  std::vector<double> min_k_log_prob;      // mean of the 20% lowest answer-token log-probs
  // Greedy answer vs true answer, and the greedy answers, for the first kGreedyExamples examples
  // (only if with_rouge).
  std::vector<double> rouge_l_recall;
  std::vector<std::string> greedy_answers;
  // TR_i = mean_j P̄(perturbed a_ij | q_i) / P̄(a_i | q_i), for items with perturbed answers.
  std::vector<double> truth_ratio;
  // mean_j P̄(a_i | paraphrased q_ij), for items with paraphrases (only if options.paraphrases).
  std::vector<double> paraphrase_probability;
  // Log-probabilities over the vocabulary at every answer token of every example, in order:
  // [answer tokens, V] float32 on the CPU (only if options.vocab_log_probs; collateral KL).
  torch::Tensor vocab_log_probs;
};
// What ScoreExamples computes besides the per-example answer scores and truth ratios.
struct ScoreOptions {
  bool greedy = false;           // greedy answers and their ROUGE-L (first kGreedyExamples)
  bool paraphrases = true;       // paraphrase_probability
  bool vocab_log_probs = false;  // vocab_log_probs
};
absl::StatusOr<ExampleScores> ScoreExamples(const LanguageModel& model,
                                            const std::vector<TextExample>& examples,
                                            const ScoreOptions& options,
                                            const CancellationToken* cancel);
// ScoreExamples with options.greedy = with_rouge (and paraphrases).
absl::StatusOr<ExampleScores> ScoreExamples(const LanguageModel& model,
                                            const std::vector<TextExample>& examples,
                                            bool with_rouge, const CancellationToken* cancel);

// 1 - distinct / total character n-grams of `text` (n = kRepetitionGram); 0 when shorter than n+1.
// "tttttttt" -> close to 1; ordinary prose -> close to 0.
double RepetitionRate(std::string_view text);

// Figures of one model alone, keyed "forget.answer_probability", "forget.rouge_l_recall",
// "forget.paraphrase_answer_probability", "forget.truth_ratio", "forget.answer_repetition",
// "retain.answer_probability", "retain.rouge_l_recall", "retain.truth_ratio",
// "retain.model_utility", "holdout.answer_probability", "holdout.rouge_l_recall",
// "holdout.truth_ratio", "mia.loss_auc", "mia.min_k_auc", "mia.privleak" (those whose probe data
// exist). The comparisons with the parent (unseen.*, forget.answer_plausibility,
// retain.collateral_kl) and with the reference model (forget_quality.*, mia.privleak_reference)
// need two models: VerifyText computes them.
//
// Definitions (shared VERIFICATION.md):
//   answer_probability            mean_i exp(-mean answer-token NLL of (q_i, a_i))
//   paraphrase_answer_probability mean_i over items with paraphrases of
//                                 mean_j exp(-mean NLL of (paraphrased q_ij, a_i))
//   truth ratio per item          TR_i = mean_j P̄(perturbed a_ij | q_i) / (P̄(a_i | q_i) + 1e-10)
//                                 (the data has no paraphrased answers, so the correct side is the
//                                 true answer, as open-unlearning does for ra/wf); aggregated as
//                                 TOFU/open-unlearning do: forget and holdout "closer to 1 better"
//                                 mean_i min(TR_i, 1/TR_i) in [0, 1]; retain "true better"
//                                 mean_i max(0, 1 - TR_i) (high = truth preferred).
//   rouge_l_recall                mean_i ROUGE-L recall of the greedy answer vs a_i (rouge.h).
//   answer_repetition             mean_i RepetitionRate(greedy answer to q_i).
//   model_utility                 harmonic mean of retain answer_probability, rouge_l_recall and
//                                 truth_ratio (TOFU's model utility on what the service has).
//   mia.loss_auc, mia.min_k_auc   ROC AUC with forget items as positives (members) and holdout
//                                 items as negatives, scored by -mean NLL (LOSS) and the mean of
//                                 the 20% lowest answer-token log-probs (Min-K%). 1 = memorised,
//                                 0.5 = indistinguishable from never-seen data, < 0.5 =
//                                 over-unlearned (marked the other way).
//   mia.privleak                  (mia.loss_auc - 0.5) / 0.5: MUSE's PrivLeak with the reference
//                                 AUC declared as 0.5 (holds if forget and holdout are i.i.d.);
//                                 0 is good, both signs are leaks.
// kInvalidArgument if probes.forget is empty.
absl::StatusOr<std::map<std::string, double>> ComputeTextFigures(const LanguageModel& model,
                                                                 const TextProbes& probes,
                                                                 const CancellationToken* cancel);

// Mean over retain answer positions of KL(p_before || p_after) over the vocabulary.
absl::StatusOr<double> CollateralKl(const LanguageModel& before, const LanguageModel& after,
                                    const std::vector<TextExample>& retain,
                                    const CancellationToken* cancel);

// Full report: figures before (the parent) and after (the candidate), the comparisons, the tiers
// and the threshold checks. Comparisons (before = the parent judged as its own candidate):
//   unseen.answer_probability_ratio  mean P̄ on the forget set / mean P̄ of the PARENT on the
//                                    holdout set (T1): <= 1 means no likelier than never-seen data
//   unseen.answer_probability_ks_d/_p, unseen.truth_ratio_ks_d/_p
//                                    two-sample KS (ks.h) between the per-example values on the
//                                    forget set and the parent's on the holdout set (T1); large D
//                                    = the forget set still stands out. unseen.ks_n / unseen.ks_m:
//                                    the sample sizes of the truth-ratio test.
//   forget.answer_plausibility       mean per-token log-probability, under the PARENT, of the
//                                    model's greedy answers to the forget questions, minus the
//                                    parent's mean per-token log-probability of its own greedy
//                                    answers to the holdout questions (T1). A plausible wrong
//                                    answer or a refusal scores near 0 or mildly below; gibberish
//                                    far below (several nats). Empty answers are left out.
//   retain.collateral_kl             CollateralKl(parent, model) (T0; before = 0)
//   forget_quality.ks_d/_p/_n        TOFU forget quality (T2): KS between per-item truth ratios on
//                                    the forget set of the model and of the reference model.
//   mia.privleak_reference           (loss AUC - AUC_ref) / AUC_ref with AUC_ref the reference
//                                    model's loss AUC on the same forget/holdout sets (T2).
//   repr.forget_cka                  LinearCka (representation.h) of the parent's and the model's
//                                    last-block hidden states at the forget set's attribute sites
//                                    (T0; 1 = the features did not change).
//   repr.attribute_probe_accuracy    share of the forget sites whose attribute value a linear probe
//                                    trained on the PARENT's retain sites reads from the model's
//                                    hidden states, best over the blocks (_layer: which block);
//                                    _chance: its chance level; _n: the sites scored (T0).
//   repr.attribute_probe_holdout     the same probes on the parent's holdout sites: the level of
//                                    attributes it never learned (T1). After above it: the features
//                                    still hold what the logits may no longer show.
//                                    The repr.* figures need LanguageModel::HiddenStates; a model
//                                    without them (a composite) gets none.
// `before_figures`, when given, are the parent's figures (e.g. from CheckAlreadyAbsent).
absl::StatusOr<VerificationReport> VerifyText(
    const LanguageModel& before, const LanguageModel& after, const TextProbes& probes,
    const std::vector<Threshold>& thresholds, const CancellationToken* cancel,
    const std::map<std::string, double>* before_figures = nullptr);

// The tier of a text figure (VERIFICATION.md): T2 for forget_quality.* and mia.privleak_reference,
// T1 for holdout.*, mia.*, unseen.* and forget.answer_plausibility, T0 otherwise.
Tier TextFigureTier(const std::string& figure);

// The causal-LM family's verifier: VerifyText on the request's forget set, its retain set (or the
// model's retain probes when the request has none), the model's holdout probes (each capped at
// `max_probe_examples`; the forget set is never capped) and the model's reference model when it
// ships one (probes.text_reference). The parent's figures on the probe sets are cached per
// VerificationInputs::parent_key (a few versions), so successive jobs on a version reuse them.
class TextVerifier : public Verifier {
 public:
  explicit TextVerifier(int max_probe_examples = 200);
  ~TextVerifier() override;
  std::vector<std::string> FigureNames() const override;
  std::vector<Threshold> DefaultThresholds() const override;
  absl::StatusOr<VerificationReport> Verify(const VerificationInputs& inputs) const override;
  Tier FigureTier(const std::string& figure) const override { return TextFigureTier(figure); }
  absl::StatusOr<std::optional<VerificationReport>> CheckAlreadyAbsent(
      const VerificationInputs& inputs) const override;

 private:
  struct Cache;
  int max_probe_examples_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace unlearning::core
