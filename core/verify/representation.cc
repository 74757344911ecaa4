#include "core/verify/representation.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

constexpr int64_t kSiteBatchSize = 32;

std::string ClassKey(const AttributeSite& site) {
  return absl::StrCat(site.kind, "\x1f", site.value);
}

// The longest prefix of `answer` shared by every perturbed answer, cut back to its last whitespace.
std::string SharedHead(const TextExample& e) {
  size_t shared = e.answer.size();
  for (const std::string& other : e.perturbed_answers) {
    size_t i = 0;
    while (i < shared && i < other.size() && e.answer[i] == other[i]) ++i;
    shared = i;
  }
  const size_t space = e.answer.find_last_of(" \t\n", shared == 0 ? 0 : shared - 1);
  if (shared == 0 || space == std::string::npos) return "";
  return e.answer.substr(0, space + 1);
}

}  // namespace

std::vector<AttributeSite> AttributeSites(const std::vector<TextExample>& examples) {
  std::vector<AttributeSite> sites;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TextExample& e = examples[i];
    if (e.perturbed_answers.empty() || e.entity.empty() ||
        e.question.find(e.entity) == std::string::npos) {
      continue;
    }
    AttributeSite site;
    site.example = i;
    site.answer_head = SharedHead(e);
    if (site.answer_head.empty()) continue;
    std::string value = e.answer.substr(site.answer_head.size());
    while (!value.empty() && std::ispunct(static_cast<unsigned char>(value.back()))) {
      value.pop_back();
    }
    if (value.empty()) continue;
    site.value = std::move(value);
    site.kind = absl::StrReplaceAll(e.question, {{e.entity, "{}"}});
    sites.push_back(std::move(site));
  }
  return sites;
}

absl::StatusOr<std::vector<torch::Tensor>> SiteStates(const LanguageModel& model,
                                                      const std::vector<TextExample>& examples,
                                                      const std::vector<AttributeSite>& sites,
                                                      const CancellationToken* cancel) {
  const int64_t layers = model.num_hidden_layers();
  if (layers == 0) return absl::FailedPreconditionError("the model exposes no hidden states");
  std::vector<std::vector<torch::Tensor>> parts(static_cast<size_t>(layers + 1));
  for (size_t begin = 0; begin < sites.size(); begin += kSiteBatchSize) {
    if (cancel != nullptr && cancel->cancelled()) {
      return absl::CancelledError("verification cancelled");
    }
    const size_t end = std::min(sites.size(), begin + kSiteBatchSize);
    std::vector<EncodedExample> encoded;
    std::vector<int64_t> last;
    for (size_t k = begin; k < end; ++k) {
      const AttributeSite& site = sites[k];
      encoded.push_back(EncodeQa(model.tokenizer(), examples[site.example].question,
                                 site.answer_head, /*add_eos=*/false));
      const int64_t length = static_cast<int64_t>(encoded.back().ids.size());
      last.push_back(std::min(length, model.max_context()) - 1);
    }
    UNL_RETURN_IF_ERROR(TorchCall("hidden states", [&]() {
      c10::InferenceMode guard;
      TokenBatch batch = Collate(encoded, model.pad_id(), model.max_context());
      std::vector<torch::Tensor> hidden = model.HiddenStates(batch.input_ids);  // [B, T, C] each
      TORCH_CHECK(static_cast<int64_t>(hidden.size()) == layers + 1, "HiddenStates returned ",
                  hidden.size(), " tensors for ", layers, " blocks");
      torch::Tensor index = torch::tensor(last, torch::kInt64).to(hidden[0].device());
      torch::Tensor rows = torch::arange(hidden[0].size(0), index.options());
      for (size_t l = 0; l < hidden.size(); ++l) {
        parts[l].push_back(hidden[l].index({rows, index}).to(torch::kCPU, torch::kFloat32));
      }
    }));
  }
  std::vector<torch::Tensor> out;
  for (const std::vector<torch::Tensor>& layer : parts) {
    out.push_back(layer.empty() ? torch::zeros({0, 0}) : at::cat(layer, 0));  // [n, C]
  }
  return out;
}

double LinearCka(const torch::Tensor& x, const torch::Tensor& y) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  if (x.dim() != 2 || y.dim() != 2 || x.size(0) != y.size(0) || x.size(0) < 2) return kNaN;
  c10::InferenceMode guard;
  torch::Tensor xc = x.to(torch::kFloat64) - x.to(torch::kFloat64).mean(0, true);
  torch::Tensor yc = y.to(torch::kFloat64) - y.to(torch::kFloat64).mean(0, true);
  const double cross = yc.t().mm(xc).pow(2).sum().item<double>();
  const double xx = xc.t().mm(xc).norm().item<double>();
  const double yy = yc.t().mm(yc).norm().item<double>();
  if (xx == 0.0 || yy == 0.0) return kNaN;
  return cross / (xx * yy);
}

absl::StatusOr<AttributeProbe> AttributeProbe::Train(const torch::Tensor& states,
                                                     const std::vector<AttributeSite>& sites) {
  if (sites.size() < 2 || states.dim() != 2 ||
      states.size(0) != static_cast<int64_t>(sites.size())) {
    return absl::InvalidArgumentError(absl::StrCat("attribute probe: needs >= 2 sites and [",
                                                   sites.size(), ", C] states, got ", sites.size(),
                                                   " sites"));
  }
  AttributeProbe probe;
  std::vector<int64_t> labels;
  for (const AttributeSite& site : sites) {
    auto [it, inserted] = probe.class_.emplace(ClassKey(site), probe.class_.size());
    if (inserted) probe.kind_classes_[site.kind].push_back(it->second);
    labels.push_back(it->second);
  }
  const int64_t k = static_cast<int64_t>(probe.class_.size());
  return TorchCall("attribute probe", [&]() -> absl::StatusOr<AttributeProbe> {
    c10::InferenceMode guard;
    torch::Tensor x = states.to(torch::kFloat64);
    probe.mean_ = x.mean(0);
    probe.scale_ = x.std(0, /*unbiased=*/false) + 1e-6;
    x = (x - probe.mean_) / probe.scale_;  // [n, C]
    const int64_t n = x.size(0);
    // Softmax over the classes of each site's kind only.
    torch::Tensor allowed =
        torch::full({n, k}, -std::numeric_limits<double>::infinity(), torch::kFloat64);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c : probe.kind_classes_.at(sites[static_cast<size_t>(i)].kind)) {
        allowed[i][c] = 0.0;
      }
    }
    torch::Tensor target = at::one_hot(torch::tensor(labels, torch::kInt64), k).to(torch::kFloat64);
    torch::Tensor w = torch::zeros({k, x.size(1)}, torch::kFloat64);
    torch::Tensor b = torch::zeros({k}, torch::kFloat64);
    // Adam on the closed-form gradient of the mean cross-entropy + L2 on the weights.
    torch::Tensor mw = torch::zeros_like(w), vw = torch::zeros_like(w);
    torch::Tensor mb = torch::zeros_like(b), vb = torch::zeros_like(b);
    constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
    for (int step = 1; step <= kProbeSteps; ++step) {
      torch::Tensor p = at::softmax(at::addmm(b, x, w.t()) + allowed, -1);  // [n, K]
      torch::Tensor err = (p - target) / static_cast<double>(n);            // [n, K]
      torch::Tensor gw = at::mm(err.t(), x) + kProbeWeightDecay * w;        // [K, C]
      torch::Tensor gb = err.sum(0);                                        // [K]
      const double c1 = 1.0 - std::pow(kBeta1, step), c2 = 1.0 - std::pow(kBeta2, step);
      auto adam = [&](torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& m,
                      torch::Tensor& v) {
        m.mul_(kBeta1).add_(grad, 1.0 - kBeta1);
        v.mul_(kBeta2).addcmul_(grad, grad, 1.0 - kBeta2);
        param.sub_(kProbeLearningRate * (m / c1) / ((v / c2).sqrt() + kEps));
      };
      adam(w, gw, mw, vw);
      adam(b, gb, mb, vb);
    }
    probe.weight_ = w;
    probe.bias_ = b;
    return probe;
  });
}

bool AttributeProbe::Covers(const AttributeSite& site) const {
  auto kind = kind_classes_.find(site.kind);
  return kind != kind_classes_.end() && kind->second.size() >= 2 &&
         class_.count(ClassKey(site)) > 0;
}

int64_t AttributeProbe::Covered(const std::vector<AttributeSite>& sites) const {
  return std::count_if(sites.begin(), sites.end(),
                       [this](const AttributeSite& s) { return Covers(s); });
}

double AttributeProbe::Accuracy(const torch::Tensor& states,
                                const std::vector<AttributeSite>& sites) const {
  c10::InferenceMode guard;
  if (states.dim() != 2 || states.size(0) != static_cast<int64_t>(sites.size())) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  torch::Tensor x = (states.to(torch::kFloat64) - mean_) / scale_;
  torch::Tensor scores = at::addmm(bias_, x, weight_.t()).contiguous();  // [n, K]
  auto score = scores.accessor<double, 2>();
  int64_t covered = 0, correct = 0;
  for (size_t i = 0; i < sites.size(); ++i) {
    if (!Covers(sites[i])) continue;
    ++covered;
    const std::vector<int64_t>& classes = kind_classes_.at(sites[i].kind);
    const int64_t row = static_cast<int64_t>(i);
    int64_t best = classes.front();
    for (int64_t c : classes) {
      if (score[row][c] > score[row][best]) best = c;
    }
    correct += best == class_.at(ClassKey(sites[i])) ? 1 : 0;
  }
  if (covered == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(correct) / static_cast<double>(covered);
}

double AttributeProbe::Chance(const std::vector<AttributeSite>& sites) const {
  double sum = 0.0;
  int64_t covered = 0;
  for (const AttributeSite& site : sites) {
    if (!Covers(site)) continue;
    sum += 1.0 / static_cast<double>(kind_classes_.at(site.kind).size());
    ++covered;
  }
  return covered == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / covered;
}

}  // namespace unlearning::core
