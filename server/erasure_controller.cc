#include "server/erasure_controller.h"

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

#include "core/app/erasure_pipeline.h"
#include "core/common/status_macros.h"

namespace unlearning::server {

bool IsTerminalEvent(const v1::ErasureEvent& event) {
  return event.kind() == v1::ErasureEvent::KIND_COMPLETED ||
         event.kind() == v1::ErasureEvent::KIND_FAILED ||
         event.kind() == v1::ErasureEvent::KIND_FAILED_VERIFICATION ||
         event.kind() == v1::ErasureEvent::KIND_CANCELLED;
}

void ErasureController::UpdateQueueGauges(const std::string& model_id) {
  deps_.metrics->SetQueueDepth(model_id, deps_.scheduler->QueueDepth(model_id));
}

absl::StatusOr<AcceptResult> ErasureController::Submit(const v1::ErasureRequest& request,
                                                       const std::string& owner) {
  absl::StatusOr<AcceptResult> result = Admit(request, owner);
  if (!result.ok()) {
    deps_.metrics->RecordErasureRequest(ErasureOutcome::kRejected, result.status().code());
  } else {
    deps_.metrics->RecordErasureRequest(result->duplicate ? ErasureOutcome::kDuplicate
                                                          : ErasureOutcome::kAccepted);
  }
  return result;
}

absl::StatusOr<AcceptResult> ErasureController::Admit(const v1::ErasureRequest& request,
                                                      const std::string& owner) {
  UNL_RETURN_IF_ERROR(ValidateErasureRequest(request, deps_.limits));
  UNL_ASSIGN_OR_RETURN(auto info, deps_.models->registry().Info(request.model_id()));
  UNL_ASSIGN_OR_RETURN(std::string method_name, MethodName(request.method()));
  UNL_ASSIGN_OR_RETURN(std::vector<core::Threshold> thresholds,
                       ThresholdsFromProto(request.thresholds(), info->family));
  // Everything the job will need, checked now: a request that cannot run is never accepted.
  UNL_ASSIGN_OR_RETURN(std::shared_ptr<const ServedVersion> serving,
                       deps_.models->Resolve(request.model_id(), 0));
  absl::StatusOr<core::ErasurePlan> plan =
      core::PlanErasure(*deps_.methods, deps_.models->families(), info->family, method_name,
                        MethodParamsToJson(request.method()), ErasureDataFromProto(request),
                        std::move(thresholds), serving->model.get());
  if (!plan.ok()) {
    return absl::Status(plan.status().code(), absl::StrCat("model '", request.model_id(),
                                                           "': ", plan.status().message()));
  }

  NewJob job;
  job.request_id = request.request_id();
  job.request_fingerprint = RequestFingerprint(request);
  job.model_id = request.model_id();
  job.method = method_name;
  job.params_json = plan->method->EffectiveParams().dump();
  job.request_blob = request.SerializeAsString();
  job.forget_sha256 = ForgetSetSha256(request);
  job.compliance_reference = request.compliance_reference();
  job.owner = owner;

  absl::MutexLock lock(&submit_mu_);
  if (!deps_.journal->GetJobByRequest(request.request_id()).ok()) {
    UNL_RETURN_IF_ERROR(deps_.scheduler->CheckCapacity(request.model_id()));
  }
  UNL_ASSIGN_OR_RETURN(AcceptResult result, deps_.journal->AcceptRequest(job));
  if (!result.duplicate) {
    deps_.scheduler->Enqueue(job.model_id, result.job.job_id);
    UpdateQueueGauges(job.model_id);
  }
  return result;
}

absl::StatusOr<int> ErasureController::RecoverJobs() {
  UNL_ASSIGN_OR_RETURN(int64_t requeued, deps_.journal->RequeueInterrupted());
  (void)requeued;
  UNL_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, deps_.journal->UnfinishedJobs());
  int n = 0;
  for (const JobRecord& job : jobs) {
    if (!deps_.models->registry().Contains(job.model_id)) {
      deps_.journal
          ->FinishJob(job.job_id, JobState::kFailed,
                      absl::StrCat("model '", job.model_id, "' is no longer loaded"), "")
          .IgnoreError();
      continue;
    }
    deps_.scheduler->Enqueue(job.model_id, job.job_id);
    UpdateQueueGauges(job.model_id);
    ++n;
  }
  return n;
}

absl::StatusOr<JobRecord> ErasureController::Cancel(const std::string& job_id) {
  UNL_ASSIGN_OR_RETURN(JobRecord current, deps_.journal->GetJob(job_id));
  if (current.state == JobState::kCancelled) return current;  // idempotent
  if (IsTerminal(current.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " already ended ", JobStateName(current.state)));
  }
  UNL_ASSIGN_OR_RETURN(JobRecord record, deps_.journal->RequestCancel(job_id));
  if (record.state == JobState::kCancelled) {
    // It was queued: it will never run.
    deps_.scheduler->RemoveQueued(job_id);
    UpdateQueueGauges(record.model_id);
    deps_.metrics->RecordJobFinished(record.method, JobState::kCancelled, 0.0);
    UNL_ASSIGN_OR_RETURN(v1::ErasureEvent event, Snapshot(record.job_id));
    event.set_message("cancelled while queued");
    deps_.events->Publish(event);
  } else {
    deps_.scheduler->CancelRunning(job_id);
  }
  return record;
}

absl::StatusOr<JobRecord> ErasureController::GetJob(const std::string& job_id) {
  return deps_.journal->GetJob(job_id);
}

absl::StatusOr<JobRecord> ErasureController::GetJobByRequest(const std::string& request_id) {
  return deps_.journal->GetJobByRequest(request_id);
}

absl::StatusOr<JobPage> ErasureController::ListJobs(const JobFilter& filter) {
  return deps_.journal->ListJobs(filter);
}

absl::StatusOr<CertificateRecord> ErasureController::GetCertificate(const std::string& job_id,
                                                                    const std::string& request_id) {
  std::string id = job_id;
  if (id.empty() && !request_id.empty()) {
    UNL_ASSIGN_OR_RETURN(JobRecord job, deps_.journal->GetJobByRequest(request_id));
    id = job.job_id;
  }
  if (id.empty()) return absl::InvalidArgumentError("set job_id or request_id");
  absl::StatusOr<CertificateRecord> cert = deps_.journal->GetCertificateByJob(id);
  if (cert.ok()) return cert;
  UNL_ASSIGN_OR_RETURN(JobRecord job, deps_.journal->GetJob(id));
  return absl::NotFoundError(
      absl::StrCat("job ", id, " has no certificate: it is ", JobStateName(job.state)));
}

absl::StatusOr<std::vector<CertificateRecord>> ErasureController::ListCertificates(
    const std::string& model_id) {
  if (model_id.empty()) return absl::InvalidArgumentError("model_id is required");
  UNL_RETURN_IF_ERROR(deps_.journal->GetModel(model_id).status());
  return deps_.journal->ListCertificates(model_id);
}

int64_t ErasureController::Follow(const std::string& job_id, EventHub::Listener listener) {
  return deps_.events->Subscribe(job_id, std::move(listener));
}

void ErasureController::Unfollow(const std::string& job_id, int64_t subscription) {
  deps_.events->Unsubscribe(job_id, subscription);
}

absl::StatusOr<v1::ErasureEvent> ErasureController::Snapshot(const std::string& job_id) {
  UNL_ASSIGN_OR_RETURN(JobRecord record, deps_.journal->GetJob(job_id));
  v1::ErasureEvent event;
  event.set_request_id(record.request_id);
  event.set_job_id(record.job_id);
  *event.mutable_job() = JobToProto(record);
  if (IsTerminal(record.state)) {
    event.set_kind(TerminalKind(record.state));
    event.set_message(record.error_message);
    if (record.state == JobState::kCompleted) {
      if (auto cert = deps_.journal->GetCertificateByJob(record.job_id); cert.ok()) {
        if (auto proto = CertificateFromRecord(*cert); proto.ok()) {
          *event.mutable_certificate() = *proto;
        }
      }
    }
  } else {
    event.set_kind(v1::ErasureEvent::KIND_PROGRESS);
    v1::Progress* p = event.mutable_progress();
    p->set_step(record.step);
    p->set_total_steps(record.total_steps);
    p->set_loss(record.loss);
    p->set_phase(record.state == JobState::kQueued ? "queued" : "training");
  }
  return event;
}

}  // namespace unlearning::server
