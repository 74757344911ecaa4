#include "core/methods/losses.h"

#include <cmath>

#include "absl/strings/str_cat.h"

#include "core/data/text_example.h"

namespace unlearning::core {
namespace {

constexpr double kLog2 = 0.69314718055994530942;

void CheckShapes(const torch::Tensor& logits, const torch::Tensor& labels) {
  TORCH_CHECK(logits.dim() == 3, "logits must be [B, T, V], got ", logits.sizes());
  TORCH_CHECK(labels.dim() == 2, "labels must be [B, T], got ", labels.sizes());
  TORCH_CHECK(logits.size(0) == labels.size(0) && logits.size(1) == labels.size(1), "logits ",
              logits.sizes(), " and labels ", labels.sizes(), " disagree");
}

// log p(label) at every position; garbage (label clamped to 0) at ignored
// positions.
//   returns [B, T] float32.
torch::Tensor RawTokenLogProbs(const torch::Tensor& logits, const torch::Tensor& labels) {
  CheckShapes(logits, labels);
  torch::Tensor log_probs = logits.to(torch::kFloat32).log_softmax(-1);  // [B, T, V]
  torch::Tensor index = labels.clamp_min(0).unsqueeze(-1);               // [B, T, 1]
  return log_probs.gather(-1, index).squeeze(-1);                        // [B, T]
}

}  // namespace

torch::Tensor AnswerMask(const torch::Tensor& labels) {
  return labels.ne(kIgnoreIndex).to(torch::kFloat32);
}

torch::Tensor AnswerTokenCounts(const torch::Tensor& labels) { return AnswerMask(labels).sum(1); }

torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& labels) {
  return RawTokenLogProbs(logits, labels) * AnswerMask(labels);
}

torch::Tensor TokenProbs(const torch::Tensor& logits, const torch::Tensor& labels) {
  return RawTokenLogProbs(logits, labels).exp() * AnswerMask(labels);
}

torch::Tensor MeanAnswerProbability(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::Tensor counts = AnswerTokenCounts(labels).clamp_min(1.0);  // [B]
  return TokenProbs(logits, labels).sum(1) / counts;
}

torch::Tensor SequenceLogProb(const torch::Tensor& logits, const torch::Tensor& labels) {
  return TokenLogProbs(logits, labels).sum(1);
}

torch::Tensor MeanAnswerLogProb(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::Tensor counts = AnswerTokenCounts(labels).clamp_min(1.0);  // [B]
  return SequenceLogProb(logits, labels) / counts;
}

torch::Tensor GeometricMeanAnswerProbability(const torch::Tensor& logits,
                                             const torch::Tensor& labels) {
  return MeanAnswerLogProb(logits, labels).exp();
}

torch::Tensor TokenCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::Tensor total = AnswerMask(labels).sum().clamp_min(1.0);  // scalar
  return -TokenLogProbs(logits, labels).sum() / total;
}

const char* FDivergenceName(FDivergence divergence) {
  switch (divergence) {
    case FDivergence::kKl:
      return "kl";
    case FDivergence::kJensenShannon:
      return "js";
    case FDivergence::kPearson:
      return "pearson";
    case FDivergence::kTotalVariation:
      return "tv";
  }
  return "unknown";
}

absl::StatusOr<FDivergence> ParseFDivergence(std::string_view name) {
  for (FDivergence d : {FDivergence::kKl, FDivergence::kJensenShannon, FDivergence::kPearson,
                        FDivergence::kTotalVariation}) {
    if (name == FDivergenceName(d)) return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("flat.divergence must be one of \"kl\", \"js\", "
                   "\"pearson\", \"tv\", got \"",
                   std::string(name), "\""));
}

torch::Tensor FlatActivation(FDivergence divergence, const torch::Tensor& v) {
  switch (divergence) {
    case FDivergence::kKl:
    case FDivergence::kPearson:
      return v;
    case FDivergence::kJensenShannon:
      // log 2 − log(1 + e^{−v}) = log 2 − softplus(−v).
      return kLog2 - torch::softplus(-v);
    case FDivergence::kTotalVariation:
      return 0.5 * v.tanh();
  }
  TORCH_CHECK(false, "unknown divergence");
}

torch::Tensor FlatConjugateOfActivation(FDivergence divergence, const torch::Tensor& v) {
  switch (divergence) {
    case FDivergence::kKl:
      return (v - 1.0).exp();
    case FDivergence::kPearson:
      return v * v / 4.0 + v;
    case FDivergence::kJensenShannon:
      // f*(t) = −log(2 − e^t) at t = g*(v) gives v + log(1 + e^{−v}) − log 2.
      return v + torch::softplus(-v) - kLog2;
    case FDivergence::kTotalVariation:
      return 0.5 * v.tanh();
  }
  TORCH_CHECK(false, "unknown divergence");
}

torch::Tensor FlatLoss(FDivergence divergence, const torch::Tensor& template_prob,
                       const torch::Tensor& forget_prob) {
  TORCH_CHECK(template_prob.dim() == 1 && template_prob.sizes() == forget_prob.sizes(),
              "template_prob ", template_prob.sizes(), " and forget_prob ", forget_prob.sizes(),
              " must both be [B]");
  torch::Tensor pe = template_prob.to(torch::kFloat32);  // [B]
  torch::Tensor pf = forget_prob.to(torch::kFloat32);    // [B]
  return (-FlatActivation(divergence, pe) + FlatConjugateOfActivation(divergence, pf)).mean();
}

torch::Tensor ReferenceCodeAggregatedProbability(const torch::Tensor& logits,
                                                 const torch::Tensor& labels) {
  CheckShapes(logits, labels);
  // The reference code shifts an L-token sequence to L−1 prediction positions;
  // pre-shifted labels of width T correspond to L = T, so the denominator is
  // B·(T−1).
  const int64_t positions = labels.size(0) * std::max<int64_t>(labels.size(1) - 1, 1);
  return TokenProbs(logits, labels).sum() / static_cast<double>(positions);
}

torch::Tensor FlatLossReferenceCode(FDivergence divergence, const torch::Tensor& template_logits,
                                    const torch::Tensor& template_labels,
                                    const torch::Tensor& forget_logits,
                                    const torch::Tensor& forget_labels) {
  torch::Tensor pe = ReferenceCodeAggregatedProbability(template_logits, template_labels);
  torch::Tensor pf = ReferenceCodeAggregatedProbability(forget_logits, forget_labels);
  return -FlatActivation(divergence, pe) + FlatConjugateOfActivation(divergence, pf);
}

torch::Tensor GradientAscentLoss(const torch::Tensor& forget_logits,
                                 const torch::Tensor& forget_labels) {
  return -TokenCrossEntropy(forget_logits, forget_labels);
}

torch::Tensor GradientDifferenceLoss(const torch::Tensor& forget_logits,
                                     const torch::Tensor& forget_labels,
                                     const torch::Tensor& retain_logits,
                                     const torch::Tensor& retain_labels, double forget_weight,
                                     double retain_weight) {
  return -forget_weight * TokenCrossEntropy(forget_logits, forget_labels) +
         retain_weight * TokenCrossEntropy(retain_logits, retain_labels);
}

torch::Tensor NpoLoss(const torch::Tensor& policy_logprob, const torch::Tensor& reference_logprob,
                      double beta) {
  TORCH_CHECK(beta > 0.0, "beta must be positive, got ", beta);
  TORCH_CHECK(policy_logprob.sizes() == reference_logprob.sizes(), "policy_logprob ",
              policy_logprob.sizes(), " and reference_logprob ", reference_logprob.sizes(),
              " disagree");
  torch::Tensor log_ratio =
      policy_logprob.to(torch::kFloat32) - reference_logprob.to(torch::kFloat32);  // [B]
  return -(2.0 / beta) * torch::log_sigmoid(-beta * log_ratio).mean();
}

}  // namespace unlearning::core
