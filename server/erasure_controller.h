// ErasureController: the erasure workflow behind ErasureService, free of gRPC. Admission (schema
// limits, the model's family, the method and its parameters, thresholds and payload through
// core::PlanErasure, queue capacity, durable acceptance in the journal, idempotent resend),
// cancellation, recovery of unfinished jobs at startup, the queue gauges, and the event feed a
// stream follows (subscription plus a catch-up snapshot). The gRPC services only convert and call
// it.
//
// It takes the request as the v1 message because the journal stores the request's bytes (the job
// runner re-reads them) and its fingerprint is of the canonical message; events are
// v1::ErasureEvent because that is what the event hub carries.
#pragma once

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "core/certs/ed25519.h"
#include "core/methods/method_registry.h"
#include "server/event_hub.h"
#include "server/infra/journal.h"
#include "server/infra/metrics.h"
#include "server/model_manager.h"
#include "server/proto_convert.h"
#include "server/scheduler.h"
#include "unlearning/v1/erasure.pb.h"

namespace unlearning::server {

struct ErasureControllerDeps {
  Journal* journal = nullptr;
  ModelManager* models = nullptr;
  Scheduler* scheduler = nullptr;
  EventHub* events = nullptr;
  Metrics* metrics = nullptr;
  const core::MethodRegistry* methods = nullptr;
  RequestLimits limits;
  const core::certs::SigningKey* signing_key = nullptr;  // required
};

// Thread-safe. Borrows its dependencies; they must outlive it.
class ErasureController {
 public:
  explicit ErasureController(ErasureControllerDeps deps) : deps_(std::move(deps)) {}

  // Validates, journals (durably) and queues one request, and counts the outcome (accepted,
  // duplicate or rejected with its code) in the metrics. Returns the job and whether the request
  // id was already known (then nothing new is queued). Errors are the rejection reason:
  // kInvalidArgument / kNotFound / kFailedPrecondition naming what to fix, kResourceExhausted when
  // the model's queue is full, kAlreadyExists for a known id with different contents. `owner` is
  // the submitter's identity, journaled with the job (docs/security.md; "" without authentication).
  absl::StatusOr<AcceptResult> Submit(const v1::ErasureRequest& request,
                                      const std::string& owner = "");

  // Cancels a job: a queued job ends CANCELLED at once (its followers get the event); a running
  // job's token fires and the runner ends it. Idempotent for cancelled jobs; kFailedPrecondition
  // for a job that already ended otherwise; kNotFound for an unknown id.
  absl::StatusOr<JobRecord> Cancel(const std::string& job_id);

  // Called once at startup: requeues every unfinished job of the journal (jobs of models no longer
  // loaded end FAILED). Returns how many were queued.
  absl::StatusOr<int> RecoverJobs();

  absl::StatusOr<JobRecord> GetJob(const std::string& job_id);
  absl::StatusOr<JobRecord> GetJobByRequest(const std::string& request_id);
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter);
  // The certificate of a job, by job id or else by request id. kInvalidArgument if both are
  // empty; kNotFound naming the job's state if it has none.
  absl::StatusOr<CertificateRecord> GetCertificate(const std::string& job_id,
                                                   const std::string& request_id);

  // Every record of `model_id`'s certificate chain, oldest first. kNotFound for an unknown model.
  absl::StatusOr<std::vector<CertificateRecord>> ListCertificates(const std::string& model_id);
  // The key certificates are signed with (null if the server has none).
  const core::certs::SigningKey* signing_key() const { return deps_.signing_key; }

  // Follows a job's events (progress and its end). The listener runs on the publishing thread
  // (a job worker or a Cancel caller) and must not block. Returns the id for Unfollow.
  int64_t Follow(const std::string& job_id, EventHub::Listener listener);
  void Unfollow(const std::string& job_id, int64_t subscription);
  // The event describing the job's state now: its terminal event if it ended (with the
  // certificate when completed), else a PROGRESS snapshot. Read after Follow, so an end between
  // the two is not missed (followers drop a second terminal event).
  absl::StatusOr<v1::ErasureEvent> Snapshot(const std::string& job_id);

 private:
  void UpdateQueueGauges(const std::string& model_id);
  absl::StatusOr<AcceptResult> Admit(const v1::ErasureRequest& request, const std::string& owner);

  ErasureControllerDeps deps_;
  absl::Mutex submit_mu_;  // capacity check + accept + enqueue are one step
};

// True for the event kinds that end a job (COMPLETED, FAILED, FAILED_VERIFICATION, CANCELLED).
bool IsTerminalEvent(const v1::ErasureEvent& event);

}  // namespace unlearning::server
