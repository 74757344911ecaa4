// Representation-level verification of a text erasure: does the knowledge the logits no longer
// show remain readable from the hidden states? (The seed paper "Are We Truly Forgetting?": a model
// can change its outputs while its features keep what it was asked to forget.)
//
// Attribute site: for a TOFU-style item whose perturbed answers share a prefix with the true
// answer ("Lentas was born in Nairobi." vs "Lentas was born in Oslo."), the prefix up to the last
// whitespace they share ("Lentas was born in ") is where the model must produce the attribute; the
// attribute value is the rest of the answer without its final punctuation ("Nairobi"), and the
// item's kind is its question with the entity's name blanked ("Where was {} born?"). Items without
// perturbed answers, entity or such a shared prefix have no site.
//
// Shapes: n = sites, C = hidden size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/data/text_example.h"
#include "core/models/language_model.h"

namespace unlearning::core {

struct AttributeSite {
  size_t example = 0;       // index into the examples
  std::string kind;         // the question with the entity blanked: "Where was {} born?"
  std::string answer_head;  // the answer up to the attribute: "Lentas was born in "
  std::string value;        // "Nairobi"
};

// The sites of `examples`, in order (examples without a site are skipped).
std::vector<AttributeSite> AttributeSites(const std::vector<TextExample>& examples);

// The hidden states (LanguageModel::HiddenStates) at the last token of prompt + answer_head of
// each site: element l is the stream after l blocks, [n, C] float32 on the CPU, for l = 0 ..
// num_hidden_layers(). kFailedPrecondition if the model exposes no hidden states; kCancelled if
// `cancel` fires.
absl::StatusOr<std::vector<torch::Tensor>> SiteStates(const LanguageModel& model,
                                                      const std::vector<TextExample>& examples,
                                                      const std::vector<AttributeSite>& sites,
                                                      const CancellationToken* cancel);

// Linear CKA (Kornblith et al. 2019) between two representations of the same n inputs (every
// family: the vision verifier's cka.forget too):
// ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc. 1 = the same up to
// rotation and scale; 0 = unrelated. x, y: [n, C1], [n, C2]. NaN for n < 2, differing n or a
// constant matrix.
double LinearCka(const torch::Tensor& x, const torch::Tensor& y);

// A linear probe (multinomial logistic regression on standardised states) that reads the attribute
// value from a site's hidden state. It predicts, among the values its training set has for the
// site's kind, the one with the highest score.
class AttributeProbe {
 public:
  // Trains on `states` [n, C] with the sites' values as labels: full-batch Adam from zero weights
  // (deterministic), kProbeSteps steps, L2 weight kProbeWeightDecay. kInvalidArgument when fewer
  // than two sites or states of the wrong shape.
  static absl::StatusOr<AttributeProbe> Train(const torch::Tensor& states,
                                              const std::vector<AttributeSite>& sites);

  // Whether the probe can be scored on `site`: its kind has >= 2 trained values, one of them the
  // site's value.
  bool Covers(const AttributeSite& site) const;
  // Share of the covered sites whose value the probe reads from `states` [n, C]; NaN if none is
  // covered.
  double Accuracy(const torch::Tensor& states, const std::vector<AttributeSite>& sites) const;
  // Chance accuracy on the covered sites: mean of 1 / (number of trained values of the kind).
  double Chance(const std::vector<AttributeSite>& sites) const;
  // Number of covered sites.
  int64_t Covered(const std::vector<AttributeSite>& sites) const;

  static constexpr int kProbeSteps = 300;
  static constexpr double kProbeLearningRate = 0.05;
  static constexpr double kProbeWeightDecay = 1e-3;

 private:
  torch::Tensor mean_, scale_;            // [C] standardisation
  torch::Tensor weight_, bias_;           // [K, C], [K]
  std::map<std::string, int64_t> class_;  // "kind\x1fvalue" -> class index
  std::map<std::string, std::vector<int64_t>> kind_classes_;
};

}  // namespace unlearning::core
