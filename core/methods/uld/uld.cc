#include "core/methods/uld/uld.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/methods/losses.h"

namespace unlearning::core {
namespace {

// Right-padded batch of `examples` on `device` plus the mask of real (non-padding) positions.
struct MaskedBatch {
  TokenBatch batch;
  torch::Tensor real;  // [B, T] bool
};

MaskedBatch CollateMasked(const CausalLm& model, const std::vector<EncodedExample>& examples) {
  MaskedBatch out;
  out.batch = Collate(examples, model.pad_id(), model.max_context());
  const int64_t t = out.batch.input_ids.size(1);
  std::vector<int64_t> lengths;
  for (const EncodedExample& e : examples) {
    lengths.push_back(std::min<int64_t>(static_cast<int64_t>(e.ids.size()), t));
  }
  const torch::Tensor positions = torch::arange(t, torch::kInt64).unsqueeze(0);  // [1, T]
  out.real = positions.lt(torch::tensor(lengths, torch::kInt64).unsqueeze(1));   // [B, T]
  out.batch.input_ids = out.batch.input_ids.to(model.device());
  out.batch.labels = out.batch.labels.to(model.device());
  out.real = out.real.to(model.device());
  return out;
}

}  // namespace

torch::Tensor UniformKl(const torch::Tensor& logits, const torch::Tensor& mask) {
  const torch::Tensor log_p = at::log_softmax(logits.to(torch::kFloat32), -1);  // [B, T, V]
  const double log_v = std::log(static_cast<double>(logits.size(-1)));
  const torch::Tensor per_position = -log_v - log_p.mean(-1);  // [B, T]
  const torch::Tensor m = mask.to(torch::kFloat32);
  return (per_position * m).sum() / m.sum().clamp_min(1.0);
}

absl::StatusOr<UldParams> UldMethod::ParseParams(const nlohmann::json& json) {
  ParamReader reader(kName, json);
  UNL_RETURN_IF_ERROR(reader.CheckObject());
  UldParams p;
  UNL_ASSIGN_OR_RETURN(p.training,
                       ParseTextTrainingOptions(reader, kDefaultLearningRate, kDefaultEpochs));
  UNL_ASSIGN_OR_RETURN(p.num_layers, reader.Int("num_layers", 0, 0, 10000));
  UNL_ASSIGN_OR_RETURN(p.lora_rank, reader.Int("lora_rank", 16, 1, 1024));
  UNL_ASSIGN_OR_RETURN(p.lora_alpha,
                       reader.Double("lora_alpha", 32.0, 0.0, 1e4, /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.lora_dropout, reader.Double("lora_dropout", 0.05, 0.0, 0.9));
  UNL_ASSIGN_OR_RETURN(p.retain_weight, reader.Double("retain_weight", 5.0, 0.0, 100.0));
  UNL_ASSIGN_OR_RETURN(p.alpha, reader.Double("alpha", 0.75, 0.0, 10.0));
  UNL_ASSIGN_OR_RETURN(p.filter_rate,
                       reader.Double("filter_rate", 1e-2, 0.0, 1.0, /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.paraphrases, reader.Bool("paraphrases", true));
  UNL_ASSIGN_OR_RETURN(p.perturbed, reader.Bool("perturbed", true));
  UNL_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return p;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> UldMethod::Create(const nlohmann::json& json) {
  UNL_ASSIGN_OR_RETURN(UldParams p, ParseParams(json));
  return std::unique_ptr<UnlearningMethod>(new UldMethod(p));
}

nlohmann::json UldMethod::EffectiveParams() const {
  nlohmann::json j = TextTrainingOptionsToJson(training_);
  j["num_layers"] = params_.num_layers;
  j["lora_rank"] = params_.lora_rank;
  j["lora_alpha"] = params_.lora_alpha;
  j["lora_dropout"] = params_.lora_dropout;
  j["retain_weight"] = params_.retain_weight;
  j["alpha"] = params_.alpha;
  j["filter_rate"] = params_.filter_rate;
  j["paraphrases"] = params_.paraphrases;
  j["perturbed"] = params_.perturbed;
  return j;
}

absl::Status UldMethod::CheckData(const ErasureData& data) const {
  UNL_RETURN_IF_ERROR(TextMethod::CheckData(data));
  bool any_perturbed = false;
  for (const TextExample& e : data.forget)
    any_perturbed = any_perturbed || !e.perturbed_answers.empty();
  if (data.retain.empty() && !(params_.perturbed && any_perturbed)) {
    return absl::InvalidArgumentError(
        "uld needs data for its uniform term: a retain_set, or perturbed_answers on the forget "
        "examples (with uld.perturbed true)");
  }
  return absl::OkStatus();
}

UldAssistantConfig UldMethod::AssistantConfig(const CausalLm& target) const {
  UldAssistantConfig c;
  c.num_layers = params_.num_layers > 0
                     ? params_.num_layers
                     : std::max<int64_t>(1, target.config().num_hidden_layers / 4);
  c.lora_rank = params_.lora_rank;
  c.lora_alpha = params_.lora_alpha;
  c.lora_dropout = params_.lora_dropout;
  c.alpha = params_.alpha;
  c.filter_rate = params_.filter_rate;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> UldMethod::MakeWorkingModel(const MethodContext& ctx,
                                                                      const CausalLm& target) {
  config_ = AssistantConfig(target);
  // Without an owner, refer to the parent without owning it: the candidate then lives no longer
  // than the caller's parent (MethodContext::parent_owner).
  parent_ = ctx.parent_owner != nullptr
                ? ctx.parent_owner
                : std::shared_ptr<const Model>(std::shared_ptr<const Model>(), ctx.parent);
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> assistant,
                       MakeUldAssistant(target, config_, training_.seed));
  // The stopping rule scores the composite users would get, with the assistant as it trains.
  std::shared_ptr<const CausalLm> view(std::shared_ptr<const CausalLm>(), assistant.get());
  UNL_ASSIGN_OR_RETURN(probe_, LogitDifferenceLm::Stack(parent_, {view, config_}));
  return assistant;
}

const LanguageModel& UldMethod::StopProbeModel(const CausalLm& /*working*/) const {
  return *probe_;
}

absl::StatusOr<Candidate> UldMethod::MakeCandidate(const MethodContext& /*ctx*/,
                                                   std::unique_ptr<CausalLm> working) {
  probe_.reset();
  for (torch::Tensor& p : working->module()->parameters()) p.set_requires_grad(false);
  working->module()->eval();
  std::shared_ptr<const CausalLm> assistant(std::move(working));
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<LogitDifferenceLm> composite,
                       LogitDifferenceLm::Stack(parent_, {assistant, config_}));
  Candidate candidate;
  candidate.kind = ArtifactKind::kAssistant;
  const UldAssistantConfig config = config_;
  candidate.write = [assistant, config](const std::string& dir) {
    return LogitDifferenceLm::WriteAssistant(*assistant, config, dir);
  };
  int64_t lora_parameters = 0;
  for (auto& [name, linear] : const_cast<CausalLm&>(*assistant).module()->lora_linears()) {
    if (linear->lora_enabled())
      lora_parameters += linear->lora_a().numel() + linear->lora_b().numel();
  }
  candidate.facts["assistant"] = config.ToJson();
  candidate.facts["assistant"]["lora_parameters"] = lora_parameters;
  candidate.facts["assistant"]["target_layers"] = composite->target().config().num_hidden_layers;
  candidate.facts["assistants_stacked"] = static_cast<int64_t>(composite->assistants().size());
  candidate.facts["target_trained"] = false;
  candidate.model = std::move(composite);
  return candidate;
}

OptimizerOptions UldMethod::Schedule(int64_t total_steps, int64_t /*steps_per_epoch*/) const {
  OptimizerOptions o;
  o.warmup_steps = std::max<int64_t>(0, total_steps / 10);  // the repository's warmup_ratio 0.1
  o.linear_decay = true;
  return o;
}

absl::Status UldMethod::Prepare(const CausalLm& model, const CausalLm* /*reference*/,
                                const ErasureData& data,
                                const std::vector<std::vector<int64_t>>& schedule) {
  const Tokenizer& tok = model.tokenizer();
  remember_.clear();
  perturbed_.clear();
  for (const TextExample& e : data.forget) {
    std::vector<EncodedExample> f = {EncodeQa(tok, e.question, e.answer, /*add_eos=*/true)};
    if (params_.paraphrases) {
      for (const std::string& q : e.paraphrased_questions) {
        f.push_back(EncodeQa(tok, q, e.answer, /*add_eos=*/true));
      }
    }
    remember_.push_back(std::move(f));
    std::vector<EncodedExample> r;
    if (params_.perturbed) {
      for (const std::string& a : e.perturbed_answers) {
        r.push_back(EncodeQa(tok, e.question, a, /*add_eos=*/true));
      }
    }
    perturbed_.push_back(std::move(r));
  }
  retain_ = EncodeExamples(tok, data.retain);
  retain_schedule_ =
      RetainBatchSchedule(schedule, static_cast<int64_t>(data.retain.size()), training_.seed);
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> UldMethod::StepLoss(CausalLm& model, int64_t step,
                                                  const std::vector<int64_t>& forget_indices) {
  // One mixed batch: D′_f of the step's forget examples, and D′_r = their perturbed answers plus
  // one retain example per forget example.
  std::vector<EncodedExample> remember, uniform;
  for (int64_t i : forget_indices) {
    const auto& f = remember_[static_cast<size_t>(i)];
    remember.insert(remember.end(), f.begin(), f.end());
    const auto& r = perturbed_[static_cast<size_t>(i)];
    uniform.insert(uniform.end(), r.begin(), r.end());
  }
  for (int64_t i : retain_schedule_[static_cast<size_t>(step)]) {
    uniform.push_back(retain_[static_cast<size_t>(i)]);
  }
  const MaskedBatch f = CollateMasked(model, remember);
  torch::Tensor loss =
      TokenCrossEntropy(model.module()->forward(f.batch.input_ids), f.batch.labels);
  if (!uniform.empty() && params_.retain_weight > 0.0) {
    const MaskedBatch u = CollateMasked(model, uniform);
    loss = loss +
           params_.retain_weight * UniformKl(model.module()->forward(u.batch.input_ids), u.real);
  }
  return loss;
}

}  // namespace unlearning::core
