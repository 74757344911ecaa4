#include "core/verify/text_verification.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include <c10/core/InferenceMode.h>
#include <torch/types.h>

#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/verify/auc.h"
#include "core/verify/ks.h"
#include "core/verify/representation.h"
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

// Encodes pairs[rows] (no EOS: only the answer text is scored) as a right-padded batch on the CPU,
// capped at the model's context.
TokenBatch EncodeBatch(const LanguageModel& model, const std::vector<QaPair>& pairs,
                       const std::vector<size_t>& rows) {
  std::vector<EncodedExample> encoded;
  encoded.reserve(rows.size());
  for (size_t i : rows) {
    encoded.push_back(
        EncodeQa(model.tokenizer(), pairs[i].question, pairs[i].answer, /*add_eos=*/false));
  }
  return Collate(encoded, model.pad_id(), model.max_context());
}

// Token log-probabilities of the answers of pairs[rows] from logits [B, T, V] whose position t
// predicts target[b, t] where mask[b, t]; stores them in out[rows[b]] (and, with `vocab`, the
// vocabulary log-probabilities at those positions in vocab[rows[b]]).
void TakeAnswerLogProbs(const torch::Tensor& logits, const torch::Tensor& target,
                        const torch::Tensor& mask, const std::vector<size_t>& rows,
                        std::vector<std::vector<double>>& out, std::vector<torch::Tensor>* vocab) {
  torch::Tensor log_probs = torch::log_softmax(logits.to(torch::kFloat32), /*dim=*/-1);  // [B,T,V]
  torch::Tensor m = mask.to(log_probs.device());                                         // [B, T]
  torch::Tensor token_lp =
      log_probs.gather(-1, target.clamp_min(0).to(log_probs.device()).unsqueeze(-1))
          .squeeze(-1)
          .to(torch::kCPU, torch::kFloat64)
          .contiguous();  // [B, T]
  torch::Tensor m_cpu = m.to(torch::kCPU).contiguous();
  auto lp = token_lp.accessor<double, 2>();
  auto keep = m_cpu.accessor<bool, 2>();
  for (int64_t b = 0; b < token_lp.size(0); ++b) {
    std::vector<double>& values = out[rows[static_cast<size_t>(b)]];
    for (int64_t t = 0; t < token_lp.size(1); ++t) {
      if (keep[b][t]) values.push_back(lp[b][t]);
    }
    if (vocab != nullptr) {
      (*vocab)[rows[static_cast<size_t>(b)]] = log_probs[b].index({m[b]}).to(torch::kCPU);
    }
  }
}

// The pairs of one question share its prompt: each chunk of questions is prefilled once
// (left-padded) and the decode state's rows are then repeated for every answer, which continues
// from the cached prompt (DecodeState::SelectRows). False if the model's decode state cannot.
bool ScoreSharingPrompts(const LanguageModel& model, const std::vector<QaPair>& pairs,
                         const std::vector<std::vector<size_t>>& groups,
                         std::vector<std::vector<double>>& out, std::vector<torch::Tensor>* vocab) {
  const Tokenizer& tok = model.tokenizer();
  const int64_t g = static_cast<int64_t>(groups.size());
  std::vector<std::vector<int64_t>> prompts;
  int64_t prompt_length = 0;
  for (const std::vector<size_t>& group : groups) {
    prompts.push_back(EncodeQa(tok, pairs[group.front()].question, "", /*add_eos=*/false).ids);
    prompt_length = std::max(prompt_length, static_cast<int64_t>(prompts.back().size()));
  }
  torch::Tensor ids = torch::full({g, prompt_length}, model.pad_id(), torch::kInt64);
  torch::Tensor valid = torch::zeros({g, prompt_length}, torch::kBool);
  for (int64_t i = 0; i < g; ++i) {
    const int64_t n = static_cast<int64_t>(prompts[static_cast<size_t>(i)].size());
    ids[i].narrow(0, prompt_length - n, n).copy_(torch::tensor(prompts[static_cast<size_t>(i)]));
    valid[i].narrow(0, prompt_length - n, n).fill_(true);
  }
  std::unique_ptr<DecodeState> state = model.NewDecodeState(g);
  if (!state->supports_padding()) return false;
  torch::Tensor first = state->StepPadded(ids, valid);  // [G, V]: predicts each first answer token
  std::vector<size_t> rows;
  std::vector<int64_t> owner;
  std::vector<std::vector<int64_t>> answers;
  int64_t answer_length = 1;
  for (int64_t i = 0; i < g; ++i) {
    for (size_t r : groups[static_cast<size_t>(i)]) {
      rows.push_back(r);
      owner.push_back(i);
      answers.push_back(tok.Encode(pairs[r].answer));
      answer_length = std::max(answer_length, static_cast<int64_t>(answers.back().size()));
    }
  }
  const torch::Tensor index = torch::tensor(owner, torch::kInt64);
  if (!state->SelectRows(index)) return false;
  const int64_t b = static_cast<int64_t>(rows.size());
  torch::Tensor target = torch::full({b, answer_length}, kIgnoreIndex, torch::kInt64);
  torch::Tensor input = torch::full({b, answer_length}, model.pad_id(), torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const std::vector<int64_t>& a = answers[static_cast<size_t>(i)];
    if (a.empty()) continue;
    const int64_t n = static_cast<int64_t>(a.size());
    target[i].narrow(0, 0, n).copy_(torch::tensor(a));
    input[i].narrow(0, 0, n).copy_(torch::tensor(a));
  }
  torch::Tensor logits = first.index_select(0, index.to(first.device())).unsqueeze(1);  // [B,1,V]
  if (answer_length > 1) {
    // Right padding after each answer: causal attention keeps it out of every real position.
    logits = at::cat({logits, state->StepAll(input.narrow(1, 0, answer_length - 1))}, 1);
  }
  TakeAnswerLogProbs(logits, target, target.ne(kIgnoreIndex), rows, out, vocab);
  return true;
}

// Log-probabilities of every answer token of every pair under `model`, in order.
// With `vocab_log_probs`, also the log-probabilities over the whole vocabulary at every answer
// position, in the same order ([positions, V] float32 on the CPU). Pairs of one question share
// its prompt's forward pass when the model's decode state allows (ScoreSharingPrompts) and the
// question and answer fit in the context; otherwise a full forward of each pair, capped at the
// context.
absl::StatusOr<std::vector<std::vector<double>>> AnswerTokenLogProbs(
    const LanguageModel& model, const std::vector<QaPair>& pairs, const CancellationToken* cancel,
    torch::Tensor* vocab_log_probs = nullptr) {
  std::vector<std::vector<double>> out(pairs.size());
  std::vector<torch::Tensor> vocab;
  if (vocab_log_probs != nullptr) vocab.resize(pairs.size());
  std::vector<torch::Tensor>* vocab_out = vocab_log_probs != nullptr ? &vocab : nullptr;
  // Groups of pairs by question, in order of first appearance; pairs too long for the context
  // are scored alone by the full forward.
  std::vector<std::vector<size_t>> groups;
  std::vector<size_t> alone;
  std::map<std::string_view, size_t> group_of;
  const Tokenizer& tok = model.tokenizer();
  for (size_t i = 0; i < pairs.size(); ++i) {
    const int64_t length =
        static_cast<int64_t>(EncodeQa(tok, pairs[i].question, pairs[i].answer, false).ids.size());
    if (length > model.max_context()) {
      alone.push_back(i);
      continue;
    }
    auto [it, inserted] = group_of.emplace(pairs[i].question, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  bool sharing = true;
  for (size_t begin = 0; begin < groups.size();) {
    UNL_RETURN_IF_ERROR(CheckCancelled(cancel));
    // A chunk: whole questions, about kVerificationBatchSize * 3 answers.
    size_t end = begin, answers = 0;
    while (end < groups.size() &&
           (end == begin || answers + groups[end].size() <= 3 * kVerificationBatchSize)) {
      answers += groups[end++].size();
    }
    const std::vector<std::vector<size_t>> chunk(groups.begin() + begin, groups.begin() + end);
    UNL_RETURN_IF_ERROR(TorchCall("scoring answers", [&]() {
      c10::InferenceMode guard;
      sharing = sharing && ScoreSharingPrompts(model, pairs, chunk, out, vocab_out);
    }));
    if (!sharing) {
      for (const std::vector<size_t>& group : chunk)
        alone.insert(alone.end(), group.begin(), group.end());
    }
    begin = end;
  }
  std::sort(alone.begin(), alone.end());
  for (size_t begin = 0; begin < alone.size(); begin += kVerificationBatchSize) {
    UNL_RETURN_IF_ERROR(CheckCancelled(cancel));
    const size_t end = std::min(alone.size(), begin + kVerificationBatchSize);
    const std::vector<size_t> rows(alone.begin() + begin, alone.begin() + end);
    UNL_RETURN_IF_ERROR(TorchCall("scoring answers", [&]() {
      c10::InferenceMode guard;
      TokenBatch batch = EncodeBatch(model, pairs, rows);
      torch::Tensor logits = model.Logits(batch.input_ids);  // [B, T, V]
      TakeAnswerLogProbs(logits, batch.labels, batch.labels.ne(kIgnoreIndex), rows, out, vocab_out);
    }));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("example ", i,
                                                     ": no answer token within the model context (",
                                                     model.max_context(), " tokens)"));
    }
  }
  if (vocab_log_probs != nullptr) {
    *vocab_log_probs = vocab.empty() ? torch::Tensor() : at::cat(vocab, 0);
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

// Greedy answers to the questions of `examples`, each cut at its first newline and capped at its
// answer's token count + kRougeExtraTokens (and the model's context), decoded as one left-padded
// batch (GenerateTokensBatch).
absl::StatusOr<std::vector<std::string>> GreedyAnswers(const LanguageModel& model,
                                                       const std::vector<TextExample>& examples,
                                                       const CancellationToken* cancel) {
  const Tokenizer& tok = model.tokenizer();
  std::vector<std::vector<int64_t>> prompts;
  std::vector<size_t> owner;
  std::vector<int64_t> budget;
  for (size_t i = 0; i < examples.size(); ++i) {
    std::vector<int64_t> prompt = EncodeQa(tok, examples[i].question, "", /*add_eos=*/false).ids;
    const int64_t room = model.max_context() - static_cast<int64_t>(prompt.size());
    const int64_t answer_tokens = static_cast<int64_t>(tok.Encode(examples[i].answer).size());
    const int64_t tokens = std::min(answer_tokens + kRougeExtraTokens, room);
    if (tokens <= 0) continue;  // no room: an empty answer
    prompts.push_back(std::move(prompt));
    owner.push_back(i);
    budget.push_back(tokens);
  }
  std::vector<std::vector<int64_t>> kept(prompts.size());
  GenerateOptions options;
  options.temperature = 0.0;
  options.max_new_tokens = budget.empty() ? 0 : *std::max_element(budget.begin(), budget.end());
  absl::StatusOr<std::vector<GeneratedTokens>> generated = GenerateTokensBatch(
      model, prompts, options,
      [&](size_t row, int64_t id) {
        if (tok.Decode({id}).find('\n') != std::string::npos) return false;
        kept[row].push_back(id);
        return static_cast<int64_t>(kept[row].size()) < budget[row];
      },
      cancel, kVerificationBatchSize * 2);
  if (absl::IsCancelled(generated.status())) {
    return absl::CancelledError("verification cancelled");
  }
  UNL_RETURN_IF_ERROR(generated.status());
  std::vector<std::string> answers(examples.size());
  for (size_t row = 0; row < prompts.size(); ++row) answers[owner[row]] = tok.Decode(kept[row]);
  return answers;
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

// What each split needs: paraphrase figures exist for the forget set only; the retain set keeps
// the vocabulary log-probabilities for the collateral KL and greedy answers for ROUGE-L.
constexpr ScoreOptions kRetainScoring{/*greedy=*/true, /*paraphrases=*/false,
                                      /*vocab_log_probs=*/true};
constexpr ScoreOptions kHoldoutScoring{/*greedy=*/false, /*paraphrases=*/false,
                                       /*vocab_log_probs=*/false};

std::vector<double> Negated(const std::vector<double>& v) {
  std::vector<double> out;
  out.reserve(v.size());
  for (double x : v) out.push_back(-x);
  return out;
}

// Mean per-token log-probability under `judge` of each non-empty answer to its question.
absl::StatusOr<std::vector<double>> AnswerMeanLogProbs(const LanguageModel& judge,
                                                       const std::vector<TextExample>& examples,
                                                       const std::vector<std::string>& answers,
                                                       const CancellationToken* cancel) {
  std::vector<QaPair> pairs;
  for (size_t i = 0; i < examples.size() && i < answers.size(); ++i) {
    if (!answers[i].empty()) pairs.push_back({examples[i].question, answers[i]});
  }
  std::vector<double> out;
  if (pairs.empty()) return out;
  UNL_ASSIGN_OR_RETURN(std::vector<std::vector<double>> lps,
                       AnswerTokenLogProbs(judge, pairs, cancel));
  for (const std::vector<double>& v : lps) out.push_back(Mean(v));
  return out;
}

double HarmonicMean(const std::vector<double>& values) {
  double inv = 0.0;
  for (double v : values) {
    if (!(v > 0.0)) return 0.0;
    inv += 1.0 / v;
  }
  return static_cast<double>(values.size()) / inv;
}

// The figures of one model's scores on the three splits (ComputeTextFigures' list).
std::map<std::string, double> FiguresOf(const ExampleScores& forget, const ExampleScores* retain,
                                        const ExampleScores* holdout) {
  std::map<std::string, double> f;
  f["forget.answer_probability"] = Mean(forget.answer_probability);
  f["forget.rouge_l_recall"] = Mean(forget.rouge_l_recall);
  if (!forget.paraphrase_probability.empty()) {
    f["forget.paraphrase_answer_probability"] = Mean(forget.paraphrase_probability);
  }
  if (!forget.truth_ratio.empty()) f["forget.truth_ratio"] = CloserToOne(forget.truth_ratio);
  std::vector<double> repetition;
  for (const std::string& answer : forget.greedy_answers) {
    repetition.push_back(RepetitionRate(answer));
  }
  f["forget.answer_repetition"] = Mean(repetition);
  if (retain != nullptr) {
    f["retain.answer_probability"] = Mean(retain->answer_probability);
    f["retain.rouge_l_recall"] = Mean(retain->rouge_l_recall);
    if (!retain->truth_ratio.empty()) {
      f["retain.truth_ratio"] = TrueBetter(retain->truth_ratio);
      f["retain.model_utility"] = HarmonicMean(
          {f["retain.answer_probability"], f["retain.rouge_l_recall"], f["retain.truth_ratio"]});
    }
  }
  if (holdout != nullptr) {
    f["holdout.answer_probability"] = Mean(holdout->answer_probability);
    f["holdout.rouge_l_recall"] = Mean(holdout->rouge_l_recall);
    if (!holdout->truth_ratio.empty()) f["holdout.truth_ratio"] = CloserToOne(holdout->truth_ratio);
    // Members (forget) are positives; the score is membership likelihood (higher = member).
    absl::StatusOr<double> loss_auc = RocAuc(Negated(forget.mean_nll), Negated(holdout->mean_nll));
    absl::StatusOr<double> min_k_auc = RocAuc(forget.min_k_log_prob, holdout->min_k_log_prob);
    if (loss_auc.ok()) {
      f["mia.loss_auc"] = *loss_auc;
      f["mia.privleak"] = (*loss_auc - 0.5) / 0.5;
    }
    if (min_k_auc.ok()) f["mia.min_k_auc"] = *min_k_auc;
  }
  return f;
}

// Adds "<prefix>ks_d" and "<prefix>ks_p" for samples a vs b (nothing when either is empty).
absl::Status AddKs(std::map<std::string, double>& figures, const std::string& prefix,
                   const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || b.empty()) return absl::OkStatus();
  UNL_ASSIGN_OR_RETURN(KsResult ks, KsTwoSample(a, b));
  figures[prefix + "ks_d"] = ks.d;
  figures[prefix + "ks_p"] = ks.p;
  return absl::OkStatus();
}

// What the parent's figures on the probe sets rest on; cached per parent version.
struct ParentProbeScores {
  std::optional<ExampleScores> retain;  // with vocab_log_probs (collateral KL)
  std::optional<ExampleScores> holdout;
  // The reference model's scores on the holdout set (when the model ships a reference).
  std::optional<ExampleScores> reference_holdout;
  // Attribute probes trained on the parent's retain sites, one per block (index l - 1 for the
  // output of block l; empty when the model has no hidden states or too few retain sites), and
  // their best accuracy on the parent's holdout sites (NaN without holdout sites).
  std::vector<AttributeProbe> attribute_probes;
  double probe_holdout_accuracy = std::numeric_limits<double>::quiet_NaN();
  // The parent's mean per-token log-probability of its own greedy holdout answers (NaN if none).
  double holdout_self_log_prob = std::numeric_limits<double>::quiet_NaN();
};

absl::StatusOr<ParentProbeScores> ScoreParentProbes(const LanguageModel& parent,
                                                    const TextProbes& probes,
                                                    const CancellationToken* cancel) {
  ParentProbeScores out;
  if (!probes.retain.empty()) {
    UNL_ASSIGN_OR_RETURN(out.retain, ScoreExamples(parent, probes.retain, kRetainScoring, cancel));
  }
  if (!probes.holdout.empty()) {
    ScoreOptions holdout_scoring = kHoldoutScoring;
    holdout_scoring.greedy = true;  // the parent's own answers: the plausibility baseline
    UNL_ASSIGN_OR_RETURN(out.holdout,
                         ScoreExamples(parent, probes.holdout, holdout_scoring, cancel));
    if (probes.reference != nullptr) {
      UNL_ASSIGN_OR_RETURN(out.reference_holdout, ScoreExamples(*probes.reference, probes.holdout,
                                                                kHoldoutScoring, cancel));
    }
    UNL_ASSIGN_OR_RETURN(
        std::vector<double> self,
        AnswerMeanLogProbs(parent, probes.holdout, out.holdout->greedy_answers, cancel));
    out.holdout_self_log_prob = Mean(self);
  }
  const std::vector<AttributeSite> retain_sites = AttributeSites(probes.retain);
  if (parent.num_hidden_layers() > 0 && retain_sites.size() >= 2) {
    const std::vector<AttributeSite> holdout_sites = AttributeSites(probes.holdout);
    UNL_ASSIGN_OR_RETURN(std::vector<torch::Tensor> states,
                         SiteStates(parent, probes.retain, retain_sites, cancel));
    std::vector<torch::Tensor> holdout_states;
    if (!holdout_sites.empty()) {
      UNL_ASSIGN_OR_RETURN(holdout_states,
                           SiteStates(parent, probes.holdout, holdout_sites, cancel));
    }
    for (int64_t layer = 1; layer <= parent.num_hidden_layers(); ++layer) {
      UNL_ASSIGN_OR_RETURN(AttributeProbe probe,
                           AttributeProbe::Train(states[layer], retain_sites));
      if (probe.Covered(holdout_sites) > 0) {
        const double accuracy = probe.Accuracy(holdout_states[layer], holdout_sites);
        if (!(out.probe_holdout_accuracy >= accuracy)) out.probe_holdout_accuracy = accuracy;
      }
      out.attribute_probes.push_back(std::move(probe));
    }
  }
  return out;
}

// The representation figures of `model` (the parent itself for "before") on the forget set:
// repr.forget_cka, repr.attribute_probe_accuracy/_layer/_chance/_n and, with holdout sites,
// repr.attribute_probe_holdout. Nothing when the models expose no hidden states.
absl::Status AddRepresentation(std::map<std::string, double>& figures, const LanguageModel& model,
                               const LanguageModel& parent, const TextProbes& probes,
                               const ParentProbeScores& parent_probes,
                               const CancellationToken* cancel) {
  const int64_t layers = model.num_hidden_layers();
  const std::vector<AttributeSite> sites = AttributeSites(probes.forget);
  if (layers == 0 || layers != parent.num_hidden_layers() || sites.empty()) {
    return absl::OkStatus();
  }
  UNL_ASSIGN_OR_RETURN(std::vector<torch::Tensor> states,
                       SiteStates(model, probes.forget, sites, cancel));
  if (sites.size() >= 2) {
    if (&model == &parent) {
      figures["repr.forget_cka"] = 1.0;
    } else {
      UNL_ASSIGN_OR_RETURN(std::vector<torch::Tensor> parent_states,
                           SiteStates(parent, probes.forget, sites, cancel));
      const double cka = LinearCka(parent_states.back(), states.back());
      if (std::isfinite(cka)) figures["repr.forget_cka"] = cka;
    }
  }
  if (parent_probes.attribute_probes.size() != static_cast<size_t>(layers)) return absl::OkStatus();
  const AttributeProbe& any = parent_probes.attribute_probes.front();
  if (any.Covered(sites) == 0) return absl::OkStatus();
  double best = -1.0;
  int64_t best_layer = 0;
  for (int64_t layer = 1; layer <= layers; ++layer) {
    const double accuracy =
        parent_probes.attribute_probes[layer - 1].Accuracy(states[layer], sites);
    if (accuracy > best) {
      best = accuracy;
      best_layer = layer;
    }
  }
  figures["repr.attribute_probe_accuracy"] = best;
  figures["repr.attribute_probe_layer"] = static_cast<double>(best_layer);
  figures["repr.attribute_probe_chance"] = any.Chance(sites);
  figures["repr.attribute_probe_n"] = static_cast<double>(any.Covered(sites));
  if (std::isfinite(parent_probes.probe_holdout_accuracy)) {
    figures["repr.attribute_probe_holdout"] = parent_probes.probe_holdout_accuracy;
  }
  return absl::OkStatus();
}

// The reference model's scores (T2), when it applies to this forget set.
struct ReferenceScores {
  ExampleScores forget;
  std::optional<double> loss_auc;
};

// The comparisons of `model` (the parent itself for "before") with the parent and the reference.
absl::Status AddComparisons(std::map<std::string, double>& figures, const LanguageModel& parent,
                            const TextProbes& probes, const ExampleScores& forget,
                            const ParentProbeScores& parent_probes,
                            const std::optional<ReferenceScores>& reference,
                            const CancellationToken* cancel) {
  if (parent_probes.holdout.has_value()) {
    const ExampleScores& ph = *parent_probes.holdout;
    const double holdout_p = Mean(ph.answer_probability);
    figures["unseen.answer_probability_ratio"] =
        Mean(forget.answer_probability) / std::max(holdout_p, kRatioEpsilon);
    UNL_RETURN_IF_ERROR(AddKs(figures, "unseen.answer_probability_", forget.answer_probability,
                              ph.answer_probability));
    UNL_RETURN_IF_ERROR(AddKs(figures, "unseen.truth_ratio_", forget.truth_ratio, ph.truth_ratio));
    if (!forget.truth_ratio.empty() && !ph.truth_ratio.empty()) {
      figures["unseen.ks_n"] = static_cast<double>(forget.truth_ratio.size());
      figures["unseen.ks_m"] = static_cast<double>(ph.truth_ratio.size());
    }
    UNL_ASSIGN_OR_RETURN(std::vector<double> lps,
                         AnswerMeanLogProbs(parent, probes.forget, forget.greedy_answers, cancel));
    if (!lps.empty() && std::isfinite(parent_probes.holdout_self_log_prob)) {
      figures["forget.answer_plausibility"] = Mean(lps) - parent_probes.holdout_self_log_prob;
    }
  }
  if (reference.has_value()) {
    UNL_RETURN_IF_ERROR(
        AddKs(figures, "forget_quality.", forget.truth_ratio, reference->forget.truth_ratio));
    if (!forget.truth_ratio.empty() && !reference->forget.truth_ratio.empty()) {
      figures["forget_quality.ks_n"] = static_cast<double>(forget.truth_ratio.size());
    }
    auto auc = figures.find("mia.loss_auc");
    if (reference->loss_auc.has_value() && auc != figures.end() && *reference->loss_auc > 0.0) {
      figures["mia.privleak_reference"] =
          (auc->second - *reference->loss_auc) / *reference->loss_auc;
    }
  }
  return absl::OkStatus();
}

// Why the reference model does not apply, or "" when it does.
std::string ReferenceGap(const TextProbes& probes) {
  if (probes.reference == nullptr) {
    return "no reference model: the model directory has no reference/ (a model never trained on "
           "the forget set)";
  }
  size_t unseen = 0;
  for (const TextExample& e : probes.forget) unseen += probes.reference_unseen.count(e.question);
  if (unseen < probes.forget.size()) {
    return absl::StrCat("the reference model trained on ", probes.forget.size() - unseen,
                        " of the ", probes.forget.size(), " forget examples");
  }
  return "";
}

absl::StatusOr<std::optional<ReferenceScores>> ScoreReference(
    const TextProbes& probes, const ParentProbeScores& parent_probes,
    const CancellationToken* cancel) {
  if (!ReferenceGap(probes).empty()) return std::optional<ReferenceScores>();
  ReferenceScores out;
  UNL_ASSIGN_OR_RETURN(out.forget,
                       ScoreExamples(*probes.reference, probes.forget, kHoldoutScoring, cancel));
  if (parent_probes.reference_holdout.has_value()) {
    UNL_ASSIGN_OR_RETURN(out.loss_auc, RocAuc(Negated(out.forget.mean_nll),
                                              Negated(parent_probes.reference_holdout->mean_nll)));
  }
  return std::optional<ReferenceScores>(std::move(out));
}

std::string SetDigest(const std::vector<TextExample>& examples) {
  Sha256 sha;
  auto field = [&](std::string_view text) {  // length-prefixed, so fields cannot run together
    sha.Update(absl::StrCat(text.size(), ":"));
    sha.Update(text);
  };
  for (const TextExample& e : examples) {
    field(e.question);
    field(e.answer);
    for (const std::string& q : e.paraphrased_questions) field(q);
    sha.Update("|");
    for (const std::string& a : e.perturbed_answers) field(a);
    sha.Update("\n");
  }
  return sha.HexDigest();
}

// The evaluation suite: the definitions' version, the scoring constants, the probe sets and the
// model's probe files (reference model included).
std::string SuiteSha256(const TextProbes& probes, const std::string& model_digest,
                        int max_probe_examples) {
  Sha256 sha;
  sha.Update(absl::StrFormat(
      "%s min_k=%.3f rouge_extra=%d batch=%d repetition_gram=%d greedy=%d cap=%d probe=%d/%g/%g\n",
      kTextSuiteVersion, kMinKFraction, kRougeExtraTokens, kVerificationBatchSize, kRepetitionGram,
      kGreedyExamples, max_probe_examples, AttributeProbe::kProbeSteps,
      AttributeProbe::kProbeLearningRate, AttributeProbe::kProbeWeightDecay));
  sha.Update(absl::StrCat("retain ", SetDigest(probes.retain), "\n"));
  sha.Update(absl::StrCat("holdout ", SetDigest(probes.holdout), "\n"));
  sha.Update(absl::StrCat("model ", model_digest, "\n"));
  return sha.HexDigest();
}

std::vector<TierCoverage> TextTiers(const TextProbes& probes) {
  std::vector<TierCoverage> tiers;
  tiers.push_back({Tier::kT0, true,
                   absl::StrCat("the model before and after on ", probes.forget.size(),
                                " forget and ", probes.retain.size(), " retain examples")});
  if (probes.holdout.empty()) {
    tiers.push_back({Tier::kT1, false, "the model ships no holdout probes (probes/holdout.jsonl)"});
  } else {
    tiers.push_back({Tier::kT1, true,
                     absl::StrCat(probes.holdout.size(),
                                  " holdout examples the model never trained on; PrivLeak's "
                                  "reference AUC declared 0.5")});
  }
  const std::string gap = ReferenceGap(probes);
  tiers.push_back({Tier::kT2, gap.empty(),
                   gap.empty() ? "a reference model never trained on the forget set "
                                 "(<model dir>/reference/)"
                               : gap});
  return tiers;
}

}  // namespace

double RepetitionRate(std::string_view text) {
  const size_t n = static_cast<size_t>(kRepetitionGram);
  if (text.size() < n + 1) return 0.0;
  std::set<std::string_view> distinct;
  const size_t total = text.size() - n + 1;
  for (size_t i = 0; i < total; ++i) distinct.insert(text.substr(i, n));
  return 1.0 - static_cast<double>(distinct.size()) / static_cast<double>(total);
}

absl::StatusOr<ExampleScores> ScoreExamples(const LanguageModel& model,
                                            const std::vector<TextExample>& examples,
                                            bool with_rouge, const CancellationToken* cancel) {
  ScoreOptions options;
  options.greedy = with_rouge;
  return ScoreExamples(model, examples, options, cancel);
}

absl::StatusOr<ExampleScores> ScoreExamples(const LanguageModel& model,
                                            const std::vector<TextExample>& examples,
                                            const ScoreOptions& options,
                                            const CancellationToken* cancel) {
  std::vector<QaPair> pairs;
  pairs.reserve(examples.size());
  for (const TextExample& e : examples) pairs.push_back({e.question, e.answer});
  ExampleScores scores;
  UNL_ASSIGN_OR_RETURN(
      std::vector<std::vector<double>> lps,
      AnswerTokenLogProbs(model, pairs, cancel,
                          options.vocab_log_probs ? &scores.vocab_log_probs : nullptr));
  for (std::vector<double>& v : lps) {
    const double mean_lp = Mean(v);
    scores.mean_nll.push_back(-mean_lp);
    scores.answer_probability.push_back(std::exp(mean_lp));
    std::sort(v.begin(), v.end());
    const size_t k = std::max<size_t>(
        1, static_cast<size_t>(std::floor(kMinKFraction * static_cast<double>(v.size()))));
    scores.min_k_log_prob.push_back(Mean(std::vector<double>(v.begin(), v.begin() + k)));
  }
  UNL_ASSIGN_OR_RETURN(scores.truth_ratio,
                       TruthRatios(model, examples, scores.answer_probability, cancel));
  if (options.paraphrases) {
    UNL_ASSIGN_OR_RETURN(scores.paraphrase_probability,
                         ParaphraseProbabilities(model, examples, cancel));
  }
  if (options.greedy) {
    const size_t greedy = std::min(examples.size(), static_cast<size_t>(kGreedyExamples));
    UNL_ASSIGN_OR_RETURN(
        scores.greedy_answers,
        GreedyAnswers(model, std::vector<TextExample>(examples.begin(), examples.begin() + greedy),
                      cancel));
    for (size_t i = 0; i < greedy; ++i) {
      scores.rouge_l_recall.push_back(RougeLRecall(examples[i].answer, scores.greedy_answers[i]));
    }
  }
  return scores;
}

absl::StatusOr<std::map<std::string, double>> ComputeTextFigures(const LanguageModel& model,
                                                                 const TextProbes& probes,
                                                                 const CancellationToken* cancel) {
  if (probes.forget.empty()) {
    return absl::InvalidArgumentError("verification needs at least one forget example");
  }
  UNL_ASSIGN_OR_RETURN(ExampleScores forget, ScoreExamples(model, probes.forget, true, cancel));
  std::optional<ExampleScores> retain, holdout;
  ScoreOptions options;
  options.greedy = true;
  options.paraphrases = false;  // only the forget set's paraphrase figure exists
  if (!probes.retain.empty()) {
    UNL_ASSIGN_OR_RETURN(retain, ScoreExamples(model, probes.retain, options, cancel));
  }
  if (!probes.holdout.empty()) {
    UNL_ASSIGN_OR_RETURN(holdout, ScoreExamples(model, probes.holdout, options, cancel));
  }
  return FiguresOf(forget, retain ? &*retain : nullptr, holdout ? &*holdout : nullptr);
}

namespace {

// Mean over positions of KL(p_before || p_after), from [positions, V] log-probabilities.
absl::StatusOr<double> KlOfLogProbs(const torch::Tensor& before, const torch::Tensor& after) {
  if (!before.defined() || !after.defined() || before.size(0) == 0) {
    return absl::InvalidArgumentError("collateral KL: no answer positions");
  }
  if (before.sizes() != after.sizes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("collateral KL: log-probabilities of shapes ", c10::str(before.sizes()),
                     " and ", c10::str(after.sizes()), " (vocab sizes differ?)"));
  }
  return TorchCall("collateral KL", [&]() -> absl::StatusOr<double> {
    c10::InferenceMode guard;
    torch::Tensor kl = (before.exp() * (before - after)).sum(-1);  // [positions]
    return kl.to(torch::kFloat64).mean().item<double>();
  });
}

}  // namespace

absl::StatusOr<double> CollateralKl(const LanguageModel& before, const LanguageModel& after,
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
  torch::Tensor lp_before, lp_after;
  UNL_RETURN_IF_ERROR(AnswerTokenLogProbs(before, pairs, cancel, &lp_before).status());
  UNL_RETURN_IF_ERROR(AnswerTokenLogProbs(after, pairs, cancel, &lp_after).status());
  return KlOfLogProbs(lp_before, lp_after);
}

std::vector<Threshold> DefaultTextThresholds() {
  return {
      {"unseen.answer_probability_ratio", Comparison::kAtMost, 2.0, /*required=*/true},
      {"mia.privleak", Comparison::kAtLeast, -0.4, /*required=*/true},
      {"forget.answer_plausibility", Comparison::kAtLeast, -1.5, /*required=*/true},
      {"forget.answer_repetition", Comparison::kAtMost, 0.5, /*required=*/true},
      {"retain.rouge_l_recall", Comparison::kRatioAtLeast, 0.9, /*required=*/false},
      {"retain.answer_probability", Comparison::kRatioAtLeast, 0.85, /*required=*/false},
      {"retain.model_utility", Comparison::kRatioAtLeast, 0.9, /*required=*/false},
  };
}

Tier TextFigureTier(const std::string& figure) {
  auto starts = [&](const char* prefix) { return figure.rfind(prefix, 0) == 0; };
  if (starts("forget_quality.") || figure == "mia.privleak_reference") return Tier::kT2;
  if (starts("holdout.") || starts("mia.") || starts("unseen.") ||
      figure == "forget.answer_plausibility" || figure == "repr.attribute_probe_holdout") {
    return Tier::kT1;
  }
  return Tier::kT0;
}

namespace {

absl::Status CheckThresholdBounds(const std::vector<Threshold>& thresholds) {
  for (const Threshold& t : thresholds) {
    if (!std::isfinite(t.bound) || (t.comparison != Comparison::kAtLeast &&
                                    t.comparison != Comparison::kAtMost && t.bound < 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat("verification threshold ", t.figure, " ",
                                                     ComparisonName(t.comparison),
                                                     " needs a finite bound, got ", t.bound));
    }
  }
  return absl::OkStatus();
}

// VerifyText with the parent's probe scores supplied (cached by the verifier) and the suite hash.
// `before_out` (may be null) receives the parent's figures.
absl::StatusOr<VerificationReport> VerifyTextWith(
    const LanguageModel& before, const LanguageModel& after, const TextProbes& probes,
    const ParentProbeScores& parent_probes, const std::vector<Threshold>& thresholds,
    const CancellationToken* cancel, const std::map<std::string, double>* before_figures,
    std::map<std::string, double>* before_out = nullptr) {
  UNL_RETURN_IF_ERROR(CheckThresholdBounds(thresholds));
  if (probes.forget.empty()) {
    return absl::InvalidArgumentError("verification needs at least one forget example");
  }
  UNL_ASSIGN_OR_RETURN(std::optional<ReferenceScores> reference,
                       ScoreReference(probes, parent_probes, cancel));
  const ExampleScores* p_retain = parent_probes.retain ? &*parent_probes.retain : nullptr;
  const ExampleScores* p_holdout = parent_probes.holdout ? &*parent_probes.holdout : nullptr;

  std::map<std::string, double> before_map;
  if (before_figures != nullptr) {
    before_map = *before_figures;
  } else {
    UNL_ASSIGN_OR_RETURN(ExampleScores p_forget,
                         ScoreExamples(before, probes.forget, true, cancel));
    before_map = FiguresOf(p_forget, p_retain, p_holdout);
    UNL_RETURN_IF_ERROR(
        AddComparisons(before_map, before, probes, p_forget, parent_probes, reference, cancel));
    UNL_RETURN_IF_ERROR(
        AddRepresentation(before_map, before, before, probes, parent_probes, cancel));
  }
  std::map<std::string, double> after_map;
  std::optional<ExampleScores> retain;  // the candidate's
  if (&before == &after) {              // the parent judged as its own candidate
    after_map = before_map;
  } else {
    UNL_ASSIGN_OR_RETURN(ExampleScores forget, ScoreExamples(after, probes.forget, true, cancel));
    if (!probes.retain.empty()) {
      UNL_ASSIGN_OR_RETURN(retain, ScoreExamples(after, probes.retain, kRetainScoring, cancel));
    }
    std::optional<ExampleScores> holdout;
    if (!probes.holdout.empty()) {
      UNL_ASSIGN_OR_RETURN(holdout, ScoreExamples(after, probes.holdout, kHoldoutScoring, cancel));
    }
    after_map = FiguresOf(forget, retain ? &*retain : nullptr, holdout ? &*holdout : nullptr);
    // The candidate's holdout ROUGE is not computed (greedy decoding dominates verification
    // time); the parent's stays in "before".
    after_map.erase("holdout.rouge_l_recall");
    UNL_RETURN_IF_ERROR(
        AddComparisons(after_map, before, probes, forget, parent_probes, reference, cancel));
    UNL_RETURN_IF_ERROR(AddRepresentation(after_map, after, before, probes, parent_probes, cancel));
  }
  if (!probes.retain.empty()) {
    if (&before == &after) {
      after_map["retain.collateral_kl"] = 0.0;
    } else {
      UNL_ASSIGN_OR_RETURN(
          after_map["retain.collateral_kl"],
          KlOfLogProbs(parent_probes.retain->vocab_log_probs, retain->vocab_log_probs));
    }
    before_map["retain.collateral_kl"] = 0.0;
  }
  if (before_out != nullptr) *before_out = before_map;
  VerificationReport report = MakeReport(before_map, after_map, thresholds);
  for (FigureValue& f : report.figures) f.tier = TextFigureTier(f.name);
  report.forget_examples = static_cast<int>(probes.forget.size());
  report.retain_examples = static_cast<int>(probes.retain.size());
  report.holdout_examples = static_cast<int>(probes.holdout.size());
  report.tiers = TextTiers(probes);
  return report;
}

}  // namespace

absl::StatusOr<VerificationReport> VerifyText(const LanguageModel& before,
                                              const LanguageModel& after, const TextProbes& probes,
                                              const std::vector<Threshold>& thresholds,
                                              const CancellationToken* cancel,
                                              const std::map<std::string, double>* before_figures) {
  UNL_RETURN_IF_ERROR(CheckThresholdBounds(thresholds));
  UNL_ASSIGN_OR_RETURN(ParentProbeScores parent_probes, ScoreParentProbes(before, probes, cancel));
  UNL_ASSIGN_OR_RETURN(
      VerificationReport report,
      VerifyTextWith(before, after, probes, parent_probes, thresholds, cancel, before_figures));
  report.suite_sha256 = SuiteSha256(probes, "", 0);
  return report;
}

// A few versions' parent probe scores, and the parent's figures on a few forget sets (the checking
// phase computes them; the verification after the method reuses them), most recently used first.
struct TextVerifier::Cache {
  static constexpr size_t kEntries = 4;
  absl::Mutex mu;
  std::list<std::pair<std::string, std::shared_ptr<const ParentProbeScores>>> entries
      ABSL_GUARDED_BY(mu);
  std::list<std::pair<std::string, std::map<std::string, double>>> before_figures
      ABSL_GUARDED_BY(mu);
};

TextVerifier::TextVerifier(int max_probe_examples)
    : max_probe_examples_(max_probe_examples), cache_(std::make_unique<Cache>()) {}
TextVerifier::~TextVerifier() = default;

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
  for (const char* extra : {"forget.paraphrase_answer_probability",
                            "forget.answer_repetition",
                            "forget.answer_plausibility",
                            "retain.collateral_kl",
                            "retain.model_utility",
                            "mia.loss_auc",
                            "mia.min_k_auc",
                            "mia.privleak",
                            "mia.privleak_reference",
                            "unseen.answer_probability_ratio",
                            "unseen.answer_probability_ks_d",
                            "unseen.answer_probability_ks_p",
                            "unseen.truth_ratio_ks_d",
                            "unseen.truth_ratio_ks_p",
                            "unseen.ks_n",
                            "unseen.ks_m",
                            "forget_quality.ks_d",
                            "forget_quality.ks_p",
                            "forget_quality.ks_n",
                            "repr.forget_cka",
                            "repr.attribute_probe_accuracy",
                            "repr.attribute_probe_layer",
                            "repr.attribute_probe_chance",
                            "repr.attribute_probe_n",
                            "repr.attribute_probe_holdout"}) {
    names.push_back(extra);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<Threshold> TextVerifier::DefaultThresholds() const { return DefaultTextThresholds(); }

namespace {

absl::StatusOr<TextProbes> ProbesFor(const VerificationInputs& in, int cap) {
  const auto* before = in.before != nullptr ? in.before->AsLanguageModel() : nullptr;
  if (before == nullptr || in.data == nullptr || in.probes == nullptr) {
    return absl::InvalidArgumentError(
        "text verification needs language models, the erasure data and the probes");
  }
  TextProbes probes;
  probes.forget = in.data->forget;
  probes.retain = Capped(in.data->retain.empty() ? in.probes->text_retain : in.data->retain, cap);
  probes.holdout = Capped(in.probes->text_holdout, cap);
  if (in.probes->text_reference != nullptr) {
    probes.reference = in.probes->text_reference->AsLanguageModel();
    probes.reference_unseen = in.probes->text_reference_unseen;
  }
  return probes;
}

}  // namespace

absl::StatusOr<VerificationReport> TextVerifier::Verify(const VerificationInputs& in) const {
  const LanguageModel* before = in.before != nullptr ? in.before->AsLanguageModel() : nullptr;
  const LanguageModel* after = in.after != nullptr ? in.after->AsLanguageModel() : nullptr;
  if (before == nullptr || after == nullptr) {
    return absl::InvalidArgumentError("text verification needs two language models");
  }
  UNL_ASSIGN_OR_RETURN(TextProbes probes, ProbesFor(in, max_probe_examples_));
  const std::string suite = SuiteSha256(probes, in.probes->suite_digest, max_probe_examples_);
  // The parent's probe scores, cached per (parent version, suite).
  std::shared_ptr<const ParentProbeScores> parent_probes;
  const std::string key = in.parent_key.empty() ? "" : absl::StrCat(in.parent_key, "|", suite);
  if (!key.empty()) {
    absl::MutexLock lock(&cache_->mu);
    for (auto it = cache_->entries.begin(); it != cache_->entries.end(); ++it) {
      if (it->first == key) {
        parent_probes = it->second;
        cache_->entries.splice(cache_->entries.begin(), cache_->entries, it);
        break;
      }
    }
  }
  if (parent_probes == nullptr) {
    UNL_ASSIGN_OR_RETURN(ParentProbeScores scored, ScoreParentProbes(*before, probes, in.cancel));
    parent_probes = std::make_shared<const ParentProbeScores>(std::move(scored));
    if (!key.empty()) {
      absl::MutexLock lock(&cache_->mu);
      cache_->entries.emplace_front(key, parent_probes);
      while (cache_->entries.size() > Cache::kEntries) cache_->entries.pop_back();
    }
  }
  // The parent's figures on this forget set, cached under the same key and the set's digest.
  const std::string before_key =
      key.empty() ? "" : absl::StrCat(key, "|", SetDigest(probes.forget));
  std::optional<std::map<std::string, double>> cached_before;
  if (in.before_figures == nullptr && !before_key.empty()) {
    absl::MutexLock lock(&cache_->mu);
    for (const auto& [k, figures] : cache_->before_figures) {
      if (k == before_key) cached_before = figures;
    }
  }
  const std::map<std::string, double>* before_figures =
      in.before_figures != nullptr ? in.before_figures
                                   : (cached_before ? &*cached_before : nullptr);
  std::map<std::string, double> before_map;
  UNL_ASSIGN_OR_RETURN(VerificationReport report,
                       VerifyTextWith(*before, *after, probes, *parent_probes, in.thresholds,
                                      in.cancel, before_figures, &before_map));
  if (before_figures == nullptr && !before_key.empty()) {
    absl::MutexLock lock(&cache_->mu);
    cache_->before_figures.emplace_front(before_key, std::move(before_map));
    while (cache_->before_figures.size() > Cache::kEntries) cache_->before_figures.pop_back();
  }
  report.suite_sha256 = suite;
  return report;
}

absl::StatusOr<std::optional<VerificationReport>> TextVerifier::CheckAlreadyAbsent(
    const VerificationInputs& in) const {
  // Evidence of absence: the request's absolute checks on figures of tier T1 or above, among them
  // at least one "as if never seen" check (unseen.* or forget_quality.*). Ratio checks compare the
  // parent with itself here, so they say nothing and are left out.
  std::vector<Threshold> evidence;
  bool as_if_unseen = false;
  for (const Threshold& t : in.thresholds) {
    if (t.comparison == Comparison::kRatioAtMost || t.comparison == Comparison::kRatioAtLeast ||
        TextFigureTier(t.figure) == Tier::kT0) {
      continue;
    }
    as_if_unseen = as_if_unseen || t.figure.rfind("unseen.", 0) == 0 ||
                   t.figure.rfind("forget_quality.", 0) == 0;
    evidence.push_back(t);
  }
  if (!as_if_unseen) return std::optional<VerificationReport>();
  VerificationInputs self = in;
  self.after = in.before;
  self.before_figures = nullptr;
  self.thresholds = evidence;
  UNL_ASSIGN_OR_RETURN(VerificationReport report, Verify(self));
  const bool t1 = report.tiers.size() > 1 && report.tiers[1].computed;
  if (!t1 || !report.passed) return std::optional<VerificationReport>();
  report.already_absent = true;
  return std::optional<VerificationReport>(std::move(report));
}

}  // namespace unlearning::core
