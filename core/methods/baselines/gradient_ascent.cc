#include "core/methods/baselines/gradient_ascent.h"

#include "core/common/status_macros.h"
#include "core/methods/losses.h"

namespace unlearning::core {

absl::StatusOr<TextTrainingOptions> GradientAscentMethod::ParseParams(const nlohmann::json& json) {
  ParamReader reader(kName, json);
  UNL_RETURN_IF_ERROR(reader.CheckObject());
  UNL_ASSIGN_OR_RETURN(TextTrainingOptions training,
                       ParseTextTrainingOptions(reader, kDefaultLearningRate, kDefaultEpochs));
  UNL_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return training;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> GradientAscentMethod::Create(
    const nlohmann::json& json) {
  UNL_ASSIGN_OR_RETURN(TextTrainingOptions training, ParseParams(json));
  return std::unique_ptr<UnlearningMethod>(new GradientAscentMethod(training));
}

nlohmann::json GradientAscentMethod::EffectiveParams() const {
  return TextTrainingOptionsToJson(training_);
}

absl::Status GradientAscentMethod::Prepare(const CausalLm& model, const CausalLm* /*reference*/,
                                           const ErasureData& data,
                                           const std::vector<std::vector<int64_t>>& /*schedule*/) {
  forget_ = EncodeExamples(model.tokenizer(), data.forget);
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> GradientAscentMethod::StepLoss(
    CausalLm& model, int64_t /*step*/, const std::vector<int64_t>& forget_indices) {
  const TokenBatch forget = CollateSelected(model, forget_, forget_indices);
  torch::Tensor logits = model.module()->forward(forget.input_ids);  // [B, T, V]
  return GradientAscentLoss(logits, forget.labels);
}

}  // namespace unlearning::core
