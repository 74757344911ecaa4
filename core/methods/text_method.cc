#include "core/methods/text_method.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/methods/losses.h"
#include "core/models/logit_difference.h"

namespace unlearning::core {
namespace {

std::string RangeText(double lo, double hi, bool lo_exclusive, bool hi_exclusive) {
  return absl::StrCat(lo_exclusive ? "(" : "[", lo, ", ", hi, hi_exclusive ? ")" : "]");
}

}  // namespace

// ---- ParamReader
// ----------------------------------------------------------------------------------

ParamReader::ParamReader(std::string method, const nlohmann::json& params)
    : method_(std::move(method)), params_(params) {}

absl::Status ParamReader::CheckObject() const {
  if (params_.is_null() || params_.is_object()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(method_, " parameters must be a JSON object, got ", params_.dump()));
}

std::string ParamReader::Name(const std::string& key) const {
  return absl::StrCat(method_, ".", key);
}

const nlohmann::json* ParamReader::Find(const std::string& key) {
  consumed_.insert(key);
  if (!params_.is_object()) return nullptr;
  auto it = params_.find(key);
  if (it == params_.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<double> ParamReader::Double(const std::string& key, double def, double lo, double hi,
                                           bool lo_exclusive, bool hi_exclusive) {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return def;
  if (!value->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(key), " must be a number, got ", value->dump()));
  }
  const double v = value->get<double>();
  const bool below = lo_exclusive ? !(v > lo) : !(v >= lo);
  const bool above = hi_exclusive ? !(v < hi) : !(v <= hi);
  if (below || above || !std::isfinite(v)) {
    return absl::InvalidArgumentError(absl::StrCat(Name(key), " must be in ",
                                                   RangeText(lo, hi, lo_exclusive, hi_exclusive),
                                                   ", got ", value->dump()));
  }
  return v;
}

absl::StatusOr<int64_t> ParamReader::Int(const std::string& key, int64_t def, int64_t lo,
                                         int64_t hi) {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return def;
  int64_t v = 0;
  if (value->is_number_unsigned()) {
    const uint64_t u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat(Name(key), " must be in [", lo, ", ", hi, "], got ", value->dump()));
    }
    v = static_cast<int64_t>(u);
  } else if (value->is_number_integer()) {
    v = value->get<int64_t>();
  } else if (value->is_number_float()) {
    const double d = value->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e18) {
      return absl::InvalidArgumentError(
          absl::StrCat(Name(key), " must be an integer, got ", value->dump()));
    }
    v = static_cast<int64_t>(d);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(key), " must be an integer, got ", value->dump()));
  }
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(key), " must be in [", lo, ", ", hi, "], got ", value->dump()));
  }
  return v;
}

absl::StatusOr<uint64_t> ParamReader::Uint64(const std::string& key, uint64_t def) {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return def;
  if (value->is_number_unsigned()) return value->get<uint64_t>();
  if (value->is_number_integer() && value->get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value->get<int64_t>());
  }
  if (value->is_number_float()) {
    const double d = value->get<double>();
    if (std::isfinite(d) && d >= 0 && d == std::floor(d) && d < 1.8e19) {
      return static_cast<uint64_t>(d);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(Name(key), " must be an integer in [0, 2^64), got ", value->dump()));
}

absl::StatusOr<bool> ParamReader::Bool(const std::string& key, bool def) {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return def;
  if (!value->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(key), " must be true or false, got ", value->dump()));
  }
  return value->get<bool>();
}

absl::StatusOr<std::string> ParamReader::String(const std::string& key, const std::string& def) {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return def;
  if (!value->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(key), " must be a string, got ", value->dump()));
  }
  return value->get<std::string>();
}

absl::Status ParamReader::CheckNoUnknownKeys() const {
  if (!params_.is_object()) return absl::OkStatus();
  for (const auto& item : params_.items()) {
    if (consumed_.count(item.key()) == 0) {
      std::string known;
      for (const std::string& k : consumed_) absl::StrAppend(&known, known.empty() ? "" : ", ", k);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown parameter ", Name(item.key()), " (known: ", known, ")"));
    }
  }
  return absl::OkStatus();
}

// ---- Training options
// -----------------------------------------------------------------------------

absl::StatusOr<TextTrainingOptions> ParseTextTrainingOptions(ParamReader& reader,
                                                             double default_learning_rate,
                                                             int64_t default_epochs) {
  TextTrainingOptions o;
  UNL_ASSIGN_OR_RETURN(o.learning_rate,
                       reader.Double("learning_rate", default_learning_rate, 0.0, 1.0,
                                     /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(o.epochs, reader.Int("epochs", default_epochs, 1, 1000));
  UNL_ASSIGN_OR_RETURN(o.batch_size, reader.Int("batch_size", 8, 1, 1024));
  UNL_ASSIGN_OR_RETURN(o.weight_decay, reader.Double("weight_decay", 0.01, 0.0, 1.0));
  UNL_ASSIGN_OR_RETURN(o.max_grad_norm, reader.Double("max_grad_norm", 1.0, 0.0, 1e6));
  UNL_ASSIGN_OR_RETURN(o.max_steps, reader.Int("max_steps", 0, 0, 10000000));
  UNL_ASSIGN_OR_RETURN(o.seed, reader.Uint64("seed", 0));
  UNL_ASSIGN_OR_RETURN(o.stop_at_holdout_level, reader.Bool("stop_at_holdout_level", false));
  UNL_ASSIGN_OR_RETURN(o.stop_probability_ratio,
                       reader.Double("stop_probability_ratio", 1.0, 0.0, 10.0,
                                     /*lo_exclusive=*/true));
  UNL_ASSIGN_OR_RETURN(o.stop_check_every, reader.Int("stop_check_every", 0, 0, 1000000));
  return o;
}

nlohmann::json TextTrainingOptionsToJson(const TextTrainingOptions& o) {
  return nlohmann::json{{"learning_rate", o.learning_rate},
                        {"epochs", o.epochs},
                        {"batch_size", o.batch_size},
                        {"weight_decay", o.weight_decay},
                        {"max_grad_norm", o.max_grad_norm},
                        {"max_steps", o.max_steps},
                        {"seed", o.seed},
                        {"stop_at_holdout_level", o.stop_at_holdout_level},
                        {"stop_probability_ratio", o.stop_probability_ratio},
                        {"stop_check_every", o.stop_check_every}};
}

int64_t TextTotalSteps(const TextTrainingOptions& options, int64_t num_forget) {
  if (num_forget <= 0) return 0;
  const int64_t per_epoch = (num_forget + options.batch_size - 1) / options.batch_size;
  int64_t total = per_epoch * options.epochs;
  if (options.max_steps > 0) total = std::min(total, options.max_steps);
  return total;
}

std::vector<std::vector<int64_t>> ForgetBatchSchedule(const TextTrainingOptions& options,
                                                      int64_t num_forget) {
  std::vector<std::vector<int64_t>> schedule;
  const int64_t total = TextTotalSteps(options, num_forget);
  std::mt19937_64 rng(options.seed);
  std::vector<int64_t> order(static_cast<size_t>(num_forget));
  while (static_cast<int64_t>(schedule.size()) < total) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t start = 0; start < num_forget && static_cast<int64_t>(schedule.size()) < total;
         start += options.batch_size) {
      const int64_t end = std::min(num_forget, start + options.batch_size);
      schedule.emplace_back(order.begin() + start, order.begin() + end);
    }
  }
  return schedule;
}

std::vector<std::vector<int64_t>> RetainBatchSchedule(
    const std::vector<std::vector<int64_t>>& forget_schedule, int64_t num_retain, uint64_t seed) {
  std::vector<std::vector<int64_t>> schedule(forget_schedule.size());
  if (num_retain <= 0) return schedule;
  // A distinct stream from the forget schedule's.
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<int64_t> order(static_cast<size_t>(num_retain));
  size_t next = order.size();  // forces a shuffle on first use
  for (size_t s = 0; s < forget_schedule.size(); ++s) {
    for (size_t k = 0; k < forget_schedule[s].size(); ++k) {
      if (next == order.size()) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        next = 0;
      }
      schedule[s].push_back(order[next++]);
    }
  }
  return schedule;
}

std::vector<EncodedExample> EncodeExamples(const Tokenizer& tokenizer,
                                           const std::vector<TextExample>& examples) {
  std::vector<EncodedExample> encoded;
  encoded.reserve(examples.size());
  for (const TextExample& e : examples) {
    encoded.push_back(EncodeQa(tokenizer, e.question, e.answer, /*add_eos=*/true));
  }
  return encoded;
}

TokenBatch CollateSelected(const CausalLm& model, const std::vector<EncodedExample>& encoded,
                           const std::vector<int64_t>& indices) {
  std::vector<EncodedExample> selected;
  selected.reserve(indices.size());
  for (int64_t i : indices) selected.push_back(encoded[static_cast<size_t>(i)]);
  TokenBatch batch =
      Collate(selected, model.tokenizer().pad_id(), model.config().max_position_embeddings);
  batch.input_ids = batch.input_ids.to(model.device());
  batch.labels = batch.labels.to(model.device());
  return batch;
}

// ---- TextMethod
// -----------------------------------------------------------------------------------

absl::Status TextMethod::CheckParent(const Model& parent) const {
  if (dynamic_cast<const LogitDifferenceLm*>(&parent) == nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      name(), " trains the model's full weights, but this version is served as ",
      parent.architecture(),
      " (a target minus ULD assistants): training the target would drop what the assistants "
      "forget. Use the uld method for further requests on this model, or roll back to a "
      "full-weights version"));
}

absl::StatusOr<std::unique_ptr<CausalLm>> TextMethod::MakeWorkingModel(const MethodContext& ctx,
                                                                       const CausalLm& target) {
  return target.CloneLm(ctx.device);
}

absl::StatusOr<Candidate> TextMethod::MakeCandidate(const MethodContext& /*ctx*/,
                                                    std::unique_ptr<CausalLm> working) {
  return Candidate::SelfContained(ArtifactKind::kFullWeights, std::move(working));
}

absl::Status TextMethod::CheckData(const ErasureData& data) const {
  if (data.forget.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " needs a non-empty forget_set"));
  }
  for (size_t i = 0; i < data.forget.size(); ++i) {
    if (data.forget[i].question.empty() || data.forget[i].answer.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("forget_set[", i, "] needs a non-empty question and answer"));
    }
  }
  for (size_t i = 0; i < data.retain.size(); ++i) {
    if (data.retain[i].question.empty() || data.retain[i].answer.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("retain_set[", i, "] needs a non-empty question and answer"));
    }
  }
  return absl::OkStatus();
}

int64_t TextMethod::TotalSteps(const ErasureData& data) const {
  return TextTotalSteps(training_, static_cast<int64_t>(data.forget.size()));
}

OptimizerOptions TextMethod::Schedule(int64_t /*total_steps*/, int64_t /*steps_per_epoch*/) const {
  return OptimizerOptions{};
}

namespace {

// Mean per-token geometric-mean answer probability of the first kStopProbeExamples examples.
double MeanAnswerProbabilityOf(const LanguageModel& model,
                               const std::vector<EncodedExample>& encoded) {
  torch::NoGradGuard no_grad;
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(encoded.size()), kStopProbeExamples);
  double sum = 0.0;
  constexpr int64_t kBatch = 16;
  for (int64_t begin = 0; begin < n; begin += kBatch) {
    std::vector<EncodedExample> selected(encoded.begin() + begin,
                                         encoded.begin() + std::min(n, begin + kBatch));
    const TokenBatch batch = Collate(selected, model.pad_id(), model.max_context());
    torch::Tensor logits = model.Logits(batch.input_ids);
    sum += GeometricMeanAnswerProbability(logits, batch.labels.to(logits.device()))
               .sum()
               .item<double>();
  }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

}  // namespace

absl::StatusOr<Candidate> TextMethod::Run(const MethodContext& ctx) {
  if (ctx.parent == nullptr || ctx.data == nullptr || ctx.progress == nullptr ||
      ctx.cancel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": the method context needs a parent, data, progress and cancel"));
  }
  const CausalLm* reference = LogitDifferenceLm::TargetOf(*ctx.parent);
  if (reference == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " needs a causal language model, got ",
                                                   ModelFamilyName(ctx.parent->family())));
  }
  UNL_RETURN_IF_ERROR(CheckParent(*ctx.parent));
  UNL_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> working, MakeWorkingModel(ctx, *reference));
  CausalLm* model = working.get();
  const ErasureData& data = *ctx.data;
  UNL_RETURN_IF_ERROR(CheckData(data));

  const int64_t num_forget = static_cast<int64_t>(data.forget.size());
  const std::vector<std::vector<int64_t>> schedule = ForgetBatchSchedule(training_, num_forget);
  const int64_t total_steps = static_cast<int64_t>(schedule.size());
  const int64_t steps_per_epoch = (num_forget + training_.batch_size - 1) / training_.batch_size;

  UNL_RETURN_IF_ERROR(TorchCall("prepare", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    return Prepare(*model, reference, data, schedule);
  }));

  std::vector<torch::Tensor> params;
  for (torch::Tensor& p : model->module()->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  if (params.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(name(), ": the model has no trainable parameters"));
  }
  model->module()->train();

  TrainingLoopOptions loop;
  loop.total_steps = total_steps;
  loop.optimizer = Schedule(total_steps, steps_per_epoch);
  loop.optimizer.learning_rate = training_.learning_rate;
  loop.optimizer.weight_decay = training_.weight_decay;
  loop.optimizer.max_grad_norm = training_.max_grad_norm;
  loop.progress_every = std::max<int64_t>(1, total_steps / 100);

  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    return TorchCall("step loss", [&]() -> absl::StatusOr<torch::Tensor> {
      return StepLoss(*model, step, schedule[static_cast<size_t>(step)]);
    });
  };
  // The stopping rule: the parent's holdout level, then a check every stop_check_every steps.
  nlohmann::json stop_facts = nlohmann::json::object();
  std::vector<EncodedExample> forget_probe;
  double holdout_level = 0.0;
  double last_ratio = 0.0;
  if (training_.stop_at_holdout_level) {
    if (ctx.probes == nullptr || ctx.probes->text_holdout.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          name(),
          ".stop_at_holdout_level needs the model's holdout probes (probes/holdout.jsonl: "
          "records of the same kind it never trained on); the model has none"));
    }
    UNL_RETURN_IF_ERROR(TorchCall("holdout level", [&]() -> absl::Status {
      holdout_level =
          MeanAnswerProbabilityOf(*ctx.parent->AsLanguageModel(),
                                  EncodeExamples(reference->tokenizer(), ctx.probes->text_holdout));
      return absl::OkStatus();
    }));
    forget_probe = EncodeExamples(model->tokenizer(), data.forget);
    loop.stop_check_every =
        training_.stop_check_every > 0 ? training_.stop_check_every : steps_per_epoch;
    loop.stop_check = [&](int64_t steps_done) -> absl::StatusOr<bool> {
      return TorchCall("stopping rule", [&]() -> absl::StatusOr<bool> {
        const double forget = MeanAnswerProbabilityOf(StopProbeModel(*model), forget_probe);
        last_ratio = forget / std::max(holdout_level, 1e-10);
        return last_ratio <= training_.stop_probability_ratio;
      });
    };
  }
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop(params, loop, step_fn, ctx.progress, ctx.cancel);
  model->module()->eval();
  if (!result.ok()) return result.status();
  UNL_ASSIGN_OR_RETURN(Candidate candidate, MakeCandidate(ctx, std::move(working)));
  candidate.facts["steps"] = result->steps;
  if (training_.stop_at_holdout_level) {
    candidate.facts["stopping_rule"] = {{"stopped_early", result->stopped_early},
                                        {"steps", result->steps},
                                        {"step_cap", total_steps},
                                        {"holdout_answer_probability", holdout_level},
                                        {"last_checked_ratio", last_ratio},
                                        {"target_ratio", training_.stop_probability_ratio}};
  }
  return candidate;
}

}  // namespace unlearning::core
