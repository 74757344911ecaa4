#include "core/verify/vision_verification.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/verify/auc.h"

namespace unlearning::core {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// [N] bool: whether each label is one of `classes`.
torch::Tensor InClasses(const torch::Tensor& labels, const std::vector<int64_t>& classes) {
  torch::Tensor mask = torch::zeros_like(labels, torch::kBool);
  for (int64_t c : classes) mask = mask.logical_or(labels.eq(c));
  return mask;
}

// Per-sample cross-entropy and correctness over `images`, batched.
struct Scored {
  torch::Tensor loss;     // [N] float64
  torch::Tensor correct;  // [N] bool
};
absl::StatusOr<Scored> Score(const ImageClassifier& model, const LabelledImages& data,
                             const CancellationToken* cancel) {
  std::vector<torch::Tensor> losses, correct;
  const int64_t n = data.images.size(0);
  for (int64_t start = 0; start < n; start += kVisionBatchSize) {
    if (cancel != nullptr && cancel->cancelled()) return absl::CancelledError("cancelled");
    const int64_t end = std::min(n, start + kVisionBatchSize);
    torch::Tensor logits = model.ClassifyLogits(data.images.slice(0, start, end)).cpu();
    torch::Tensor labels = data.labels.slice(0, start, end).cpu();
    losses.push_back(
        at::cross_entropy_loss(logits, labels, {}, at::Reduction::None).to(torch::kFloat64));
    correct.push_back(logits.argmax(1).eq(labels));
  }
  if (losses.empty()) return Scored{torch::zeros({0}, torch::kFloat64), torch::zeros({0})};
  return Scored{torch::cat(losses), torch::cat(correct)};
}

double MeanOf(const torch::Tensor& correct, const torch::Tensor& mask) {
  const int64_t n = mask.sum().item<int64_t>();
  if (n == 0) return kNaN;
  return correct.masked_select(mask).to(torch::kFloat64).mean().item<double>();
}

std::vector<double> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat64).contiguous().cpu();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

absl::Status CheckClasses(const ImageClassifier& model, const std::vector<int64_t>& forget) {
  if (forget.empty()) return absl::InvalidArgumentError("no class to forget");
  for (int64_t c : forget) {
    if (c < 0 || c >= model.num_classes()) {
      return absl::InvalidArgumentError(absl::StrCat("class ", c, " does not exist (the model has ",
                                                     model.num_classes(), " classes)"));
    }
  }
  return absl::OkStatus();
}

// Penultimate features of `images`, batched, on the CPU.
torch::Tensor BatchedFeatures(const ImageClassifier& model, const torch::Tensor& images) {
  std::vector<torch::Tensor> out;
  for (int64_t start = 0; start < images.size(0); start += kVisionBatchSize) {
    const int64_t end = std::min(images.size(0), start + kVisionBatchSize);
    out.push_back(model.Features(images.slice(0, start, end)).cpu());
  }
  return torch::cat(out);
}

}  // namespace

double KnnAccuracy(const torch::Tensor& reference, const torch::Tensor& reference_labels,
                   const torch::Tensor& query, const torch::Tensor& query_labels, int64_t k) {
  if (query.size(0) == 0 || reference.size(0) == 0) return kNaN;
  c10::InferenceMode guard;
  k = std::min<int64_t>(std::max<int64_t>(1, k), reference.size(0));
  auto unit = [](const torch::Tensor& x) {
    const torch::Tensor f = x.to(torch::kFloat32);
    return f / f.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  };
  const torch::Tensor r = unit(reference);
  const torch::Tensor q = unit(query);
  const torch::Tensor nearest = std::get<1>(q.mm(r.t()).topk(k, 1));  // [Q, k]
  const torch::Tensor votes = reference_labels.cpu().index({nearest.flatten()}).view({-1, k});
  const int64_t classes =
      std::max(reference_labels.max().item<int64_t>(), query_labels.max().item<int64_t>()) + 1;
  // Per-row class counts; argmax picks the lowest class id among ties.
  torch::Tensor counts = torch::zeros({votes.size(0), classes}, torch::kLong);
  counts.scatter_add_(1, votes, torch::ones_like(votes));
  return counts.argmax(1).eq(query_labels.cpu()).to(torch::kFloat64).mean().item<double>();
}

absl::StatusOr<std::map<std::string, double>> ComputeVisionFigures(
    const ImageClassifier& model, const LabelledImages& test, const LabelledImages& train,
    const std::vector<int64_t>& forget, const std::vector<int64_t>& old,
    const CancellationToken* cancel) {
  UNL_RETURN_IF_ERROR(CheckClasses(model, forget));
  if (!old.empty()) UNL_RETURN_IF_ERROR(CheckClasses(model, old));
  if (!test.images.defined() || test.images.size(0) == 0) {
    return absl::InvalidArgumentError(
        "the model has no labelled test probes (probes/test-*.idx) to verify with");
  }
  c10::InferenceMode guard;
  std::map<std::string, double> figures;
  UNL_ASSIGN_OR_RETURN(Scored scored, Score(model, test, cancel));
  const torch::Tensor forget_mask = InClasses(test.labels.cpu(), forget);
  figures["acc_f"] = MeanOf(scored.correct, forget_mask);
  const torch::Tensor old_mask = InClasses(test.labels.cpu(), old);
  figures["acc_r"] = MeanOf(scored.correct, forget_mask.logical_or(old_mask).logical_not());
  if (old_mask.any().item<bool>()) figures["acc_o"] = MeanOf(scored.correct, old_mask);
  if (train.images.defined() && train.images.size(0) > 0) {
    const torch::Tensor train_mask = InClasses(train.labels.cpu(), forget);
    if (train_mask.any().item<bool>() && forget_mask.any().item<bool>()) {
      LabelledImages members{train.images.index({train_mask}), train.labels.index({train_mask})};
      UNL_ASSIGN_OR_RETURN(Scored member_scores, Score(model, members, cancel));
      UNL_ASSIGN_OR_RETURN(figures["mia.loss_auc"],
                           RocAuc(ToVector(member_scores.loss.neg()),
                                  ToVector(scored.loss.masked_select(forget_mask).neg())));
    }
  }
  return figures;
}

std::vector<std::string> VisionVerifier::FigureNames() const {
  return {"acc_f", "acc_o", "acc_r", "cka.forget", "h_mean", "knn.forget", "mia.loss_auc"};
}

std::vector<Threshold> VisionVerifier::DefaultThresholds() const {
  return {{"acc_f", Comparison::kRatioAtMost, 0.2, /*required=*/true},
          {"acc_r", Comparison::kRatioAtLeast, 0.9, /*required=*/true},
          {"acc_o", Comparison::kAtMost, 0.2, /*required=*/false}};
}

Tier VisionVerifier::FigureTier(const std::string& figure) const {
  return figure.rfind("mia.", 0) == 0 ? Tier::kT1 : Tier::kT0;
}

absl::StatusOr<VerificationReport> VisionVerifier::Verify(const VerificationInputs& in) const {
  const ImageClassifier* before = in.before != nullptr ? in.before->AsImageClassifier() : nullptr;
  const ImageClassifier* after = in.after != nullptr ? in.after->AsImageClassifier() : nullptr;
  if (before == nullptr || after == nullptr || in.data == nullptr || in.probes == nullptr) {
    return absl::InvalidArgumentError(
        "vision verification needs two image classifiers, the erasure data and the probes");
  }
  const std::vector<int64_t>& forget = in.data->classes.forget_classes;
  const LabelledImages& test = in.probes->images_test;
  const LabelledImages& train = in.probes->images_train;
  std::vector<int64_t> old;
  for (int64_t c : before->forgotten_classes()) {
    if (std::find(forget.begin(), forget.end(), c) == forget.end()) old.push_back(c);
  }
  std::map<std::string, double> before_map;
  if (in.before_figures != nullptr) {
    before_map = *in.before_figures;
  } else {
    UNL_ASSIGN_OR_RETURN(before_map,
                         ComputeVisionFigures(*before, test, train, forget, old, in.cancel));
  }
  UNL_ASSIGN_OR_RETURN(auto after_map,
                       ComputeVisionFigures(*after, test, train, forget, old, in.cancel));

  const double dropped = before_map["acc_f"] - after_map["acc_f"];
  const double kept = after_map["acc_r"];
  after_map["h_mean"] = dropped > 0.0 && kept > 0.0 ? 2.0 * dropped * kept / (dropped + kept) : 0.0;
  before_map["h_mean"] = 0.0;
  {
    c10::InferenceMode guard;
    const torch::Tensor mask = InClasses(test.labels.cpu(), forget);
    if (mask.sum().item<int64_t>() >= 2) {
      const torch::Tensor images = test.images.index({mask}).slice(0, 0, 1000);
      after_map["cka.forget"] =
          LinearCka(before->Features(images).cpu(), after->Features(images).cpu());
      before_map["cka.forget"] = 1.0;
    }
    if (mask.any().item<bool>() && train.images.defined() && train.images.size(0) > 0) {
      const torch::Tensor images = test.images.index({mask});
      const torch::Tensor labels = test.labels.cpu().index({mask});
      for (auto [model, figures] : {std::pair{before, &before_map}, std::pair{after, &after_map}}) {
        if (in.cancel != nullptr && in.cancel->cancelled())
          return absl::CancelledError("cancelled");
        (*figures)["knn.forget"] =
            KnnAccuracy(BatchedFeatures(*model, train.images), train.labels,
                        BatchedFeatures(*model, images), labels, kVisionKnnK);
      }
    }
  }
  VerificationReport report = MakeReport(before_map, after_map, in.thresholds, this);
  report.tiers = {
      {Tier::kT0, true, "the model before and after on the labelled test split (accuracies, CKA)"},
      {Tier::kT1, report.Find("mia.loss_auc") != nullptr,
       report.Find("mia.loss_auc") != nullptr
           ? "forgotten-class test samples the model never trained on vs its training samples"
           : "the model ships no training-split probes of the forgotten classes"},
      {Tier::kT2, false, "no model retrained without the forgotten classes is available"}};
  const torch::Tensor mask = InClasses(test.labels.cpu(), forget);
  report.forget_examples = static_cast<int>(mask.sum().item<int64_t>());
  report.retain_examples = static_cast<int>(
      InClasses(test.labels.cpu(), old).logical_or(mask).logical_not().sum().item<int64_t>());
  report.holdout_examples = 0;
  return report;
}

}  // namespace unlearning::core
