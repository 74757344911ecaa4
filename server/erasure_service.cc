// ErasureService: the bidirectional erasure stream and the unary job/certificate calls.
#include <deque>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "core/app/erasure_pipeline.h"
#include "core/common/status_macros.h"
#include "server/job_runner.h"
#include "server/services.h"

namespace unlearning::server {
namespace {

// Serialises writes of one Erase stream on its own thread, so that job workers publishing events
// never block on a slow client. Counts the jobs the stream still waits a terminal event for.
class StreamWriter {
 public:
  explicit StreamWriter(grpc::ServerReaderWriter<v1::ErasureEvent, v1::ErasureStreamRequest>* s)
      : stream_(s), thread_([this] { Loop(); }) {}
  ~StreamWriter() { Close(); }

  // Follows `job_id` until its terminal event has been queued.
  void Follow(const std::string& job_id) {
    absl::MutexLock lock(&mu_);
    if (done_jobs_.count(job_id) == 0) open_jobs_.insert(job_id);
  }

  // Queues an event; drops a second terminal event for the same job (a job can end once, but the
  // hub and a catch-up read can both report it).
  void Push(const v1::ErasureEvent& event) {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    const bool terminal = event.kind() == v1::ErasureEvent::KIND_COMPLETED ||
                          event.kind() == v1::ErasureEvent::KIND_FAILED ||
                          event.kind() == v1::ErasureEvent::KIND_FAILED_VERIFICATION ||
                          event.kind() == v1::ErasureEvent::KIND_CANCELLED;
    if (!event.job_id().empty() && done_jobs_.count(event.job_id()) != 0) return;
    if (terminal) {
      done_jobs_.insert(event.job_id());
      open_jobs_.erase(event.job_id());
    }
    queue_.push_back(event);
  }

  // Waits until every followed job ended or `give_up` returns true (polled every 100 ms).
  void AwaitFollowedJobs(const std::function<bool()>& give_up) {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return (open_jobs_.empty() && queue_.empty()) || broken_;
    };
    while (!mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Milliseconds(100))) {
      if (give_up()) return;
    }
  }

  void Close() {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    while (true) {
      v1::ErasureEvent event;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || closed_; };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;  // closed and drained
        event = std::move(queue_.front());
        queue_.pop_front();
        if (broken_) continue;
      }
      if (!stream_->Write(event)) {
        absl::MutexLock lock(&mu_);
        broken_ = true;
      }
    }
  }

  grpc::ServerReaderWriter<v1::ErasureEvent, v1::ErasureStreamRequest>* stream_;
  absl::Mutex mu_;
  std::deque<v1::ErasureEvent> queue_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> open_jobs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> done_jobs_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// The event describing a job's current state: its terminal event if it ended (with the
// certificate when completed), else a PROGRESS snapshot.
v1::ErasureEvent SnapshotEvent(Journal* journal, const JobRecord& record) {
  v1::ErasureEvent event;
  event.set_request_id(record.request_id);
  event.set_job_id(record.job_id);
  *event.mutable_job() = JobToProto(record);
  if (IsTerminal(record.state)) {
    event.set_kind(TerminalKind(record.state));
    event.set_message(record.error_message);
    if (record.state == JobState::kCompleted) {
      if (auto cert = journal->GetCertificateByJob(record.job_id); cert.ok()) {
        if (auto proto = JobRunner::CertificateFromRecord(*cert); proto.ok()) {
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

std::optional<JobState> FromProto(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED:
      return JobState::kQueued;
    case v1::JOB_STATE_RUNNING:
      return JobState::kRunning;
    case v1::JOB_STATE_COMPLETED:
      return JobState::kCompleted;
    case v1::JOB_STATE_FAILED:
      return JobState::kFailed;
    case v1::JOB_STATE_FAILED_VERIFICATION:
      return JobState::kFailedVerification;
    case v1::JOB_STATE_CANCELLED:
      return JobState::kCancelled;
    default:
      return std::nullopt;
  }
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void ErasureServiceImpl::UpdateQueueGauges(const std::string& model_id) {
  deps_.metrics->SetQueueDepth(model_id, deps_.scheduler->QueueDepth(model_id));
}

absl::StatusOr<AcceptResult> ErasureServiceImpl::Submit(const v1::ErasureRequest& request) {
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
  const std::unique_ptr<core::UnlearningMethod>& method = plan->method;

  NewJob job;
  job.request_id = request.request_id();
  job.request_fingerprint = RequestFingerprint(request);
  job.model_id = request.model_id();
  job.method = method_name;
  job.params_json = method->EffectiveParams().dump();
  job.request_blob = request.SerializeAsString();
  job.forget_sha256 = ForgetSetSha256(request);
  job.compliance_reference = request.compliance_reference();

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

absl::StatusOr<int> ErasureServiceImpl::RecoverJobs() {
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

absl::StatusOr<JobRecord> ErasureServiceImpl::Cancel(const std::string& job_id) {
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
    v1::ErasureEvent event = SnapshotEvent(deps_.journal, record);
    event.set_message("cancelled while queued");
    deps_.events->Publish(event);
  } else {
    deps_.scheduler->CancelRunning(job_id);
  }
  return record;
}

grpc::Status ErasureServiceImpl::Erase(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<v1::ErasureEvent, v1::ErasureStreamRequest>* stream) {
  // Shared with the hub's listeners: a listener running concurrently with Unsubscribe() may still
  // push (a no-op once the writer is closed).
  auto writer_ptr = std::make_shared<StreamWriter>(stream);
  StreamWriter& writer = *writer_ptr;
  std::vector<std::pair<std::string, int64_t>> subscriptions;
  auto follow = [&](const std::string& job_id) {
    writer.Follow(job_id);
    subscriptions.emplace_back(
        job_id, deps_.events->Subscribe(
                    job_id, [writer_ptr](const v1::ErasureEvent& e) { writer_ptr->Push(e); }));
  };

  v1::ErasureStreamRequest message;
  while (stream->Read(&message)) {
    if (message.has_submit()) {
      const v1::ErasureRequest& request = message.submit();
      auto result = Submit(request);
      if (!result.ok()) {
        deps_.metrics->RecordErasureRequest(ErasureOutcome::kRejected, result.status().code());
        v1::ErasureEvent event;
        event.set_kind(v1::ErasureEvent::KIND_REJECTED);
        event.set_request_id(request.request_id());
        event.set_status_code(static_cast<int>(result.status().code()));
        event.set_message(std::string(result.status().message()));
        writer.Push(event);
        continue;
      }
      deps_.metrics->RecordErasureRequest(result->duplicate ? ErasureOutcome::kDuplicate
                                                            : ErasureOutcome::kAccepted);
      follow(result->job.job_id);
      v1::ErasureEvent accepted;
      accepted.set_kind(v1::ErasureEvent::KIND_ACCEPTED);
      accepted.set_request_id(request.request_id());
      accepted.set_job_id(result->job.job_id);
      accepted.set_duplicate(result->duplicate);
      *accepted.mutable_job() = JobToProto(result->job);
      accepted.set_message(result->duplicate ? "request id already known: following its job"
                                             : "accepted and journaled");
      writer.Push(accepted);
      if (result->duplicate) {
        // Catch up with a job that may have progressed or ended already.
        if (auto now = deps_.journal->GetJob(result->job.job_id); now.ok()) {
          writer.Push(SnapshotEvent(deps_.journal, *now));
        }
      }
    } else if (!message.watch_job_id().empty()) {
      auto record = deps_.journal->GetJob(message.watch_job_id());
      if (!record.ok()) {
        v1::ErasureEvent event;
        event.set_kind(v1::ErasureEvent::KIND_REJECTED);
        event.set_job_id(message.watch_job_id());
        event.set_status_code(static_cast<int>(absl::StatusCode::kNotFound));
        event.set_message(absl::StrCat("job '", message.watch_job_id(), "' does not exist"));
        writer.Push(event);
        continue;
      }
      follow(record->job_id);
      // Re-read after subscribing so an end between the two reads is not missed.
      if (auto now = deps_.journal->GetJob(record->job_id); now.ok()) {
        writer.Push(SnapshotEvent(deps_.journal, *now));
      }
    } else {
      v1::ErasureEvent event;
      event.set_kind(v1::ErasureEvent::KIND_REJECTED);
      event.set_status_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
      event.set_message("empty stream message: set `submit` or `watch_job_id`");
      writer.Push(event);
    }
  }
  // The client half-closed: keep the stream open until every followed job has ended.
  writer.AwaitFollowedJobs([&] { return ctx->IsCancelled() || deps_.scheduler->shutting_down(); });
  for (const auto& [job_id, id] : subscriptions) deps_.events->Unsubscribe(job_id, id);
  writer.Close();
  if (deps_.scheduler->shutting_down() && !ctx->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; accepted jobs resume after restart: "
                        "follow them again with watch_job_id");
  }
  return grpc::Status::OK;
}

grpc::Status ErasureServiceImpl::GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                                        v1::Job* response) {
  if (request->job_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required");
  }
  auto record = deps_.journal->GetJob(request->job_id());
  if (!record.ok()) return ToGrpc(record.status());
  *response = JobToProto(*record);
  return grpc::Status::OK;
}

grpc::Status ErasureServiceImpl::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* request,
                                          v1::ListJobsResponse* response) {
  JobFilter filter;
  filter.model_id = request->model_id();
  filter.state = FromProto(request->state());
  if (request->page_size() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size must be >= 0");
  }
  if (request->page_size() > 0) filter.page_size = request->page_size();
  filter.page_token = request->page_token();
  auto page = deps_.journal->ListJobs(filter);
  if (!page.ok()) return ToGrpc(page.status());
  for (const JobRecord& r : page->jobs) *response->add_jobs() = JobToProto(r);
  response->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status ErasureServiceImpl::CancelJob(grpc::ServerContext*,
                                           const v1::CancelJobRequest* request, v1::Job* response) {
  if (request->job_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required");
  }
  auto record = Cancel(request->job_id());
  if (!record.ok()) return ToGrpc(record.status());
  *response = JobToProto(*record);
  return grpc::Status::OK;
}

grpc::Status ErasureServiceImpl::GetCertificate(grpc::ServerContext*,
                                                const v1::GetCertificateRequest* request,
                                                v1::Certificate* response) {
  std::string job_id = request->job_id();
  if (job_id.empty() && !request->request_id().empty()) {
    auto job = deps_.journal->GetJobByRequest(request->request_id());
    if (!job.ok()) return ToGrpc(job.status());
    job_id = job->job_id;
  }
  if (job_id.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "set job_id or request_id");
  }
  auto cert = deps_.journal->GetCertificateByJob(job_id);
  if (!cert.ok()) {
    auto job = deps_.journal->GetJob(job_id);
    if (!job.ok()) return ToGrpc(job.status());
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("job ", job_id, " has no certificate: it is ", JobStateName(job->state)));
  }
  auto proto = JobRunner::CertificateFromRecord(*cert);
  if (!proto.ok()) return ToGrpc(proto.status());
  *response = *proto;
  return grpc::Status::OK;
}

}  // namespace unlearning::server
