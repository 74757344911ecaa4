#include "core/verify/generation_verification.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"

namespace unlearning::core {
namespace {

struct Judged {
  torch::Tensor labels;            // [N] requested class
  torch::Tensor predicted;         // [N] judge's class
  torch::Tensor features;          // [N, D] judge's features
  double images_per_second = 0.0;  // the sampler's throughput on this protocol (wall clock)
};

absl::StatusOr<Judged> SampleAndJudge(const ImageSampler& sampler, const ImageClassifier& judge,
                                      const GenerationProtocol& p,
                                      const CancellationToken* cancel) {
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < sampler.num_classes(); ++c) {
    for (int64_t i = 0; i < p.samples_per_class; ++i) labels.push_back(c);
  }
  SampleOptions options;
  options.steps = std::min(p.steps, sampler.max_steps());
  options.guidance_scale = p.guidance_scale;
  options.seed = p.seed;
  const torch::Tensor label_tensor = torch::tensor(labels, torch::kLong);
  const auto start = std::chrono::steady_clock::now();
  UNL_ASSIGN_OR_RETURN(torch::Tensor images, sampler.Sample(label_tensor, options, cancel));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  c10::InferenceMode guard;
  const ImageSpec spec = judge.image_spec();
  images = images.to(torch::kFloat32).cpu();
  if (images.size(2) != spec.height || images.size(3) != spec.width) {
    images = at::upsample_bilinear2d(images, {spec.height, spec.width}, false);
  }
  if (images.size(1) != spec.channels) {
    images = spec.channels == 1 ? images.mean(1, true) : images.repeat({1, spec.channels, 1, 1});
  }
  images = images.clamp(0.0, 1.0);
  return Judged{label_tensor, judge.ClassifyLogits(images).argmax(1).cpu(),
                judge.Features(images).cpu().to(torch::kFloat64),
                seconds > 0.0 ? static_cast<double>(labels.size()) / seconds : 0.0};
}

torch::Tensor InSet(const torch::Tensor& values, const std::vector<int64_t>& set) {
  torch::Tensor mask = torch::zeros_like(values, torch::kBool);
  for (int64_t c : set) mask = mask.logical_or(values.eq(c));
  return mask;
}

double Share(const torch::Tensor& hits, const torch::Tensor& mask) {
  const int64_t n = mask.sum().item<int64_t>();
  return n == 0 ? std::numeric_limits<double>::quiet_NaN()
                : hits.logical_and(mask).sum().item<double>() / static_cast<double>(n);
}

}  // namespace

double FrechetDistance(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(0) < 2 || b.size(0) < 2 || a.size(1) != b.size(1)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const torch::Tensor x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  const torch::Tensor mu1 = x.mean(0), mu2 = y.mean(0);
  const torch::Tensor c1 = (x - mu1).t().mm(x - mu1) / (x.size(0) - 1);
  const torch::Tensor c2 = (y - mu2).t().mm(y - mu2) / (y.size(0) - 1);
  // tr(sqrt(C1 C2)) = tr(sqrt(S C2 S)) with S = sqrt(C1), which is symmetric PSD.
  auto sqrt_psd = [](const torch::Tensor& m) {
    const auto [vals, vecs] = at::linalg_eigh(m);
    return vecs.mm(torch::diag(vals.clamp_min(0).sqrt())).mm(vecs.t());
  };
  const torch::Tensor s = sqrt_psd(c1);
  const double tr_sqrt =
      std::get<0>(at::linalg_eigh(s.mm(c2).mm(s))).clamp_min(0).sqrt().sum().item<double>();
  return (mu1 - mu2).pow(2).sum().item<double>() + c1.trace().item<double>() +
         c2.trace().item<double>() - 2.0 * tr_sqrt;
}

std::vector<std::string> GenerationVerifier::FigureNames() const {
  return {"earlier_forget_rate", "feature_fd",    "forget_rate",
          "images_per_second",   "override_rate", "retain_fidelity"};
}

std::vector<Threshold> GenerationVerifier::DefaultThresholds() const {
  return {{"forget_rate", Comparison::kAtMost, 0.2, /*required=*/true},
          {"retain_fidelity", Comparison::kRatioAtLeast, 0.8, /*required=*/true},
          {"earlier_forget_rate", Comparison::kAtMost, 0.2, /*required=*/false}};
}

absl::StatusOr<VerificationReport> GenerationVerifier::Verify(const VerificationInputs& in) const {
  const ImageSampler* before = in.before != nullptr ? in.before->AsImageSampler() : nullptr;
  const ImageSampler* after = in.after != nullptr ? in.after->AsImageSampler() : nullptr;
  if (before == nullptr || after == nullptr || in.data == nullptr || in.probes == nullptr) {
    return absl::InvalidArgumentError(
        "generation verification needs two class-conditional samplers and the erasure data");
  }
  const ImageClassifier* judge =
      in.probes->judge != nullptr ? in.probes->judge->AsImageClassifier() : nullptr;
  if (judge == nullptr) {
    return absl::FailedPreconditionError(
        "the model ships no judge classifier (<model dir>/judge/) to verify samples with");
  }
  const std::vector<int64_t>& forget = in.data->generation.forget_classes;
  const int64_t override_class = in.data->generation.override_class;
  // Classes earlier requests of the lineage removed (e.g. a second SFD request on a generator):
  // neither forgotten by this request nor retained.
  std::vector<int64_t> earlier;
  for (int64_t c : before->forgotten_classes()) {
    if (std::find(forget.begin(), forget.end(), c) == forget.end()) earlier.push_back(c);
  }
  UNL_ASSIGN_OR_RETURN(Judged b, SampleAndJudge(*before, *judge, protocol_, in.cancel));
  UNL_ASSIGN_OR_RETURN(Judged a, SampleAndJudge(*after, *judge, protocol_, in.cancel));
  c10::InferenceMode guard;
  const torch::Tensor forget_mask = InSet(b.labels, forget);
  const torch::Tensor earlier_mask = InSet(b.labels, earlier);
  const torch::Tensor keep = forget_mask.logical_or(earlier_mask).logical_not();
  auto figures = [&](const Judged& j) {
    std::map<std::string, double> f;
    f["forget_rate"] = Share(InSet(j.predicted, forget), forget_mask);
    if (override_class >= 0) {
      f["override_rate"] = Share(j.predicted.eq(override_class), forget_mask);
    }
    if (!earlier.empty())
      f["earlier_forget_rate"] = Share(InSet(j.predicted, earlier), earlier_mask);
    f["retain_fidelity"] = Share(j.predicted.eq(j.labels), keep);
    for (int64_t c = 0; c < before->num_classes(); ++c) {
      const torch::Tensor mask = j.labels.eq(c).logical_and(keep);
      if (mask.any().item<bool>()) {
        f[absl::StrCat("retain_fidelity.class", c)] = Share(j.predicted.eq(j.labels), mask);
      }
    }
    f["images_per_second"] = j.images_per_second;
    return f;
  };
  std::map<std::string, double> before_map = figures(b), after_map = figures(a);
  // Fréchet distances between the retained classes' samples before and after (with a teacher
  // parent and a one-step candidate: the teacher's many-step samples vs the generator's), overall
  // and per class.
  before_map["feature_fd"] = 0.0;
  after_map["feature_fd"] = FrechetDistance(b.features.index({keep}), a.features.index({keep}));
  for (int64_t c = 0; c < before->num_classes(); ++c) {
    const torch::Tensor mask = b.labels.eq(c).logical_and(keep);
    if (!mask.any().item<bool>()) continue;
    const std::string name = absl::StrCat("feature_fd.class", c);
    before_map[name] = 0.0;
    after_map[name] = FrechetDistance(b.features.index({mask}), a.features.index({mask}));
  }
  VerificationReport report = MakeReport(before_map, after_map, in.thresholds, this);
  report.tiers = {
      {Tier::kT0, true, "samples of the model before and after, judged by the model's classifier"},
      {Tier::kT1, false, "generation figures compare the two models only (no held-out set)"},
      {Tier::kT2, false, "no model retrained without the forgotten classes is available"}};
  report.forget_examples = static_cast<int>(InSet(b.labels, forget).sum().item<int64_t>());
  report.retain_examples = static_cast<int>(keep.sum().item<int64_t>());
  return report;
}

}  // namespace unlearning::core
