#include "core/methods/baselines/npo.h"

#include <algorithm>

#include "core/common/status_macros.h"
#include "core/methods/losses.h"

namespace unlearning::core {

absl::StatusOr<NpoParams> NpoMethod::ParseParams(const nlohmann::json& json) {
  ParamReader reader(kName, json);
  UNL_RETURN_IF_ERROR(reader.CheckObject());
  NpoParams p;
  UNL_ASSIGN_OR_RETURN(p.training,
                       ParseTextTrainingOptions(reader, kDefaultLearningRate, kDefaultEpochs));
  UNL_ASSIGN_OR_RETURN(p.beta, reader.Double("beta", 0.1, 0.0, 10.0, /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(p.retain_weight, reader.Double("retain_weight", 0.0, 0.0, 100.0));
  UNL_RETURN_IF_ERROR(reader.CheckNoUnknownKeys());
  return p;
}

absl::StatusOr<std::unique_ptr<UnlearningMethod>> NpoMethod::Create(const nlohmann::json& json) {
  UNL_ASSIGN_OR_RETURN(NpoParams p, ParseParams(json));
  return std::unique_ptr<UnlearningMethod>(new NpoMethod(p));
}

nlohmann::json NpoMethod::EffectiveParams() const {
  nlohmann::json j = TextTrainingOptionsToJson(training_);
  j["beta"] = params_.beta;
  j["retain_weight"] = params_.retain_weight;
  return j;
}

absl::Status NpoMethod::CheckData(const ErasureData& data) const {
  if (params_.retain_weight > 0.0 && data.retain.empty()) {
    return absl::InvalidArgumentError("npo with retain_weight > 0 needs a retain_set");
  }
  return TextMethod::CheckData(data);
}

absl::Status NpoMethod::Prepare(const CausalLm& model, const CausalLm* reference,
                                const ErasureData& data,
                                const std::vector<std::vector<int64_t>>& schedule) {
  if (reference == nullptr) {
    return absl::InvalidArgumentError("npo needs a causal-LM reference model");
  }
  forget_ = EncodeExamples(model.tokenizer(), data.forget);
  retain_ = EncodeExamples(model.tokenizer(), data.retain);
  retain_schedule_ =
      params_.retain_weight > 0.0
          ? RetainBatchSchedule(schedule, static_cast<int64_t>(data.retain.size()), training_.seed)
          : std::vector<std::vector<int64_t>>(schedule.size());
  // The reference is frozen, so its sequence log-probabilities are computed
  // once.
  reference_logprob_.assign(forget_.size(), 0.0f);
  constexpr int64_t kChunk = 16;
  const int64_t n = static_cast<int64_t>(forget_.size());
  for (int64_t start = 0; start < n; start += kChunk) {
    std::vector<int64_t> indices;
    for (int64_t i = start; i < std::min(n, start + kChunk); ++i) indices.push_back(i);
    const TokenBatch batch = CollateSelected(*reference, forget_, indices);
    torch::Tensor logprob;  // [b]
    {
      c10::InferenceMode inference;
      logprob = SequenceLogProb(reference->Logits(batch.input_ids), batch.labels)
                    .to(torch::kCPU)
                    .contiguous();
    }
    const float* data_ptr = logprob.data_ptr<float>();
    for (size_t k = 0; k < indices.size(); ++k) {
      reference_logprob_[static_cast<size_t>(indices[k])] = data_ptr[k];
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> NpoMethod::StepLoss(CausalLm& model, int64_t step,
                                                  const std::vector<int64_t>& forget_indices) {
  const TokenBatch forget = CollateSelected(model, forget_, forget_indices);
  std::vector<float> ref;
  ref.reserve(forget_indices.size());
  for (int64_t i : forget_indices) ref.push_back(reference_logprob_[static_cast<size_t>(i)]);
  torch::Tensor reference_logprob =
      torch::tensor(ref, torch::TensorOptions().dtype(torch::kFloat32)).to(model.device());  // [B]
  torch::Tensor logits = model.module()->forward(forget.input_ids);       // [B, T, V]
  torch::Tensor policy_logprob = SequenceLogProb(logits, forget.labels);  // [B]
  torch::Tensor loss = NpoLoss(policy_logprob, reference_logprob, params_.beta);
  if (params_.retain_weight > 0.0) {
    const TokenBatch retain =
        CollateSelected(model, retain_, retain_schedule_[static_cast<size_t>(step)]);
    torch::Tensor retain_logits = model.module()->forward(retain.input_ids);  // [B, Tr, V]
    loss = loss + params_.retain_weight * TokenCrossEntropy(retain_logits, retain.labels);
  }
  return loss;
}

}  // namespace unlearning::core
