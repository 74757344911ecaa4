#include "core/models/logit_difference.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/io/files.h"
#include "core/io/safetensors.h"

namespace unlearning::core {
namespace {

constexpr char kUldConfigFile[] = "uld_config.json";
constexpr char kAdapterConfigFile[] = "adapter_config.json";
constexpr char kAdapterWeightsFile[] = "adapter_model.safetensors";
// PEFT's prefix of a LoRA tensor name: "base_model.model." + the module's HF name.
constexpr char kPeftPrefix[] = "base_model.model.";
// Logit the authors' greedy decoding gives filtered tokens.
constexpr double kFilteredLogit = -1000.0;

absl::StatusOr<double> NumberKey(const nlohmann::json& json, const char* key, double lo, double hi,
                                 bool lo_exclusive) {
  auto it = json.find(key);
  if (it == json.end() || !it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kUldConfigFile, ": \"", key, "\" must be a number"));
  }
  const double v = it->get<double>();
  if (!(lo_exclusive ? v > lo : v >= lo) || !(v <= hi)) {
    return absl::InvalidArgumentError(absl::StrCat(kUldConfigFile, ": \"", key, "\" must be in ",
                                                   lo_exclusive ? "(" : "[", lo, ", ", hi,
                                                   "], got ", v));
  }
  return v;
}

// The assistant's LoRA factors under PEFT names ("base_model.model.<module>.lora_A.weight").
std::map<std::string, torch::Tensor> AdapterTensors(const CausalLm& assistant) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, linear] : const_cast<CausalLm&>(assistant).module()->lora_linears()) {
    if (!linear->lora_enabled()) continue;
    out[absl::StrCat(kPeftPrefix, name, ".lora_A.weight")] = linear->lora_a().detach();
    out[absl::StrCat(kPeftPrefix, name, ".lora_B.weight")] = linear->lora_b().detach();
  }
  return out;
}

}  // namespace

nlohmann::json UldAssistantConfig::ToJson() const {
  return nlohmann::json{
      {"num_layers", num_layers},          {"lora_rank", lora_rank}, {"lora_alpha", lora_alpha},
      {"lora_dropout", lora_dropout},      {"alpha", alpha},         {"filter_rate", filter_rate},
      {"assistant_centering", "kept_mean"}};
}

absl::StatusOr<UldAssistantConfig> UldAssistantConfig::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(kUldConfigFile, " must be a JSON object"));
  }
  UldAssistantConfig c;
  UNL_ASSIGN_OR_RETURN(double layers, NumberKey(json, "num_layers", 1, 1e6, false));
  UNL_ASSIGN_OR_RETURN(double rank, NumberKey(json, "lora_rank", 1, 4096, false));
  c.num_layers = static_cast<int64_t>(layers);
  c.lora_rank = static_cast<int64_t>(rank);
  if (static_cast<double>(c.num_layers) != layers || static_cast<double>(c.lora_rank) != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(kUldConfigFile, ": \"num_layers\" and \"lora_rank\" must be integers"));
  }
  UNL_ASSIGN_OR_RETURN(c.lora_alpha, NumberKey(json, "lora_alpha", 0, 1e6, true));
  UNL_ASSIGN_OR_RETURN(c.lora_dropout, NumberKey(json, "lora_dropout", 0, 0.9, false));
  UNL_ASSIGN_OR_RETURN(c.alpha, NumberKey(json, "alpha", 0, 10, false));
  UNL_ASSIGN_OR_RETURN(c.filter_rate, NumberKey(json, "filter_rate", 0, 1, true));
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> MakeUldAssistant(const CausalLm& target,
                                                           const UldAssistantConfig& config,
                                                           uint64_t seed) {
  const int64_t layers = target.config().num_hidden_layers;
  if (config.num_layers < 1 || config.num_layers > layers) {
    return absl::InvalidArgumentError(absl::StrCat("uld.num_layers must be in [1, ", layers,
                                                   "] (the target's layers), got ",
                                                   config.num_layers));
  }
  return TorchCall("uld assistant", [&]() -> absl::StatusOr<std::unique_ptr<CausalLm>> {
    std::unique_ptr<CausalLm> assistant = target.Truncated(config.num_layers);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    torch::NoGradGuard no_grad;
    for (auto& [name, linear] : assistant->module()->lora_linears()) {
      linear->EnableLora(config.lora_rank, config.lora_alpha, config.lora_dropout);
      // PEFT's init, seeded: kaiming-uniform(a = sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in)).
      torch::Tensor& a = linear->lora_a();
      const double bound = 1.0 / std::sqrt(static_cast<double>(a.size(1)));
      torch::Tensor init = torch::empty(a.sizes(), torch::kFloat32).uniform_(-bound, bound, gen);
      a.copy_(init);
    }
    return assistant;
  });
}

torch::Tensor RelativeTopKeep(const torch::Tensor& target_logits, double rate) {
  const torch::Tensor lp = at::log_softmax(target_logits.to(torch::kFloat32), -1);
  const int64_t v = lp.size(-1);
  const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(rate * static_cast<double>(v)), 1, v);
  const torch::Tensor max = std::get<0>(lp.max(-1, /*keepdim=*/true));
  const torch::Tensor kth = std::get<0>(lp.topk(k, -1)).narrow(-1, k - 1, 1);
  const torch::Tensor threshold = at::minimum(max + std::log(rate), kth);
  return lp.ge(threshold);
}

LogitDifferenceLm::LogitDifferenceLm(std::shared_ptr<const Model> target_owner,
                                     const CausalLm* target, std::vector<Assistant> assistants)
    : target_owner_(std::move(target_owner)), target_(target), assistants_(std::move(assistants)) {}

absl::StatusOr<std::unique_ptr<LogitDifferenceLm>> LogitDifferenceLm::WithQuerySettings(
    std::shared_ptr<const Model> self, std::optional<double> alpha,
    std::optional<double> filter_rate) {
  const auto* composite = dynamic_cast<const LogitDifferenceLm*>(self.get());
  if (composite == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "logit_difference settings apply only to a version served as a target minus ULD "
        "assistants (made by the uld method); this one is ",
        self == nullptr ? std::string("null") : self->architecture()));
  }
  double max_alpha = 0.0;
  double min_rate = 1.0;
  for (const Assistant& a : composite->assistants_) {
    max_alpha = std::max(max_alpha, a.config.alpha);
    min_rate = std::min(min_rate, a.config.filter_rate);
  }
  if (alpha && !(*alpha >= max_alpha && *alpha <= kMaxQueryAlpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat("logit_difference.alpha must be in [", max_alpha, ", ", kMaxQueryAlpha,
                     "], got ", *alpha, ": the version was verified at alpha ", max_alpha,
                     ", and a weaker subtraction would bring back what the erasure removed"));
  }
  if (filter_rate && !(*filter_rate >= kMinQueryFilterRate && *filter_rate <= min_rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "logit_difference.filter_rate must be in [", kMinQueryFilterRate, ", ", min_rate, "], got ",
        *filter_rate, ": the version was verified at filter rate ", min_rate,
        ", and a higher rate subtracts on fewer tokens"));
  }
  std::vector<Assistant> assistants = composite->assistants_;
  for (Assistant& a : assistants) {
    if (alpha) a.config.alpha = *alpha;
    if (filter_rate) a.config.filter_rate = *filter_rate;
  }
  const CausalLm* target = composite->target_;
  return std::make_unique<LogitDifferenceLm>(std::move(self), target, std::move(assistants));
}

const CausalLm* LogitDifferenceLm::TargetOf(const Model& parent) {
  if (const auto* lm = dynamic_cast<const CausalLm*>(&parent)) return lm;
  if (const auto* composite = dynamic_cast<const LogitDifferenceLm*>(&parent)) {
    return composite->target_;
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<LogitDifferenceLm>> LogitDifferenceLm::Stack(
    std::shared_ptr<const Model> parent, Assistant assistant) {
  if (parent == nullptr) return absl::InvalidArgumentError("uld: no parent model");
  std::vector<Assistant> assistants;
  const CausalLm* target = nullptr;
  std::shared_ptr<const Model> owner = parent;
  if (const auto* composite = dynamic_cast<const LogitDifferenceLm*>(parent.get())) {
    assistants = composite->assistants_;
    target = composite->target_;
    owner = composite->target_owner_;
  } else {
    target = dynamic_cast<const CausalLm*>(parent.get());
  }
  if (target == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ULD assistant needs a causal language model as its parent, got ",
                     parent->architecture()));
  }
  if (assistant.model == nullptr || assistant.model->vocab_size() != target->vocab_size()) {
    return absl::InvalidArgumentError("the ULD assistant's vocabulary differs from its target's");
  }
  assistants.push_back(std::move(assistant));
  return std::make_unique<LogitDifferenceLm>(std::move(owner), target, std::move(assistants));
}

absl::StatusOr<std::unique_ptr<LogitDifferenceLm>> LogitDifferenceLm::LoadOnParent(
    const std::string& dir, std::shared_ptr<const Model> parent) {
  if (parent == nullptr) return absl::InvalidArgumentError("uld: no parent model");
  const CausalLm* target = TargetOf(*parent);
  if (target == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ULD assistant needs a causal language model as its parent, got ",
                     parent->architecture()));
  }
  UNL_ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonFile(JoinPath(dir, kUldConfigFile)));
  UNL_ASSIGN_OR_RETURN(UldAssistantConfig config, UldAssistantConfig::FromJson(json));
  UNL_ASSIGN_OR_RETURN(SafetensorsFile weights,
                       ReadSafetensors(JoinPath(dir, kAdapterWeightsFile)));
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> assistant,
                       MakeUldAssistant(*target, config, /*seed=*/0));
  UNL_RETURN_IF_ERROR(TorchCall("uld adapter", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    size_t used = 0;
    for (auto& [name, linear] : assistant->module()->lora_linears()) {
      for (const char* factor : {"lora_A", "lora_B"}) {
        const std::string key = absl::StrCat(kPeftPrefix, name, ".", factor, ".weight");
        auto it = weights.tensors.find(key);
        torch::Tensor& dst = factor[5] == 'A' ? linear->lora_a() : linear->lora_b();
        if (it == weights.tensors.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat(kAdapterWeightsFile, ": tensor \"", key, "\" is missing"));
        }
        if (it->second.sizes() != dst.sizes()) {
          return absl::InvalidArgumentError(
              absl::StrCat(kAdapterWeightsFile, ": tensor \"", key, "\" has shape ",
                           c10::str(it->second.sizes()), ", expected ", c10::str(dst.sizes())));
        }
        dst.copy_(it->second.to(torch::kFloat32));
        ++used;
      }
    }
    if (used != weights.tensors.size()) {
      return absl::InvalidArgumentError(absl::StrCat(kAdapterWeightsFile, " holds ",
                                                     weights.tensors.size() - used,
                                                     " tensors the assistant does not have"));
    }
    return absl::OkStatus();
  }));
  for (torch::Tensor& p : assistant->module()->parameters()) p.set_requires_grad(false);
  assistant->module()->eval();
  Assistant entry{std::shared_ptr<const CausalLm>(std::move(assistant)), config};
  return Stack(std::move(parent), std::move(entry));
}

absl::Status LogitDifferenceLm::WriteAssistant(const CausalLm& assistant,
                                               const UldAssistantConfig& config,
                                               const std::string& dir) {
  UNL_RETURN_IF_ERROR(
      WriteFileSynced(JoinPath(dir, kUldConfigFile), config.ToJson().dump(2) + "\n"));
  // PEFT's keys, so that the adapter opens in Hugging Face tools (on a K-layer base).
  const nlohmann::json peft = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", config.lora_rank},
      {"lora_alpha", config.lora_alpha},
      {"lora_dropout", config.lora_dropout},
      {"bias", "none"},
      {"target_modules",
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
      {"layers_to_transform", nullptr}};
  UNL_RETURN_IF_ERROR(WriteFileSynced(JoinPath(dir, kAdapterConfigFile), peft.dump(2) + "\n"));
  return TorchCall("uld adapter save", [&]() -> absl::Status {
    return WriteSafetensors(JoinPath(dir, kAdapterWeightsFile), AdapterTensors(assistant),
                            {{"format", "pt"}});
  });
}

std::string LogitDifferenceLm::architecture() const {
  return absl::StrCat(target_->architecture(), "+ULD");
}

int64_t LogitDifferenceLm::num_parameters() const {
  int64_t n = target_->num_parameters();
  for (const Assistant& a : assistants_) {
    for (const auto& [name, t] : AdapterTensors(*a.model)) n += t.numel();
  }
  return n;
}

absl::Status LogitDifferenceLm::Save(const std::string& dir) const {
  const Assistant& newest = assistants_.back();
  return WriteAssistant(*newest.model, newest.config, dir);
}

absl::StatusOr<std::unique_ptr<Model>> LogitDifferenceLm::Clone(torch::Device device) const {
  return TorchCall("clone", [&]() -> absl::StatusOr<std::unique_ptr<Model>> {
    std::shared_ptr<const CausalLm> target(target_->CloneLm(device));
    std::vector<Assistant> assistants;
    for (const Assistant& a : assistants_) {
      // Re-truncate the new target and copy the LoRA factors, so the clone shares its own target.
      std::unique_ptr<CausalLm> copy = target->Truncated(a.config.num_layers);
      auto src = const_cast<CausalLm&>(*a.model).module()->lora_linears();
      auto dst = copy->module()->lora_linears();
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < src.size(); ++i) {
        if (!src[i].second->lora_enabled()) continue;
        dst[i].second->EnableLora(a.config.lora_rank, a.config.lora_alpha, a.config.lora_dropout);
        dst[i].second->lora_a().copy_(src[i].second->lora_a());
        dst[i].second->lora_b().copy_(src[i].second->lora_b());
      }
      for (torch::Tensor& p : copy->module()->parameters()) p.set_requires_grad(false);
      assistants.push_back({std::shared_ptr<const CausalLm>(std::move(copy)), a.config});
    }
    const CausalLm* raw = target.get();
    return std::unique_ptr<Model>(
        std::make_unique<LogitDifferenceLm>(std::move(target), raw, std::move(assistants)));
  });
}

torch::Tensor LogitDifferenceLm::Combine(const torch::Tensor& target,
                                         const std::vector<torch::Tensor>& assistants,
                                         bool generation) const {
  torch::Tensor out = target.to(torch::kFloat32).clone();
  torch::Tensor any_kept;
  for (size_t i = 0; i < assistants_.size(); ++i) {
    const UldAssistantConfig& c = assistants_[i].config;
    const torch::Tensor keep = RelativeTopKeep(target, c.filter_rate);  // [..., V] bool
    const torch::Tensor keep_f = keep.to(torch::kFloat32);
    const torch::Tensor a = assistants[i].to(torch::kFloat32);
    // Centre on the kept set: mean over kept tokens (at least one is always kept).
    const torch::Tensor mean = (a * keep_f).sum(-1, true) / keep_f.sum(-1, true);
    out.sub_((a - mean) * keep_f, c.alpha);
    any_kept = any_kept.defined() ? any_kept.logical_and(keep) : keep;
  }
  if (generation && any_kept.defined()) out.masked_fill_(any_kept.logical_not(), kFilteredLogit);
  return out;
}

torch::Tensor LogitDifferenceLm::Logits(const torch::Tensor& ids) const {
  c10::InferenceMode guard;
  std::vector<torch::Tensor> assist;
  for (const Assistant& a : assistants_) assist.push_back(a.model->Logits(ids));
  return Combine(target_->Logits(ids), assist, /*generation=*/false);
}

namespace {

// One decode state per inner model, stepped together.
class LogitDifferenceState : public DecodeState {
 public:
  LogitDifferenceState(const LogitDifferenceLm* lm, std::unique_ptr<DecodeState> target,
                       std::vector<std::unique_ptr<DecodeState>> assistants, bool generation)
      : lm_(lm),
        target_(std::move(target)),
        assistants_(std::move(assistants)),
        generation_(generation) {}

  torch::Tensor Step(const torch::Tensor& ids) override {
    std::vector<torch::Tensor> a;
    for (auto& s : assistants_) a.push_back(s->Step(ids));
    return lm_->Combine(target_->Step(ids), a, generation_);
  }
  int64_t length() const override { return target_->length(); }
  int64_t batch_size() const override { return target_->batch_size(); }
  bool supports_padding() const override {
    bool all = target_->supports_padding();
    for (const auto& s : assistants_) all = all && s->supports_padding();
    return all;
  }
  torch::Tensor StepPadded(const torch::Tensor& ids, const torch::Tensor& valid) override {
    std::vector<torch::Tensor> a;
    for (auto& s : assistants_) a.push_back(s->StepPadded(ids, valid));
    return lm_->Combine(target_->StepPadded(ids, valid), a, generation_);
  }
  bool SelectRows(const torch::Tensor& rows) override {
    // Decide before changing anything: every inner state must support it. The CausalLm states
    // do; a state that does not leaves all unchanged only if it is the target's (checked first).
    if (!target_->SelectRows(rows)) return false;
    for (auto& s : assistants_) {
      TORCH_CHECK(s->SelectRows(rows), "SelectRows: an assistant's decode state cannot select");
    }
    return true;
  }
  torch::Tensor StepAll(const torch::Tensor& ids) override {
    std::vector<torch::Tensor> a;
    for (auto& s : assistants_) a.push_back(s->StepAll(ids));
    return lm_->Combine(target_->StepAll(ids), a, generation_);
  }

 private:
  const LogitDifferenceLm* lm_;
  std::unique_ptr<DecodeState> target_;
  std::vector<std::unique_ptr<DecodeState>> assistants_;
  bool generation_;
};

}  // namespace

std::unique_ptr<DecodeState> LogitDifferenceLm::MakeState(int64_t batch, bool generation) const {
  std::vector<std::unique_ptr<DecodeState>> assistants;
  for (const Assistant& a : assistants_) assistants.push_back(a.model->NewDecodeState(batch));
  return std::make_unique<LogitDifferenceState>(this, target_->NewDecodeState(batch),
                                                std::move(assistants), generation);
}

std::unique_ptr<DecodeState> LogitDifferenceLm::NewDecodeState(int64_t batch) const {
  return MakeState(batch, /*generation=*/false);
}

std::unique_ptr<DecodeState> LogitDifferenceLm::NewGenerationState(int64_t batch) const {
  return MakeState(batch, /*generation=*/true);
}

}  // namespace unlearning::core
