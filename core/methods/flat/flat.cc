#include "core/methods/flat/flat.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/common/status_macros.h"

namespace unlearning::core {

const std::vector<std::string>& BuiltinRefusalTemplates() {
  static const auto* const kTemplates = new std::vector<std::string>{
      "I'm not able to answer that.",
      "I don't have any information about that.",
      "I'm sorry, but I can't help with that question.",
      "I don't know the answer to that.",
      "That's not something I can provide information on.",
      "I'm afraid I have no knowledge of that.",
      "I can't share any details about that.",
      "Sorry, I don't have an answer for that.",
      "I have no information on this topic.",
      "That is beyond what I can tell you.",
  };
  return *kTemplates;
}

absl::StatusOr<FlatParams> FlatMethod::ParseParams(const nlohmann::json& json) {
  ParamReader reader(kName, json);
  UNL_RETURN_IF_ERROR(reader.CheckObject());
  FlatParams p;
  UNL_ASSIGN_OR_RETURN(p.training,
                       ParseTextTrainingOptions(reader, kDefaultLearningRate, kDefaultEpochs));
  UNL_ASSIGN_OR_RETURN(std::string divergence, reader.String("divergence", "kl"));
  UNL_ASSIGN_OR_RETURN(p.divergence, ParseFDivergence(divergence));
  UNL_ASSIGN_OR_RETURN(p.reference_code_aggregation,
                       reader.Bool("reference_code_aggregation", false));
  UNL_ASSIGN_OR_RETURN(p.use_builtin_templates, reader.Bool("use_builtin_templates", true));
  UNL_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return p;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> FlatMethod::Create(const nlohmann::json& json) {
  UNL_ASSIGN_OR_RETURN(FlatParams p, ParseParams(json));
  return std::unique_ptr<UnlearningMethod>(new FlatMethod(p));
}

FlatMethod::FlatMethod(const FlatParams& params) : TextMethod(params.training), params_(params) {}

nlohmann::json FlatMethod::EffectiveParams() const {
  nlohmann::json j = TextTrainingOptionsToJson(training_);
  j["divergence"] = FDivergenceName(params_.divergence);
  j["reference_code_aggregation"] = params_.reference_code_aggregation;
  j["use_builtin_templates"] = params_.use_builtin_templates;
  return j;
}

absl::Status FlatMethod::CheckData(const ErasureData& data) const {
  UNL_RETURN_IF_ERROR(TextMethod::CheckData(data));
  for (size_t i = 0; i < data.templates.size(); ++i) {
    if (data.templates[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("flat: template answer ", i, " is empty"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> FlatMethod::TemplatePool(
    const std::vector<std::string>& request_templates) const {
  std::vector<std::string> pool = request_templates;
  if (pool.empty() || params_.use_builtin_templates) {
    const auto& builtin = BuiltinRefusalTemplates();
    pool.insert(pool.end(), builtin.begin(), builtin.end());
  }
  return pool;
}

absl::Status FlatMethod::Prepare(const CausalLm& model, const CausalLm* /*reference*/,
                                 const ErasureData& data,
                                 const std::vector<std::vector<int64_t>>& /*schedule*/) {
  const std::vector<std::string> pool = TemplatePool(data.templates);
  // Pair each forget example with a template drawn uniformly from the pool
  // (seeded; a stream distinct from the batch order's).
  std::mt19937_64 rng(training_.seed ^ 0x5bd1e9955bd1e995ULL);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  paired_templates_.clear();
  std::vector<TextExample> template_examples;
  for (const TextExample& e : data.forget) {
    paired_templates_.push_back(pool[pick(rng)]);
    TextExample t;
    t.question = e.question;
    t.answer = paired_templates_.back();
    template_examples.push_back(std::move(t));
  }
  forget_ = EncodeExamples(model.tokenizer(), data.forget);
  template_ = EncodeExamples(model.tokenizer(), template_examples);
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> FlatMethod::StepLoss(CausalLm& model, int64_t /*step*/,
                                                   const std::vector<int64_t>& forget_indices) {
  const TokenBatch forget = CollateSelected(model, forget_, forget_indices);
  const TokenBatch templ = CollateSelected(model, template_, forget_indices);
  torch::Tensor forget_logits = model.module()->forward(forget.input_ids);   // [B, Tf, V]
  torch::Tensor template_logits = model.module()->forward(templ.input_ids);  // [B, Te, V]
  if (params_.reference_code_aggregation) {
    return FlatLossReferenceCode(params_.divergence, template_logits, templ.labels, forget_logits,
                                 forget.labels);
  }
  torch::Tensor pe = MeanAnswerProbability(template_logits, templ.labels);  // [B]
  torch::Tensor pf = MeanAnswerProbability(forget_logits, forget.labels);   // [B]
  return FlatLoss(params_.divergence, pe, pf);
}

}  // namespace unlearning::core
