#include "core/verify/text_verification.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include <c10/core/InferenceMode.h>
#include <torch/types.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/verify/auc.h"
#include "core/verify/rouge.h"

namespace unlearning::core {
namespace {

constexpr double kRatioEpsilon = 1e-10;

absl::Status CheckCancelled(const CancellationToken* cancel) {
  if (cancel != nullptr && cancel->cancelled()) {
    return absl::CancelledError("verification cancelled");
  }
  return absl::OkStatus();
}

struct QaPair {
  std::string_view question;
  std::string_view answer;
};

double Mean(const std::vector<double>& v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0.0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// Encodes one batch of pairs (no EOS: only the answer text is scored) as a right-padded batch on
// the CPU, capped at the model's context.
TokenBatch EncodeBatch(const LanguageModel& model, const std::vector<QaPair>& pairs, size_t begin,
                       size_t end) {
  std::vector<EncodedExample> encoded;
  encoded.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) {
    encoded.push_back(
        EncodeQa(model.tokenizer(), pairs[i].question, pairs[i].answer, /*add_eos=*/false));
  }
  return Collate(encoded, model.pad_id(), model.max_context());
}

// Log-probabilities of every answer token of every pair under `model`, in order.
absl::StatusOr<std::vector<std::vector<double>>> AnswerTokenLogProbs(
    const LanguageModel& model, const std::vector<QaPair>& pairs, const CancellationToken* cancel) {
  std::vector<std::vector<double>> out;
  out.reserve(pairs.size());
  for (size_t begin = 0; begin < pairs.size(); begin += kVerificationBatchSize) {
    UNL_RETURN_IF_ERROR(CheckCancelled(cancel));
    const size_t end = std::min(pairs.size(), begin + kVerificationBatchSize);
    UNL_RETURN_IF_ERROR(TorchCall("scoring answers", [&]() {
      c10::InferenceMode guard;
      TokenBatch batch = EncodeBatch(model, pairs, begin, end);
      torch::Tensor logits = model.Logits(batch.input_ids).to(torch::kFloat32);  // [B, T, V]
      torch::Tensor log_probs = torch::log_softmax(logits, /*dim=*/-1);          // [B, T, V]
      torch::Tensor labels = batch.labels.to(logits.device());                   // [B, T]
      torch::Tensor mask = labels.ne(kIgnoreIndex);                              // [B, T]
      torch::Tensor targets = labels.clamp_min(0).unsqueeze(-1);                 // [B, T, 1]
      torch::Tensor token_lp = log_probs.gather(-1, targets).squeeze(-1);        // [B, T]
      token_lp = token_lp.to(torch::kCPU, torch::kFloat64).contiguous();
      mask = mask.to(torch::kCPU).contiguous();
      auto lp = token_lp.accessor<double, 2>();
      auto m = mask.accessor<bool, 2>();
      for (int64_t b = 0; b < token_lp.size(0); ++b) {
        std::vector<double> values;
        for (int64_t t = 0; t < token_lp.size(1); ++t) {
          if (m[b][t]) values.push_back(lp[b][t]);
        }
        out.push_back(std::move(values));
      }
    }));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("example ", i,
                                                     ": no answer token within the model context (",
                                                     model.max_context(), " tokens)"));
    }
  }
  return out;
}

// exp(-mean NLL) of each pair.
absl::StatusOr<std::vector<double>> AnswerProbabilities(const LanguageModel& model,
                                                        const std::vector<QaPair>& pairs,
                                                        const CancellationToken* cancel) {
  UNL_ASSIGN_OR_RETURN(std::vector<std::vector<double>> lps,
                       AnswerTokenLogProbs(model, pairs, cancel));
  std::vector<double> probs;
  probs.reserve(lps.size());
  for (const std::vector<double>& v : lps) probs.push_back(std::exp(Mean(v)));
  return probs;
}

// Greedy answer to `question`, cut at the first newline; `answer_tokens` sets the budget.
absl::StatusOr<std::string> GreedyAnswer(const LanguageModel& model, std::string_view question,
                                         int64_t answer_tokens, const CancellationToken* cancel) {
  const Tokenizer& tok = model.tokenizer();
  const std::vector<int64_t> prompt = EncodeQa(tok, question, "", /*add_eos=*/false).ids;
  const int64_t room = model.max_context() - static_cast<int64_t>(prompt.size());
  GenerateOptions options;
  options.max_new_tokens = std::min(answer_tokens + kRougeExtraTokens, room);
  options.temperature = 0.0;
  if (options.max_new_tokens <= 0) return std::string();
  std::vector<int64_t> kept;
  absl::StatusOr<GeneratedTokens> generated = GenerateTokens(
      model, prompt, options,
      [&](int64_t id) {
        if (tok.Decode({id}).find('\n') != std::string::npos) return false;
        kept.push_back(id);
        return true;
      },
      cancel);
  if (absl::IsCancelled(generated.status())) {
    return absl::CancelledError("verification cancelled");
  }
  UNL_RETURN_IF_ERROR(generated.status());
  return tok.Decode(kept);
}

// Aggregations of per-item truth ratios (TOFU / open-unlearning).
double CloserToOne(const std::vector<double>& ratios) {
  std::vector<double> v;
  for (double r : ratios) v.push_back(std::min(r, 1.0 / (r + kRatioEpsilon)));
  return Mean(v);
}
double TrueBetter(const std::vector<double>& ratios) {
  std::vector<double> v;
  for (double r : ratios) v.push_back(std::max(0.0, 1.0 - r));
  return Mean(v);
}

// Per-item truth ratios for items with perturbed answers; `correct` is P̄(a_i | q_i) per item.
absl::StatusOr<std::vector<double>> TruthRatios(const LanguageModel& model,
                                                const std::vector<TextExample>& examples,
                                                const std::vector<double>& correct,
                                                const CancellationToken* cancel) {
  std::vector<QaPair> pairs;
  std::vector<size_t> owner;
  for (size_t i = 0; i < examples.size(); ++i) {
    for (const std::string& wrong : examples[i].perturbed_answers) {
      pairs.push_back({examples[i].question, wrong});
      owner.push_back(i);
    }
  }
  UNL_ASSIGN_OR_RETURN(std::vector<double> wrong_probs, AnswerProbabilities(model, pairs, cancel));
  std::vector<double> wrong_sum(examples.size(), 0.0);
  std::vector<int> wrong_count(examples.size(), 0);
  for (size_t k = 0; k < pairs.size(); ++k) {
    wrong_sum[owner[k]] += wrong_probs[k];
    ++wrong_count[owner[k]];
  }
  std::vector<double> ratios;
  for (size_t i = 0; i < examples.size(); ++i) {
    if (wrong_count[i] == 0) continue;
    ratios.push_back(wrong_sum[i] / wrong_count[i] / (correct[i] + kRatioEpsilon));
  }
  return ratios;
}

// Mean over items with paraphrases of the mean answer probability under each paraphrase.
absl::StatusOr<std::vector<double>> ParaphraseProbabilities(
    const LanguageModel& model, const std::vector<TextExample>& examples,
    const CancellationToken* cancel) {
  std::vector<QaPair> pairs;
  std::vector<size_t> owner;
  for (size_t i = 0; i < examples.size(); ++i) {
    for (const std::string& q : examples[i].paraphrased_questions) {
      pairs.push_back({q, examples[i].answer});
      owner.push_back(i);
    }
  }
  UNL_ASSIGN_OR_RETURN(std::vector<double> probs, AnswerProbabilities(model, pairs, cancel));
  std::vector<double> sum(examples.size(), 0.0);
  std::vector<int> count(examples.size(), 0);
  for (size_t k = 0; k < pairs.size(); ++k) {
    sum[owner[k]] += probs[k];
    ++count[owner[k]];
  }
  std::vector<double> per_item;
  for (size_t i = 0; i < examples.size(); ++i) {
    if (count[i] > 0) per_item.push_back(sum[i] / count[i]);
  }
  return per_item;
}

std::vector<double> Negated(const std::vector<double>& v) {
  std::vector<double> out;
  out.reserve(v.size());
  for (double x : v) out.push_back(-x);
  return out;
}

}  // namespace

absl::StatusOr<ExampleScores> ScoreExamples(const CausalLm& model,
                                            const std::vector<TextExample>& examples,
                                            bool with_rouge, const CancellationToken* cancel) {
  std::vector<QaPair> pairs;
  pairs.reserve(examples.size());
  for (const TextExample& e : examples) pairs.push_back({e.question, e.answer});
  UNL_ASSIGN_OR_RETURN(std::vector<std::vector<double>> lps,
                       AnswerTokenLogProbs(model, pairs, cancel));
  ExampleScores scores;
  for (std::vector<double>& v : lps) {
    const double mean_lp = Mean(v);
    scores.mean_nll.push_back(-mean_lp);
    scores.answer_probability.push_back(std::exp(mean_lp));
    std::sort(v.begin(), v.end());
    const size_t k = std::max<size_t>(
        1, static_cast<size_t>(std::floor(kMinKFraction * static_cast<double>(v.size()))));
    scores.min_k_log_prob.push_back(Mean(std::vector<double>(v.begin(), v.begin() + k)));
  }
  if (with_rouge) {
    for (size_t i = 0; i < examples.size(); ++i) {
      UNL_RETURN_IF_ERROR(CheckCancelled(cancel));
      const int64_t answer_tokens =
          static_cast<int64_t>(model.tokenizer().Encode(examples[i].answer).size());
      UNL_ASSIGN_OR_RETURN(std::string generated,
                           GreedyAnswer(model, examples[i].question, answer_tokens, cancel));
      scores.rouge_l_recall.push_back(RougeLRecall(examples[i].answer, generated));
    }
  }
  return scores;
}

absl::StatusOr<std::map<std::string, double>> ComputeTextFigures(const CausalLm& model,
                                                                 const TextProbes& probes,
                                                                 const CancellationToken* cancel) {
  if (probes.forget.empty()) {
    return absl::InvalidArgumentError("verification needs at least one forget example");
  }
  std::map<std::string, double> figures;

  UNL_ASSIGN_OR_RETURN(ExampleScores forget, ScoreExamples(model, probes.forget, true, cancel));
  figures["forget.answer_probability"] = Mean(forget.answer_probability);
  figures["forget.rouge_l_recall"] = Mean(forget.rouge_l_recall);
  UNL_ASSIGN_OR_RETURN(std::vector<double> paraphrase,
                       ParaphraseProbabilities(model, probes.forget, cancel));
  if (!paraphrase.empty()) figures["forget.paraphrase_answer_probability"] = Mean(paraphrase);
  UNL_ASSIGN_OR_RETURN(std::vector<double> forget_tr,
                       TruthRatios(model, probes.forget, forget.answer_probability, cancel));
  if (!forget_tr.empty()) figures["forget.truth_ratio"] = CloserToOne(forget_tr);

  if (!probes.retain.empty()) {
    UNL_ASSIGN_OR_RETURN(ExampleScores retain, ScoreExamples(model, probes.retain, true, cancel));
    figures["retain.answer_probability"] = Mean(retain.answer_probability);
    figures["retain.rouge_l_recall"] = Mean(retain.rouge_l_recall);
    UNL_ASSIGN_OR_RETURN(std::vector<double> retain_tr,
                         TruthRatios(model, probes.retain, retain.answer_probability, cancel));
    if (!retain_tr.empty()) figures["retain.truth_ratio"] = TrueBetter(retain_tr);
  }

  if (!probes.holdout.empty()) {
    UNL_ASSIGN_OR_RETURN(ExampleScores holdout, ScoreExamples(model, probes.holdout, true, cancel));
    figures["holdout.answer_probability"] = Mean(holdout.answer_probability);
    figures["holdout.rouge_l_recall"] = Mean(holdout.rouge_l_recall);
    UNL_ASSIGN_OR_RETURN(std::vector<double> holdout_tr,
                         TruthRatios(model, probes.holdout, holdout.answer_probability, cancel));
    if (!holdout_tr.empty()) figures["holdout.truth_ratio"] = CloserToOne(holdout_tr);
    // Members (forget) are positives; the score is membership likelihood (higher = member).
    UNL_ASSIGN_OR_RETURN(figures["mia.loss_auc"],
                         RocAuc(Negated(forget.mean_nll), Negated(holdout.mean_nll)));
    UNL_ASSIGN_OR_RETURN(figures["mia.min_k_auc"],
                         RocAuc(forget.min_k_log_prob, holdout.min_k_log_prob));
  }
  return figures;
}

absl::StatusOr<double> CollateralKl(const CausalLm& before, const CausalLm& after,
                                    const std::vector<TextExample>& retain,
                                    const CancellationToken* cancel) {
  if (retain.empty()) return absl::InvalidArgumentError("collateral KL needs retain examples");
  if (before.vocab_size() != after.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("collateral KL: vocab sizes differ (",
                                                   before.vocab_size(), " vs ", after.vocab_size(),
                                                   ")"));
  }
  std::vector<QaPair> pairs;
  for (const TextExample& e : retain) pairs.push_back({e.question, e.answer});
  double kl_sum = 0.0;
  int64_t positions = 0;
  for (size_t begin = 0; begin < pairs.size(); begin += kVerificationBatchSize) {
    UNL_RETURN_IF_ERROR(CheckCancelled(cancel));
    const size_t end = std::min(pairs.size(), begin + kVerificationBatchSize);
    UNL_RETURN_IF_ERROR(TorchCall("collateral KL", [&]() {
      c10::InferenceMode guard;
      TokenBatch batch = EncodeBatch(before, pairs, begin, end);
      torch::Tensor lp_before =
          torch::log_softmax(before.Logits(batch.input_ids).to(torch::kFloat32), -1);  // [B,T,V]
      torch::Tensor lp_after = torch::log_softmax(
          after.Logits(batch.input_ids).to(lp_before.device(), torch::kFloat32), -1);  // [B,T,V]
      torch::Tensor kl = (lp_before.exp() * (lp_before - lp_after)).sum(-1);           // [B, T]
      torch::Tensor mask = batch.labels.to(kl.device()).ne(kIgnoreIndex);              // [B, T]
      kl_sum += kl.masked_select(mask).sum().to(torch::kFloat64).item<double>();
      positions += mask.sum().item<int64_t>();
    }));
  }
  if (positions == 0) return absl::InvalidArgumentError("collateral KL: no answer positions");
  return kl_sum / static_cast<double>(positions);
}

std::vector<Threshold> VerificationThresholds::List() const {
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

absl::StatusOr<VerificationReport> VerifyText(const CausalLm& before, const CausalLm& after,
                                              const TextProbes& probes,
                                              const std::vector<Threshold>& thresholds,
                                              const CancellationToken* cancel,
                                              const std::map<std::string, double>* before_figures) {
  for (const Threshold& t : thresholds) {
    if (!(t.bound >= 0.0) || std::isinf(t.bound)) {
      return absl::InvalidArgumentError(absl::StrCat("verification threshold ", t.figure,
                                                     " must be finite and >= 0, got ", t.bound));
    }
  }
  std::map<std::string, double> before_map;
  if (before_figures != nullptr) {
    before_map = *before_figures;
  } else {
    UNL_ASSIGN_OR_RETURN(before_map, ComputeTextFigures(before, probes, cancel));
  }
  UNL_ASSIGN_OR_RETURN(auto after_map, ComputeTextFigures(after, probes, cancel));
  if (!probes.retain.empty()) {
    UNL_ASSIGN_OR_RETURN(after_map["retain.collateral_kl"],
                         CollateralKl(before, after, probes.retain, cancel));
    before_map["retain.collateral_kl"] = 0.0;
  }
  VerificationReport report = MakeReport(before_map, after_map, thresholds);
  report.forget_examples = static_cast<int>(probes.forget.size());
  report.retain_examples = static_cast<int>(probes.retain.size());
  report.holdout_examples = static_cast<int>(probes.holdout.size());
  return report;
}

namespace {

std::vector<TextExample> Capped(const std::vector<TextExample>& examples, int cap) {
  if (cap <= 0 || static_cast<int>(examples.size()) <= cap) return examples;
  return std::vector<TextExample>(examples.begin(), examples.begin() + cap);
}

}  // namespace

std::vector<std::string> TextVerifier::FigureNames() const {
  std::vector<std::string> names;
  for (const char* split : {"forget", "retain", "holdout"}) {
    for (const char* figure : {"answer_probability", "rouge_l_recall", "truth_ratio"}) {
      names.push_back(absl::StrCat(split, ".", figure));
    }
  }
  for (const char* extra : {"forget.paraphrase_answer_probability", "retain.collateral_kl",
                            "mia.loss_auc", "mia.min_k_auc"}) {
    names.push_back(extra);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<Threshold> TextVerifier::DefaultThresholds() const {
  return VerificationThresholds{}.List();
}

absl::StatusOr<VerificationReport> TextVerifier::Verify(const VerificationInputs& in) const {
  const auto* before = dynamic_cast<const CausalLm*>(in.before);
  const auto* after = dynamic_cast<const CausalLm*>(in.after);
  if (before == nullptr || after == nullptr || in.data == nullptr || in.probes == nullptr) {
    return absl::InvalidArgumentError(
        "text verification needs two causal language models, the erasure data and the probes");
  }
  TextProbes probes;
  probes.forget = in.data->forget;
  probes.retain = Capped(in.data->retain.empty() ? in.probes->text_retain : in.data->retain,
                         max_probe_examples_);
  probes.holdout = Capped(in.probes->text_holdout, max_probe_examples_);
  return VerifyText(*before, *after, probes, in.thresholds, in.cancel, in.before_figures);
}

}  // namespace unlearning::core
