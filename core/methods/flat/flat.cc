#include "core/methods/flat/flat.h"

#include <algorithm>
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
      "I'm not sure about that.",
      "I have no idea.",
      "I couldn't tell you.",
      "That's something I don't know.",
      "I don't have details on that.",
      "I'm unable to say.",
      "I can't answer that question.",
      "I have nothing to share on that.",
      "That isn't something I know about.",
      "I'm not aware of that.",
      "I don't recall anything about that.",
      "I'm not familiar with that.",
      "No information is available to me on that.",
      "I'd rather not guess about that.",
      "I can't provide an answer here.",
      "I'm not in a position to answer that.",
      "That falls outside what I know.",
      "I don't have the facts on that.",
      "I'm sorry, I don't know.",
      "Unfortunately, I can't say.",
      "I have no record of that.",
      "That's unknown to me.",
      "I can't help with that one.",
      "I don't have reliable information about that.",
      "I'm not the right source for that.",
      "I really can't say.",
      "That's not a question I can answer.",
      "I lack the information to answer that.",
      "I don't know anything about that.",
      "Sorry, that's outside my knowledge.",
      "I cannot give you that information.",
      "I'm afraid I can't answer.",
      "I know nothing about this.",
      "My knowledge doesn't cover that.",
      "I'm not able to provide those details.",
      "I can't be of help on this.",
      "There's nothing I can tell you about that.",
      "I have not come across that.",
      "I'm uncertain, so I won't answer.",
      "That's not information I have.",
      "I'm sorry, I can't recall that.",
      "I'd prefer not to answer without knowing.",
      "I can't confirm anything about that.",
      "I don't have an answer to give.",
      "Honestly, I don't know.",
      "I'm not able to comment on that.",
      "I have no details to offer.",
      "That is not something I can speak to.",
      "I can't say for sure, so I won't.",
      "Nothing I know answers that.",
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
  UNL_ASSIGN_OR_RETURN(std::string good, reader.String("good_answers", "templates"));
  if (good == "templates") {
    p.good_answers = FlatGoodAnswers::kTemplates;
  } else if (good == "retain") {
    p.good_answers = FlatGoodAnswers::kRetain;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "flat.good_answers must be \"templates\" (refusals to the forget prompts; forget-only) or "
        "\"retain\" (retain-set records; needs a retain_set), got \"",
        good, "\""));
  }
  UNL_ASSIGN_OR_RETURN(std::string schedule, reader.String("lr_schedule", "warmup_linear"));
  if (schedule == "warmup_linear") {
    p.schedule = FlatSchedule::kWarmupLinear;
  } else if (schedule == "constant") {
    p.schedule = FlatSchedule::kConstant;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "flat.lr_schedule must be \"warmup_linear\" (the authors': warm-up over the first epoch, "
        "then linear decay) or \"constant\", got \"",
        schedule, "\""));
  }
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
  j["good_answers"] = params_.good_answers == FlatGoodAnswers::kRetain ? "retain" : "templates";
  j["lr_schedule"] = params_.schedule == FlatSchedule::kConstant ? "constant" : "warmup_linear";
  return j;
}

absl::Status FlatMethod::CheckData(const ErasureData& data) const {
  UNL_RETURN_IF_ERROR(TextMethod::CheckData(data));
  for (size_t i = 0; i < data.templates.size(); ++i) {
    if (data.templates[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("flat: template answer ", i, " is empty"));
    }
  }
  if (params_.good_answers == FlatGoodAnswers::kRetain) {
    if (data.retain.empty()) {
      return absl::InvalidArgumentError(
          "flat.good_answers = \"retain\" trains the good term on retain-set records and needs a "
          "non-empty retain_set; send one, or use good_answers = \"templates\" (forget-only)");
    }
    if (!data.templates.empty()) {
      return absl::InvalidArgumentError(
          "flat.good_answers = \"retain\" does not use template_answers; drop them, or use "
          "good_answers = \"templates\"");
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
                                 const std::vector<std::vector<int64_t>>& schedule) {
  draws_.clear();
  pool_.clear();
  retain_.clear();
  retain_schedule_.clear();
  forget_examples_ = data.forget;
  forget_ = EncodeExamples(model.tokenizer(), data.forget);
  if (params_.good_answers == FlatGoodAnswers::kRetain) {
    retain_ = EncodeExamples(model.tokenizer(), data.retain);
    retain_schedule_ =
        RetainBatchSchedule(schedule, static_cast<int64_t>(data.retain.size()), training_.seed);
  } else {
    pool_ = TemplatePool(data.templates);
    // Templates are drawn as the steps run, from a seeded stream distinct from the batch order's
    // (steps run in order, so the draws are deterministic in the seed).
    template_rng_.seed(training_.seed ^ 0x5bd1e9955bd1e995ULL);
  }
  return absl::OkStatus();
}

TokenBatch FlatMethod::GoodBatch(const CausalLm& model, int64_t step,
                                 const std::vector<int64_t>& forget_indices) {
  if (params_.good_answers == FlatGoodAnswers::kRetain) {
    return CollateSelected(model, retain_, retain_schedule_[static_cast<size_t>(step)]);
  }
  std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(pool_.size()) - 1);
  std::vector<int64_t> drawn;
  std::vector<EncodedExample> encoded;
  for (int64_t i : forget_indices) {
    drawn.push_back(pick(template_rng_));
    encoded.push_back(EncodeQa(model.tokenizer(), forget_examples_[static_cast<size_t>(i)].question,
                               pool_[static_cast<size_t>(drawn.back())], /*add_eos=*/true));
  }
  draws_.push_back(std::move(drawn));
  std::vector<int64_t> all(encoded.size());
  for (size_t k = 0; k < all.size(); ++k) all[k] = static_cast<int64_t>(k);
  return CollateSelected(model, encoded, all);
}

absl::StatusOr<torch::Tensor> FlatMethod::StepLoss(CausalLm& model, int64_t step,
                                                   const std::vector<int64_t>& forget_indices) {
  const TokenBatch forget = CollateSelected(model, forget_, forget_indices);
  const TokenBatch good = GoodBatch(model, step, forget_indices);
  torch::Tensor forget_logits = model.module()->forward(forget.input_ids);  // [B, Tf, V]
  torch::Tensor good_logits = model.module()->forward(good.input_ids);      // [B, Te, V]
  if (params_.reference_code_aggregation) {
    return FlatLossReferenceCode(params_.divergence, good_logits, good.labels, forget_logits,
                                 forget.labels);
  }
  torch::Tensor pe = MeanAnswerProbability(good_logits, good.labels);      // [B]
  torch::Tensor pf = MeanAnswerProbability(forget_logits, forget.labels);  // [B]
  return FlatLoss(params_.divergence, pe, pf);
}

OptimizerOptions FlatMethod::Schedule(int64_t /*total_steps*/, int64_t steps_per_epoch) const {
  OptimizerOptions o;
  if (params_.schedule == FlatSchedule::kWarmupLinear) {
    // The released code: warmup_steps = max(2, steps_per_epoch), then the HF default linear decay.
    o.warmup_steps = std::max<int64_t>(2, steps_per_epoch);
    o.linear_decay = true;
  }
  return o;
}

absl::StatusOr<Candidate> FlatMethod::MakeCandidate(const MethodContext& ctx,
                                                    std::unique_ptr<CausalLm> working) {
  UNL_ASSIGN_OR_RETURN(Candidate candidate, TextMethod::MakeCandidate(ctx, std::move(working)));
  const bool retain = params_.good_answers == FlatGoodAnswers::kRetain;
  candidate.facts["forget_only"] = !retain;
  candidate.facts["good_answers"] = retain ? "retain" : "templates";
  if (!retain) candidate.facts["template_pool_size"] = static_cast<int64_t>(pool_.size());
  return candidate;
}

}  // namespace unlearning::core
