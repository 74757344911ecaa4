// ErasureService: the bidirectional erasure stream and the unary job/certificate calls, on the
// callback API.
#include "server/erasure_service.h"

#include <deque>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "server/certificates.h"
#include "server/wire_parse.h"

namespace unlearning::server {
namespace {

constexpr char kShutdownMessage[] =
    "the server is shutting down; accepted jobs resume after restart: follow them again with "
    "watch_job_id";

v1::ErasureEvent Rejected(const std::string& request_id, const std::string& job_id,
                          absl::StatusCode code, std::string message) {
  v1::ErasureEvent event;
  event.set_kind(v1::ErasureEvent::KIND_REJECTED);
  event.set_request_id(request_id);
  event.set_job_id(job_id);
  event.set_status_code(static_cast<int>(code));
  event.set_message(std::move(message));
  return event;
}

}  // namespace

// One open Erase call. No thread waits on it: gRPC calls OnReadDone / OnWriteDone / OnCancel /
// OnDone, and the event hub calls Push from whichever thread publishes. Events are queued and
// written one at a time; the stream finishes once nothing is left to write and either the client
// half-closed with every followed job ended, the client went away, or the server shuts down.
class ErasureServiceImpl::EraseStream
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
      public std::enable_shared_from_this<EraseStream> {
 public:
  EraseStream(ErasureServiceImpl* service, ErasureController* controller, Authorizer* auth,
              AuthorizedCall call)
      : service_(service), controller_(controller), auth_(auth), call_(std::move(call)) {}

  // Ends the stream at once with `status` (refused at open: nothing was read).
  void Refuse(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
    }
    Finish(status);
  }

  // Sends initial metadata (the client knows the stream is open) and reads the first message.
  void Start(bool shutting_down) {
    StartSendInitialMetadata();
    if (shutting_down) {
      ServerShutdown();
      return;
    }
    StartRead(&read_buffer_);
  }

  // Ends the stream with UNAVAILABLE once its queued events are written.
  void ServerShutdown() {
    {
      absl::MutexLock lock(&mu_);
      shutdown_ = true;
    }
    Pump();
  }

  // Queues an event; drops a second terminal event for the same job (a job ends once, but the hub
  // and a catch-up read can both report it).
  void Push(const v1::ErasureEvent& event) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (!event.job_id().empty() && done_jobs_.count(event.job_id()) != 0) return;
      if (IsTerminalEvent(event)) {
        done_jobs_.insert(event.job_id());
        open_jobs_.erase(event.job_id());
      }
      queue_.push_back(event);
    }
    Pump();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or went away: OnCancel says so)
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
      }
      Pump();
      return;
    }
    HandleBytes();
    // Under the lock so that a concurrent Pump cannot finish between the check and the read.
    // (Safe: a reaction started from inside a reaction is deferred until this one returns.)
    absl::MutexLock lock(&mu_);
    if (finished_ || shutdown_ || broken_) {
      reads_done_ = true;  // no further read: the stream is ending
      return;
    }
    StartRead(&read_buffer_);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      if (!ok) broken_ = true;  // the client went away
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    Pump();
  }

  void OnDone() override {
    std::vector<std::pair<std::string, int64_t>> subscriptions;
    {
      absl::MutexLock lock(&mu_);
      subscriptions.swap(subscriptions_);
    }
    for (const auto& [job_id, id] : subscriptions) controller_->Unfollow(job_id, id);
    service_->Release(this);  // may destroy *this: nothing after it
  }

 private:
  // The caller as of now (the token file may have been reloaded since the stream opened), allowed
  // to use `model_id`; else the refusal.
  absl::StatusOr<Caller> Authorize(const std::string& model_id) {
    Caller caller = call_.caller();
    if (auth_ != nullptr) {
      absl::StatusOr<Caller> now = auth_->Refresh(caller);
      if (!now.ok()) return now.status();
      caller = *std::move(now);
    }
    absl::Status allowed =
        Authorizer::Check(caller, kRoleErase | kRoleAdmin, model_id, "ErasureService/Erase");
    if (!allowed.ok()) return allowed;
    return caller;
  }

  // Audits one message's outcome.
  void AuditMessage(const char* what, const std::string& model_id, const std::string& request_id,
                    const std::string& job_id, absl::StatusCode code, const std::string& reason) {
    AuthorizedCall call = call_;
    call.set_rpc(absl::StrCat("ErasureService/Erase.", what));
    call.set_model(model_id);
    call.set_request_id(request_id);
    call.set_job_id(job_id);
    call.Audit(grpc::Status(
        static_cast<grpc::StatusCode>(code),
        (code == absl::StatusCode::kUnauthenticated || code == absl::StatusCode::kPermissionDenied)
            ? reason
            : ""));
  }

  // Parses the message just read; a message that cannot be used as it is gets its own REJECTED.
  void HandleBytes() {
    std::string bytes;
    std::vector<grpc::Slice> slices;
    if (read_buffer_.Dump(&slices).ok()) {
      for (const grpc::Slice& slice : slices) {
        bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
      }
    }
    read_buffer_.Clear();
    absl::StatusOr<std::vector<std::string>> invalid = ParseOrNameInvalidUtf8(bytes, &request_);
    if (!invalid.ok()) {
      AuditMessage("malformed", "", "", "", invalid.status().code(), "");
      Push(Rejected("", "", invalid.status().code(), std::string(invalid.status().message())));
      return;
    }
    if (!invalid->empty()) {
      // The fields were cleared; the request id, model and job id, if valid, say which request.
      const std::string request_id = request_.has_submit() ? request_.submit().request_id() : "";
      const std::string model_id = request_.has_submit() ? request_.submit().model_id() : "";
      AuditMessage("malformed", model_id, request_id, request_.watch_job_id(),
                   absl::StatusCode::kInvalidArgument, "");
      Push(Rejected(
          request_id, request_.watch_job_id(), absl::StatusCode::kInvalidArgument,
          absl::StrCat(absl::StrJoin(*invalid, ", "), invalid->size() == 1 ? " is" : " are",
                       " not valid UTF-8: strings must be UTF-8 text; nothing was submitted")));
      return;
    }
    Handle(request_);
  }

  void Handle(const v1::ErasureStreamRequest& message) {
    if (message.has_submit()) {
      const v1::ErasureRequest& request = message.submit();
      absl::StatusOr<Caller> caller = Authorize(request.model_id());
      if (caller.ok()) {
        // A known request id is followed, not resubmitted: only by its owner (or an admin).
        if (auto known = controller_->GetJobByRequest(request.request_id());
            known.ok() && !caller->Owns(known->owner)) {
          caller = absl::PermissionDeniedError(
              absl::StrCat("request id '", request.request_id(),
                           "' belongs to another caller's job: choose a new request id"));
        }
      }
      if (!caller.ok()) {
        AuditMessage("submit", request.model_id(), request.request_id(), "", caller.status().code(),
                     std::string(caller.status().message()));
        Push(Rejected(request.request_id(), "", caller.status().code(),
                      std::string(caller.status().message())));
        return;
      }
      absl::StatusOr<AcceptResult> result = controller_->Submit(request, caller->name);
      if (!result.ok()) {
        AuditMessage("submit", request.model_id(), request.request_id(), "", result.status().code(),
                     "");
        Push(Rejected(request.request_id(), "", result.status().code(),
                      std::string(result.status().message())));
        return;
      }
      AuditMessage("submit", request.model_id(), request.request_id(), result->job.job_id,
                   absl::StatusCode::kOk, "");
      Follow(result->job.job_id);
      v1::ErasureEvent accepted;
      accepted.set_kind(v1::ErasureEvent::KIND_ACCEPTED);
      accepted.set_request_id(request.request_id());
      accepted.set_job_id(result->job.job_id);
      accepted.set_duplicate(result->duplicate);
      *accepted.mutable_job() = JobToProto(result->job);
      accepted.set_message(result->duplicate ? "request id already known: following its job"
                                             : "accepted and journaled");
      Push(accepted);
      if (result->duplicate) {
        // Catch up with a job that may have progressed or ended already.
        if (auto now = controller_->Snapshot(result->job.job_id); now.ok()) Push(*now);
      }
    } else if (!message.watch_job_id().empty()) {
      const std::string& job_id = message.watch_job_id();
      absl::StatusOr<JobRecord> job = controller_->GetJob(job_id);
      absl::StatusOr<Caller> caller = Authorize(job.ok() ? job->model_id : "");
      if (caller.ok() && job.ok() && !caller->Owns(job->owner)) {
        caller = absl::PermissionDeniedError(
            absl::StrCat("job '", job_id, "' was submitted by another caller: token '",
                         caller->name, "' may watch only its own jobs (admins watch any)"));
      }
      if (!caller.ok()) {
        AuditMessage("watch", job.ok() ? job->model_id : "", "", job_id, caller.status().code(),
                     std::string(caller.status().message()));
        Push(Rejected("", job_id, caller.status().code(), std::string(caller.status().message())));
        return;
      }
      if (!job.ok()) {
        AuditMessage("watch", "", "", job_id, absl::StatusCode::kNotFound, "");
        Push(Rejected("", job_id, absl::StatusCode::kNotFound,
                      absl::StrCat("job '", job_id, "' does not exist")));
        return;
      }
      AuditMessage("watch", job->model_id, job->request_id, job_id, absl::StatusCode::kOk, "");
      Follow(job_id);
      // Read after subscribing so an end between the two reads is not missed.
      if (auto now = controller_->Snapshot(job_id); now.ok()) Push(*now);
    } else {
      Push(Rejected("", "", absl::StatusCode::kInvalidArgument,
                    "empty stream message: set `submit` or `watch_job_id`"));
    }
  }

  // Waits (without a thread) for `job_id`'s terminal event before finishing after a half-close.
  void Follow(const std::string& job_id) {
    {
      absl::MutexLock lock(&mu_);
      if (done_jobs_.count(job_id) == 0) open_jobs_.insert(job_id);
    }
    std::weak_ptr<EraseStream> weak = weak_from_this();
    const int64_t id = controller_->Follow(job_id, [weak](const v1::ErasureEvent& event) {
      if (auto self = weak.lock()) self->Push(event);
    });
    absl::MutexLock lock(&mu_);
    subscriptions_.emplace_back(job_id, id);
  }

  // Starts the next write, or finishes the stream when nothing is left to do. gRPC operations are
  // started outside the lock (their reactions may run on another thread at once).
  void Pump() {
    const v1::ErasureEvent* next = nullptr;  // serialized into write_buffer_
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      if (!broken_ && !queue_.empty()) {
        writing_ = true;
        next = &queue_.front();
        bool own_buffer = false;  // write_buffer_ is free: one write is outstanding at a time
        write_buffer_.Clear();
        grpc::SerializationTraits<v1::ErasureEvent>::Serialize(*next, &write_buffer_, &own_buffer);
      } else if (broken_ || shutdown_ || (reads_done_ && open_jobs_.empty())) {
        finished_ = true;
        if (shutdown_ && !broken_) {
          status = grpc::Status(grpc::StatusCode::UNAVAILABLE, kShutdownMessage);
        }
      } else {
        return;  // waiting for a message, an event or the client
      }
    }
    if (next != nullptr) {
      StartWrite(&write_buffer_);
    } else {
      Finish(status);
    }
  }

  ErasureServiceImpl* const service_;
  ErasureController* const controller_;
  Authorizer* const auth_;
  const AuthorizedCall call_;         // who opened the stream (re-checked per message)
  grpc::ByteBuffer read_buffer_;      // the one outstanding read's bytes
  v1::ErasureStreamRequest request_;  // ... parsed
  grpc::ByteBuffer write_buffer_;     // the one outstanding write's bytes (queue_.front())

  absl::Mutex mu_;
  std::deque<v1::ErasureEvent> queue_ ABSL_GUARDED_BY(mu_);  // front() is being written if writing_
  std::set<std::string> open_jobs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> done_jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, int64_t>> subscriptions_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // cancelled or a write failed: write nothing more
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish() called
};

ErasureServiceImpl::~ErasureServiceImpl() = default;

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ErasureServiceImpl::Erase(
    grpc::CallbackServerContext* ctx) {
  AuthorizedCall call(auth_, *ctx, "ErasureService/Erase");
  grpc::Status denied = call.Check(kRoleErase | kRoleAdmin);
  auto stream = std::make_shared<EraseStream>(this, controller_, auth_, call);
  bool shutting_down = false;
  {
    absl::MutexLock lock(&mu_);
    if (denied.ok() && static_cast<int>(streams_.size()) >= max_streams_) {
      denied = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat(streams_.size(), " Erase streams are open (--max-erase-streams ",
                       max_streams_,
                       "): send more requests on a stream you have open, or retry later"));
    }
    streams_[stream.get()] = stream;  // until OnDone, refused or not
    shutting_down = shutting_down_;
  }
  if (!denied.ok()) {
    call.Audit(denied);
    stream->Refuse(denied);
  } else {
    stream->Start(shutting_down);
  }
  return stream.get();
}

void ErasureServiceImpl::Release(EraseStream* stream) {
  std::shared_ptr<EraseStream> last;  // destroyed after the lock is released
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  last = std::move(it->second);
  streams_.erase(it);
}

void ErasureServiceImpl::Shutdown() {
  std::vector<std::shared_ptr<EraseStream>> open;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [raw, stream] : streams_) open.push_back(stream);
  }
  for (const auto& stream : open) stream->ServerShutdown();
}

int ErasureServiceImpl::open_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

// The erase role sees and cancels only its own jobs (submitted with a token of the same name) on
// the models its token may use; admin sees every job.
namespace {

grpc::Status CheckJobAccess(const AuthorizedCall& call, const JobRecord& job) {
  if (!call.caller().Owns(job.owner)) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("job '", job.job_id,
                     "' was submitted by another caller: "
                     "token '",
                     call.caller().name, "' may use only its own jobs (admins use any)"));
  }
  if (!call.caller().MayUse(job.model_id)) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("token '", call.caller().name, "' may not use model '", job.model_id, "'"));
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::ServerUnaryReactor* ErasureServiceImpl::GetJob(grpc::CallbackServerContext* ctx,
                                                     const v1::GetJobRequest* request,
                                                     v1::Job* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "ErasureService/GetJob");
  call.set_job_id(request->job_id());
  if (grpc::Status denied = call.Check(kRoleErase | kRoleAdmin); !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  if (request->job_id().empty()) {
    return call.Finish(reactor,
                       grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required"));
  }
  absl::StatusOr<JobRecord> record = controller_->GetJob(request->job_id());
  if (!record.ok()) return call.Finish(reactor, ToGrpc(record.status()));
  call.set_model(record->model_id);
  if (grpc::Status denied = CheckJobAccess(call, *record); !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  *response = JobToProto(*record);
  return call.Finish(reactor, grpc::Status::OK);
}

grpc::ServerUnaryReactor* ErasureServiceImpl::ListJobs(grpc::CallbackServerContext* ctx,
                                                       const v1::ListJobsRequest* request,
                                                       v1::ListJobsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "ErasureService/ListJobs");
  call.set_model(request->model_id());
  if (grpc::Status denied = call.Check(kRoleErase | kRoleAdmin, request->model_id());
      !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  if (request->page_size() < 0) {
    return call.Finish(reactor,
                       grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size must be >= 0"));
  }
  JobFilter filter;
  filter.model_id = request->model_id();
  filter.state = JobStateFromProto(request->state());
  if (request->page_size() > 0) filter.page_size = request->page_size();
  filter.page_token = request->page_token();
  if (!call.caller().IsAdmin()) filter.owner = call.caller().name;  // only its own jobs
  absl::StatusOr<JobPage> page = controller_->ListJobs(filter);
  if (page.ok()) {
    for (const JobRecord& r : page->jobs) *response->add_jobs() = JobToProto(r);
    response->set_next_page_token(page->next_page_token);
  }
  return call.Finish(reactor, ToGrpc(page.status()));
}

grpc::ServerUnaryReactor* ErasureServiceImpl::CancelJob(grpc::CallbackServerContext* ctx,
                                                        const v1::CancelJobRequest* request,
                                                        v1::Job* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "ErasureService/CancelJob");
  call.set_job_id(request->job_id());
  if (grpc::Status denied = call.Check(kRoleErase | kRoleAdmin); !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  if (request->job_id().empty()) {
    return call.Finish(reactor,
                       grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required"));
  }
  absl::StatusOr<JobRecord> job = controller_->GetJob(request->job_id());
  if (!job.ok()) return call.Finish(reactor, ToGrpc(job.status()));
  call.set_model(job->model_id);
  call.set_request_id(job->request_id);
  if (grpc::Status denied = CheckJobAccess(call, *job); !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  absl::StatusOr<JobRecord> record = controller_->Cancel(request->job_id());
  if (record.ok()) *response = JobToProto(*record);
  return call.Finish(reactor, ToGrpc(record.status()));
}

grpc::ServerUnaryReactor* ErasureServiceImpl::GetCertificate(
    grpc::CallbackServerContext* ctx, const v1::GetCertificateRequest* request,
    v1::Certificate* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "ErasureService/GetCertificate");
  call.set_job_id(request->job_id());
  call.set_request_id(request->request_id());
  if (grpc::Status denied = call.Check(kRoleErase | kRoleAdmin); !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  // The job the certificate belongs to decides (own jobs only, admins any).
  absl::StatusOr<JobRecord> job =
      !request->job_id().empty() ? controller_->GetJob(request->job_id())
      : !request->request_id().empty()
          ? controller_->GetJobByRequest(request->request_id())
          : absl::StatusOr<JobRecord>(absl::InvalidArgumentError("set job_id or request_id"));
  if (job.ok()) {
    call.set_model(job->model_id);
    if (grpc::Status denied = CheckJobAccess(call, *job); !denied.ok()) {
      return call.Finish(reactor, denied);
    }
  }
  absl::StatusOr<v1::Certificate> cert = [&]() -> absl::StatusOr<v1::Certificate> {
    absl::StatusOr<CertificateRecord> record =
        controller_->GetCertificate(request->job_id(), request->request_id());
    if (!record.ok()) return record.status();
    return CertificateFromRecord(*record);
  }();
  if (cert.ok()) *response = *std::move(cert);
  return call.Finish(reactor, ToGrpc(cert.status()));
}

grpc::ServerUnaryReactor* ErasureServiceImpl::ListCertificates(
    grpc::CallbackServerContext* ctx, const v1::ListCertificatesRequest* request,
    v1::ListCertificatesResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "ErasureService/ListCertificates");
  call.set_model(request->model_id());
  // A model's whole chain (what a verifier needs); certificates hold hashes and counts, never the
  // forget data.
  if (grpc::Status denied = call.Check(kRoleErase | kRoleAdmin, request->model_id());
      !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  absl::StatusOr<std::vector<CertificateRecord>> records =
      controller_->ListCertificates(request->model_id());
  if (records.ok()) {
    response->set_model_id(request->model_id());
    for (const CertificateRecord& r : *records) *response->add_certificates() = SealedToProto(r);
    if (controller_->signing_key() != nullptr) {
      *response->mutable_signing_key() = SigningKeyToProto(*controller_->signing_key());
    }
  }
  return call.Finish(reactor, ToGrpc(records.status()));
}

grpc::ServerUnaryReactor* ErasureServiceImpl::GetSigningKey(grpc::CallbackServerContext* ctx,
                                                            const v1::GetSigningKeyRequest*,
                                                            v1::SigningKey* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  AuthorizedCall call(auth_, *ctx, "ErasureService/GetSigningKey");
  if (grpc::Status denied = call.Check(kAnyRole); !denied.ok()) {
    return call.Finish(reactor, denied);
  }
  if (controller_->signing_key() == nullptr) {
    return call.Finish(reactor, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                             "this server has no certificate signing key"));
  }
  *response = SigningKeyToProto(*controller_->signing_key());
  return call.Finish(reactor, grpc::Status::OK);
}

}  // namespace unlearning::server
