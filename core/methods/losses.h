// Pure tensor functions shared by the text unlearning methods (FLAT, GA, GD,
// NPO) and by the benchmarks: per-example answer-token statistics from logits
// and pre-shifted labels, the FLAT f-divergence terms (METHODS.md §1.2) and the
// baseline losses (METHODS.md §5).
//
// Shapes: B = batch, T = sequence length, V = vocab size. Labels are
// pre-shifted as produced by Collate() (core/data/text_example.h): labels[b, t]
// is the token logits[b, t] must predict, or kIgnoreIndex (-100) where nothing
// is supervised (prompt, padding, last position). Every function computes in
// float32 (logits of other dtypes are upcast) and is differentiable w.r.t. the
// logits. Functions throw c10::Error on shape mismatches (they are called
// inside TorchCall boundaries).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include <torch/types.h>

namespace unlearning::core {

// ---- Per-token and per-example answer statistics
// ------------------------------------------------

// Mask of supervised positions.
//   labels: [B, T] int64; returns [B, T] float32 (1 where labels != -100, else
//   0).
torch::Tensor AnswerMask(const torch::Tensor& labels);

// Number of supervised tokens per example.
//   labels: [B, T] int64; returns [B] float32.
torch::Tensor AnswerTokenCounts(const torch::Tensor& labels);

// log p(label) at every position, 0 at ignored positions.
//   logits: [B, T, V]; labels: [B, T] int64; returns [B, T] float32.
torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& labels);

// p(label) at every position (softmax + gather, fp32), 0 at ignored positions.
//   logits: [B, T, V]; labels: [B, T] int64; returns [B, T] float32.
torch::Tensor TokenProbs(const torch::Tensor& logits, const torch::Tensor& labels);

// FLAT's P̄: arithmetic mean of the answer-token probabilities per example,
// (1/|y|) Σ_i p(y_i | x, y_<i). 0 for an example without supervised tokens.
//   logits: [B, T, V]; labels: [B, T] int64; returns [B] float32 in [0, 1].
torch::Tensor MeanAnswerProbability(const torch::Tensor& logits, const torch::Tensor& labels);

// Sequence log-probability log π(y|x) = Σ_i log p(y_i | x, y_<i) per example
// (NPO).
//   logits: [B, T, V]; labels: [B, T] int64; returns [B] float32 (<= 0).
torch::Tensor SequenceLogProb(const torch::Tensor& logits, const torch::Tensor& labels);

// Mean answer-token log-probability per example, (1/|y|) Σ_i log p(y_i | ...).
// 0 for an example without supervised tokens.
//   logits: [B, T, V]; labels: [B, T] int64; returns [B] float32 (<= 0).
torch::Tensor MeanAnswerLogProb(const torch::Tensor& logits, const torch::Tensor& labels);

// VERIFICATION.md's "answer probability": per-token geometric mean
// p(y|x)^(1/|y|) per example, i.e. exp(MeanAnswerLogProb).
//   logits: [B, T, V]; labels: [B, T] int64; returns [B] float32 in [0, 1].
torch::Tensor GeometricMeanAnswerProbability(const torch::Tensor& logits,
                                             const torch::Tensor& labels);

// Token-level cross-entropy averaged over all supervised tokens of the batch
// (Hugging Face `model(**batch).loss`). 0 if the batch has no supervised token.
//   logits: [B, T, V]; labels: [B, T] int64; returns a float32 scalar.
torch::Tensor TokenCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels);

// ---- FLAT (METHODS.md §1.2)
// -----------------------------------------------------------------------

// The f-divergences FLAT offers: those whose gradient raises the template
// answer and lowers the forget answer (λ_e > 0 and λ_f > 0).
enum class FDivergence { kKl, kJensenShannon, kPearson, kTotalVariation };

// "kl", "js", "pearson", "tv".
const char* FDivergenceName(FDivergence divergence);
// Inverse of FDivergenceName. kInvalidArgument listing the allowed names
// otherwise.
absl::StatusOr<FDivergence> ParseFDivergence(std::string_view name);

// The optimal variational function g*(v) ("activation").
//   KL: v;  JS: log 2 − log(1 + e^{−v});  Pearson: v;  TV: ½·tanh(v).
//   v: any shape float32; returns the same shape.
torch::Tensor FlatActivation(FDivergence divergence, const torch::Tensor& v);

// f*(g*(v)), the conjugate applied to the activation.
//   KL: e^{v−1};  JS: v + log(1 + e^{−v}) − log 2;  Pearson: v²/4 + v;  TV:
//   ½·tanh(v). v: any shape float32; returns the same shape.
torch::Tensor FlatConjugateOfActivation(FDivergence divergence, const torch::Tensor& v);

// The paper's per-example FLAT loss: mean_b [ −g*(P̄e_b) + f*(g*(P̄f_b)) ].
//   template_prob (P̄e): [B] float32; forget_prob (P̄f): [B] float32; returns a
//   float32 scalar.
// With KL: mean_b [ −P̄e_b + exp(P̄f_b − 1) ].
torch::Tensor FlatLoss(FDivergence divergence, const torch::Tensor& template_prob,
                       const torch::Tensor& forget_prob);

// The reference code's aggregated probability (ProbLossStable + .mean()): the
// sum of the answer-token probabilities of the whole batch divided by B·(T−1),
// i.e. a mean over all positions of the un-shifted sequence including prompt
// and padding (masked positions count 0).
//   logits: [B, T, V]; labels: [B, T] int64; returns a float32 scalar.
torch::Tensor ReferenceCodeAggregatedProbability(const torch::Tensor& logits,
                                                 const torch::Tensor& labels);

// The reference code's FLAT loss: −g*(Pe) + f*(g*(Pf)) applied once to the
// batch scalars of ReferenceCodeAggregatedProbability.
//   template_logits: [B, Te, V]; template_labels: [B, Te]; forget_logits: [B,
//   Tf, V]; forget_labels: [B, Tf]; returns a float32 scalar.
torch::Tensor FlatLossReferenceCode(FDivergence divergence, const torch::Tensor& template_logits,
                                    const torch::Tensor& template_labels,
                                    const torch::Tensor& forget_logits,
                                    const torch::Tensor& forget_labels);

// ---- Baselines (METHODS.md §5)
// ------------------------------------------------------------------

// Gradient ascent: −TokenCrossEntropy(forget).
//   logits: [B, T, V]; labels: [B, T] int64; returns a float32 scalar.
torch::Tensor GradientAscentLoss(const torch::Tensor& forget_logits,
                                 const torch::Tensor& forget_labels);

// Gradient difference: −forget_weight·CE(forget) + retain_weight·CE(retain).
//   forget_logits: [Bf, Tf, V]; forget_labels: [Bf, Tf]; retain_logits: [Br,
//   Tr, V]; retain_labels: [Br, Tr]; returns a float32 scalar.
torch::Tensor GradientDifferenceLoss(const torch::Tensor& forget_logits,
                                     const torch::Tensor& forget_labels,
                                     const torch::Tensor& retain_logits,
                                     const torch::Tensor& retain_labels, double forget_weight,
                                     double retain_weight);

// NPO: −(2/β) · mean_b log σ(−β · (log π_θ(y_b|x_b) − log π_ref(y_b|x_b))),
// with summed-token sequence log-probabilities (SequenceLogProb). Bounded below
// by 0; equals (2/β)·log 2 at θ = ref.
//   policy_logprob: [B] float32 (with grad); reference_logprob: [B] float32 (no
//   grad); returns a float32 scalar.
torch::Tensor NpoLoss(const torch::Tensor& policy_logprob, const torch::Tensor& reference_logprob,
                      double beta);

}  // namespace unlearning::core
