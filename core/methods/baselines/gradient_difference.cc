#include "core/methods/baselines/gradient_difference.h"

#include "core/common/status_macros.h"
#include "core/methods/losses.h"

namespace unlearning::core {

absl::StatusOr<GradientDifferenceParams> GradientDifferenceMethod::ParseParams(
    const nlohmann::json& json) {
  ParamReader reader(kName, json);
  UNL_RETURN_IF_ERROR(reader.CheckObject());
  GradientDifferenceParams p;
  UNL_ASSIGN_OR_RETURN(p.training,
                       ParseTextTrainingOptions(reader, kDefaultLearningRate, kDefaultEpochs));
  UNL_ASSIGN_OR_RETURN(p.forget_weight,
                       reader.Double("forget_weight", 1.0, 0.0, 100.0, /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.retain_weight, reader.Double("retain_weight", 1.0, 0.0, 100.0));
  UNL_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return p;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> GradientDifferenceMethod::Create(
    const nlohmann::json& json) {
  UNL_ASSIGN_OR_RETURN(GradientDifferenceParams p, ParseParams(json));
  return std::unique_ptr<UnlearningMethod>(new GradientDifferenceMethod(p));
}

nlohmann::json GradientDifferenceMethod::EffectiveParams() const {
  nlohmann::json j = TextTrainingOptionsToJson(training_);
  j["forget_weight"] = params_.forget_weight;
  j["retain_weight"] = params_.retain_weight;
  return j;
}

absl::Status GradientDifferenceMethod::CheckData(const ErasureData& data) const {
  if (data.retain.empty()) {
    return absl::InvalidArgumentError("gradient_difference needs a retain_set");
  }
  return TextMethod::CheckData(data);
}

absl::Status GradientDifferenceMethod::Prepare(const CausalLm& model, const CausalLm* /*reference*/,
                                               const ErasureData& data,
                                               const std::vector<std::vector<int64_t>>& schedule) {
  forget_ = EncodeExamples(model.tokenizer(), data.forget);
  retain_ = EncodeExamples(model.tokenizer(), data.retain);
  retain_schedule_ =
      RetainBatchSchedule(schedule, static_cast<int64_t>(data.retain.size()), training_.seed);
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> GradientDifferenceMethod::StepLoss(
    CausalLm& model, int64_t step, const std::vector<int64_t>& forget_indices) {
  const TokenBatch forget = CollateSelected(model, forget_, forget_indices);
  const TokenBatch retain =
      CollateSelected(model, retain_, retain_schedule_[static_cast<size_t>(step)]);
  torch::Tensor forget_logits = model.module()->forward(forget.input_ids);  // [B, Tf, V]
  torch::Tensor retain_logits = model.module()->forward(retain.input_ids);  // [B, Tr, V]
  return GradientDifferenceLoss(forget_logits, forget.labels, retain_logits, retain.labels,
                                params_.forget_weight, params_.retain_weight);
}

}  // namespace unlearning::core
