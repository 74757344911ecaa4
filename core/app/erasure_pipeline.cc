#include "core/app/erasure_pipeline.h"

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

#include "core/common/status_macros.h"
#include "core/common/threads.h"
#include "core/common/torch_status.h"

namespace unlearning::core {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Class ids of a classes / generation payload against the model's labels.
absl::Status CheckClassIds(const ClassLabels& labels, const std::vector<int64_t>& forget,
                           int64_t override_class, const char* payload) {
  const int64_t n = labels.num_classes();
  std::set<int64_t> distinct;
  for (int64_t c : forget) {
    if (c < 0 || c >= n) {
      return absl::InvalidArgumentError(absl::StrCat(payload, ".forget_classes: class ", c,
                                                     " does not exist (the model has classes 0..",
                                                     n - 1, ")"));
    }
    distinct.insert(c);
  }
  if (static_cast<int64_t>(distinct.size()) >= n) {
    return absl::InvalidArgumentError(absl::StrCat(
        payload, ".forget_classes names every class of the model: nothing would be left"));
  }
  if (override_class >= 0) {
    if (override_class >= n) {
      return absl::InvalidArgumentError(absl::StrCat(payload, ".override_class ", override_class,
                                                     " does not exist (the model has classes 0..",
                                                     n - 1, ")"));
    }
    if (distinct.count(override_class) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(payload, ".override_class ", override_class, " is also a forget class"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ErasurePlan> PlanErasure(const MethodRegistry& methods,
                                        const FamilyRegistry& families, ModelFamily model_family,
                                        const std::string& method_name,
                                        const nlohmann::json& params, const ErasureData& data,
                                        std::vector<Threshold> thresholds, const Model* model) {
  UNL_ASSIGN_OR_RETURN(ModelFamily method_family, methods.FamilyOf(method_name));
  if (method_family != model_family) {
    return absl::FailedPreconditionError(
        absl::StrCat("method ", method_name, " applies to ", ModelFamilyName(method_family),
                     " models; this model is a ", ModelFamilyName(model_family), " model"));
  }
  ErasurePlan plan;
  UNL_ASSIGN_OR_RETURN(plan.method, methods.Create(method_name, params));
  UNL_ASSIGN_OR_RETURN(plan.family, families.Find(model_family));
  if (data.family != model_family) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request carries a ", ModelFamilyName(data.family),
                     " payload but the model is a ", ModelFamilyName(model_family),
                     " model: send the ", ModelFamilyName(model_family), " payload"));
  }
  UNL_RETURN_IF_ERROR(plan.method->CheckData(data));
  if (model != nullptr) UNL_RETURN_IF_ERROR(plan.method->CheckParent(*model));
  if (model != nullptr && model_family == ModelFamily::kImageClassifier &&
      model->AsImageClassifier() != nullptr) {
    UNL_RETURN_IF_ERROR(
        CheckClassIds(*model->AsImageClassifier(), data.classes.forget_classes, -1, "classes"));
  }
  if (model != nullptr && model_family == ModelFamily::kDiffusion &&
      model->AsImageSampler() != nullptr) {
    UNL_RETURN_IF_ERROR(CheckClassIds(*model->AsImageSampler(), data.generation.forget_classes,
                                      data.generation.override_class, "generation"));
  }
  if (thresholds.empty()) {
    plan.thresholds = plan.family->verifier->DefaultThresholds();
  } else {
    UNL_RETURN_IF_ERROR(ValidateThresholds(thresholds, plan.family->verifier->FigureNames(),
                                           ModelFamilyName(model_family)));
    plan.thresholds = std::move(thresholds);
  }
  return plan;
}

absl::StatusOr<ErasureOutcome> RunErasure(ErasurePlan& plan, const Model& parent,
                                          const ModelProbes& probes, const ErasureData& data,
                                          torch::Device device, ProgressSink* progress,
                                          const CancellationToken* cancel,
                                          const std::string& parent_key,
                                          std::shared_ptr<const Model> parent_owner) {
  if (plan.method == nullptr || plan.family == nullptr || progress == nullptr ||
      cancel == nullptr) {
    return absl::InvalidArgumentError("RunErasure needs a planned method, progress and cancel");
  }
  const ScopedThreadLimit thread_limit(JobThreads());
  ErasureOutcome outcome;
  outcome.steps = plan.method->TotalSteps(data);

  static std::atomic<int64_t> runs{0};
  VerificationInputs inputs;
  inputs.before = &parent;
  inputs.data = &data;
  inputs.probes = &probes;
  inputs.thresholds = plan.thresholds;
  inputs.cancel = cancel;
  // Without a key, the parent's probe scores are still shared between the two checks of this run.
  inputs.parent_key = parent_key.empty() ? absl::StrCat("run-", runs.fetch_add(1)) : parent_key;

  // Already absent? The parent judged as its own candidate against the request's thresholds.
  progress->OnProgress({0, outcome.steps, 0.0, 0.0, "checking"});
  auto verify_start = std::chrono::steady_clock::now();
  UNL_ASSIGN_OR_RETURN(
      std::optional<VerificationReport> absent,
      TorchCall("checking the parent", [&]() -> absl::StatusOr<std::optional<VerificationReport>> {
        return plan.family->verifier->CheckAlreadyAbsent(inputs);
      }));
  outcome.verify_seconds = SecondsSince(verify_start);
  if (cancel->cancelled()) return absl::CancelledError("cancelled");
  if (absent.has_value()) {
    outcome.report = *std::move(absent);
    outcome.already_absent = true;
    outcome.steps = 0;
    return outcome;
  }

  MethodContext ctx;
  ctx.parent = &parent;
  ctx.parent_owner = std::move(parent_owner);
  ctx.device = device;
  ctx.data = &data;
  ctx.probes = &probes;
  ctx.progress = progress;
  ctx.cancel = cancel;
  const auto method_start = std::chrono::steady_clock::now();
  UNL_ASSIGN_OR_RETURN(outcome.candidate,
                       TorchCall("running the method", [&]() -> absl::StatusOr<Candidate> {
                         return plan.method->Run(ctx);
                       }));
  outcome.method_seconds = SecondsSince(method_start);
  if (cancel->cancelled()) return absl::CancelledError("cancelled");
  if (outcome.candidate.model == nullptr || !outcome.candidate.write) {
    return absl::InternalError(
        absl::StrCat("method ", plan.method->name(), " returned an incomplete candidate"));
  }

  progress->OnProgress({0, 0, 0.0, 0.0, "verifying"});
  inputs.after = outcome.candidate.model.get();
  verify_start = std::chrono::steady_clock::now();
  UNL_ASSIGN_OR_RETURN(outcome.report,
                       TorchCall("verifying", [&]() -> absl::StatusOr<VerificationReport> {
                         return plan.family->verifier->Verify(inputs);
                       }));
  outcome.verify_seconds += SecondsSince(verify_start);
  return outcome;
}

}  // namespace unlearning::core
