// Runs one erasure job end to end: the core erasure pipeline (method -> candidate ->
// verification), then publish (artifact + manifest in the store, journal, pointer swap) and the
// certificate, reporting progress to the event hub, the journal and the metrics. Called by the
// scheduler's workers, one job per model at a time.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"

#include "core/app/erasure_pipeline.h"
#include "core/certs/ed25519.h"
#include "core/common/cancellation.h"
#include "core/methods/method_registry.h"
#include "core/verify/verifier.h"
#include "server/event_hub.h"
#include "server/infra/journal.h"
#include "server/infra/metrics.h"
#include "server/infra/model_store.h"
#include "server/model_manager.h"
#include "unlearning/v1/erasure.pb.h"

namespace unlearning::server {

struct JobRunnerOptions {
  std::string server_version = "dev";
  // Seals every certificate (server/certificates.h). Borrowed; required.
  const core::certs::SigningKey* signing_key = nullptr;
};

// Thread-safe: Run() is called concurrently for jobs of different models.
class JobRunner {
 public:
  JobRunner(Journal* journal, ModelStore* store, ModelManager* models, EventHub* events,
            Metrics* metrics, const core::MethodRegistry* methods, JobRunnerOptions options,
            std::function<bool()> shutting_down);

  // Runs job `job_id` to a terminal state (or leaves it for the next start when the server shuts
  // down mid-run). Never throws; every failure ends as a FAILED job with the reason.
  void Run(const std::string& job_id, const core::CancellationToken* cancel);

 private:
  absl::Status RunJob(const JobRecord& job, const core::CancellationToken* cancel);
  // The certificate fields every completed job has (the "after" side is the caller's).
  v1::Certificate BaseCertificate(const JobRecord& job, const core::ErasurePlan& plan,
                                  const ServedVersion& parent,
                                  const core::VerificationReport& report,
                                  const std::string& previous_sha) const;
  absl::Status CompleteUnchanged(const JobRecord& job, const core::ErasurePlan& plan,
                                 const ServedVersion& parent,
                                 const core::VerificationReport& report,
                                 const std::string& report_json);
  void Finish(const JobRecord& job, JobState state, const std::string& message,
              const std::string& verification_json);
  // Metrics, progress gauge and the journal's "state" event of a job that ended in `state`.
  void RecordEnd(const JobRecord& job, JobState state, const std::string& message);
  void Emit(v1::ErasureEvent::Kind kind, const std::string& job_id, const std::string& message,
            const v1::Certificate* certificate = nullptr);

  Journal* journal_;
  ModelStore* store_;
  ModelManager* models_;
  EventHub* events_;
  Metrics* metrics_;
  const core::MethodRegistry* methods_;
  JobRunnerOptions options_;
  std::function<bool()> shutting_down_;
};

}  // namespace unlearning::server
