#include "server/job_runner.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "core/app/erasure_pipeline.h"
#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "server/certificates.h"
#include "server/infra/manifest.h"
#include "server/proto_convert.h"

namespace unlearning::server {
namespace {

using Clock = std::chrono::steady_clock;

// Forwards a job's progress to its followers (at most ~4 events/s), the journal (~1 write/s) and
// the progress gauge.
class JobProgressSink : public core::ProgressSink {
 public:
  JobProgressSink(const JobRecord& job, Journal* journal, EventHub* events, Metrics* metrics)
      : job_(job), journal_(journal), events_(events), metrics_(metrics) {}

  void OnProgress(const core::ProgressUpdate& u) override {
    const auto now = Clock::now();
    const bool last = u.total_steps > 0 && u.step >= u.total_steps;
    const bool phase_changed = u.phase != phase_;
    phase_ = u.phase;
    if (u.total_steps > 0) {
      metrics_->SetJobProgress(job_.model_id,
                               static_cast<double>(u.step) / static_cast<double>(u.total_steps));
    }
    if (u.phase == "training" &&
        (last || now - last_journal_ >= std::chrono::seconds(1) || u.step <= 1)) {
      last_journal_ = now;
      journal_->UpdateProgress(job_.job_id, u.step, u.total_steps, u.loss).IgnoreError();
    }
    if (last || phase_changed || now - last_event_ >= std::chrono::milliseconds(250)) {
      last_event_ = now;
      v1::ErasureEvent event;
      event.set_kind(v1::ErasureEvent::KIND_PROGRESS);
      event.set_request_id(job_.request_id);
      event.set_job_id(job_.job_id);
      v1::Progress* p = event.mutable_progress();
      p->set_step(u.step);
      p->set_total_steps(u.total_steps);
      p->set_loss(u.loss);
      p->set_eta_seconds(u.eta_seconds);
      p->set_phase(u.phase);
      events_->Publish(event);
    }
  }

 private:
  const JobRecord& job_;
  Journal* journal_;
  EventHub* events_;
  Metrics* metrics_;
  std::string phase_;
  Clock::time_point last_event_{};
  Clock::time_point last_journal_{};
};

std::map<std::string, double> FigureMap(const core::VerificationReport& report, bool after) {
  std::map<std::string, double> out;
  for (const auto& f : report.figures) out[f.name] = after ? f.after : f.before;
  return out;
}

void AddChain(const std::vector<ChainEntry>& chain, v1::Certificate& cert) {
  for (const ChainEntry& link : chain) {
    v1::ChainLink* l = cert.add_chain();
    l->set_version(link.version);
    l->set_artifact_kind(ToProto(link.kind));
    l->set_manifest_sha256(link.manifest_sha256);
  }
}

// The journal record of a certificate: sealed (canonical JSON, its SHA-256, signed; chained to
// the model's previous certificate through cert.previous_certificate_sha256). `cert` gets the
// seal's fields, so the event carries what the journal holds.
absl::StatusOr<CertificateRecord> SignedRecord(const JobRecord& job, v1::Certificate& cert,
                                               const core::certs::SigningKey* key) {
  if (key == nullptr) return absl::FailedPreconditionError("no certificate signing key");
  UNL_ASSIGN_OR_RETURN(CertificateRecord record, SealCertificate(cert, *key));
  record.job_id = job.job_id;
  MarkSealed(record, cert);
  return record;
}

std::map<std::string, std::string> TierMap(const core::VerificationReport& report) {
  std::map<std::string, std::string> out;
  for (const auto& f : report.figures) out[f.name] = core::TierName(f.tier);
  return out;
}

}  // namespace

JobRunner::JobRunner(Journal* journal, ModelStore* store, ModelManager* models, EventHub* events,
                     Metrics* metrics, const core::MethodRegistry* methods,
                     JobRunnerOptions options, std::function<bool()> shutting_down)
    : journal_(journal),
      store_(store),
      models_(models),
      events_(events),
      metrics_(metrics),
      methods_(methods),
      options_(std::move(options)),
      shutting_down_(std::move(shutting_down)) {}

void JobRunner::Emit(v1::ErasureEvent::Kind kind, const std::string& job_id,
                     const std::string& message, const v1::Certificate* certificate) {
  auto record = journal_->GetJob(job_id);
  if (!record.ok()) return;
  v1::ErasureEvent event;
  event.set_kind(kind);
  event.set_request_id(record->request_id);
  event.set_job_id(job_id);
  event.set_message(message);
  *event.mutable_job() = JobToProto(*record);
  if (certificate != nullptr) *event.mutable_certificate() = *certificate;
  events_->Publish(event);
}

void JobRunner::Finish(const JobRecord& job, JobState state, const std::string& message,
                       const std::string& verification_json) {
  auto status = journal_->FinishJob(job.job_id, state, message, verification_json);
  if (!status.ok()) {
    // The job may have been finished concurrently (e.g. cancelled); report what is stored.
    auto current = journal_->GetJob(job.job_id);
    if (current.ok() && IsTerminal(current->state)) state = current->state;
  }
  RecordEnd(job, state, message);
  Emit(TerminalKind(state), job.job_id, message);
}

void JobRunner::RecordEnd(const JobRecord& job, JobState state, const std::string& message) {
  const double seconds =
      static_cast<double>(NowUnixMs() -
                          (job.started_unix_ms > 0 ? job.started_unix_ms : job.accepted_unix_ms)) /
      1000.0;
  metrics_->RecordJobFinished(job.method, state, seconds);
  metrics_->SetJobProgress(job.model_id, 0.0);
  journal_
      ->AppendEvent(job.job_id, "state",
                    nlohmann::json({{"state", JobStateName(state)}, {"message", message}}).dump())
      .IgnoreError();
}

void JobRunner::Run(const std::string& job_id, const core::CancellationToken* cancel) {
  auto marked = journal_->MarkRunning(job_id);
  if (!marked.ok()) {
    // Cancelled while queued, or unknown: nothing to run.
    return;
  }
  const JobRecord job = *std::move(marked);
  metrics_->RecordJobStarted(job.method);
  journal_->AppendEvent(job_id, "state", R"({"state":"running"})").IgnoreError();
  Emit(v1::ErasureEvent::KIND_PROGRESS, job_id, "started");

  absl::Status status = RunJob(job, cancel);
  if (status.ok()) return;  // RunJob finished the job (completed or failed verification)
  if (absl::IsCancelled(status)) {
    auto current = journal_->GetJob(job_id);
    const bool asked = current.ok() && current->cancel_requested;
    if (!asked && shutting_down_()) {
      // Interrupted by shutdown: the job stays `running` in the journal and is queued again by
      // RequeueInterrupted() at the next start.
      metrics_->SetJobProgress(job.model_id, 0.0);
      return;
    }
    Finish(job, JobState::kCancelled, "cancelled by request", "");
    return;
  }
  Finish(job, JobState::kFailed, std::string(status.message()), "");
}

v1::Certificate JobRunner::BaseCertificate(const JobRecord& job, const core::ErasurePlan& plan,
                                           const ServedVersion& parent,
                                           const core::VerificationReport& report,
                                           const std::string& previous_sha) const {
  v1::Certificate cert;
  cert.set_certificate_id(absl::StrCat("cert-", job.job_id.substr(job.job_id.find('-') + 1)));
  cert.set_request_id(job.request_id);
  cert.set_job_id(job.job_id);
  cert.set_compliance_reference(job.compliance_reference);
  cert.set_model_id(job.model_id);
  cert.set_version_before(parent.version);
  cert.set_method(job.method);
  cert.set_method_params_json(plan.method->EffectiveParams().dump());
  cert.set_forget_set_sha256(job.forget_sha256);
  cert.set_manifest_before_sha256(parent.manifest_sha256);
  *cert.mutable_verification() = ToProto(report);
  cert.set_accepted_unix_ms(job.accepted_unix_ms);
  cert.set_started_unix_ms(job.started_unix_ms);
  cert.set_completed_unix_ms(NowUnixMs());
  cert.set_server_version(options_.server_version);
  cert.set_previous_certificate_sha256(previous_sha);
  return cert;
}

// The data was already absent from the parent: nothing to store or publish. The certificate
// records the parent as both before and after, and the report as the evidence.
absl::Status JobRunner::CompleteUnchanged(const JobRecord& job, const core::ErasurePlan& plan,
                                          const ServedVersion& parent,
                                          const core::VerificationReport& report,
                                          const std::string& report_json) {
  UNL_ASSIGN_OR_RETURN(std::string previous_sha, journal_->LatestCertificateSha(job.model_id));
  v1::Certificate cert = BaseCertificate(job, plan, parent, report, previous_sha);
  cert.set_version_after(parent.version);
  cert.set_manifest_after_sha256(parent.manifest_sha256);
  cert.set_artifact_kind(ToProto(parent.kind));
  AddChain(parent.chain, cert);
  UNL_ASSIGN_OR_RETURN(const CertificateRecord record,
                       SignedRecord(job, cert, options_.signing_key));
  UNL_RETURN_IF_ERROR(
      journal_->CompleteJobUnchanged(job.job_id, parent.version, record, report_json));
  // Retention: versions older than the one the data is absent from are due like after a publish.
  models_->ApplyRetention(job.model_id).status().IgnoreError();
  const std::string message =
      absl::StrCat("already absent from version ", parent.version, " of ", job.model_id,
                   ": nothing trained or published (the evidence is in the certificate)");
  RecordEnd(job, JobState::kCompleted, message);
  Emit(v1::ErasureEvent::KIND_COMPLETED, job.job_id, message, &cert);
  return absl::OkStatus();
}

absl::Status JobRunner::RunJob(const JobRecord& job, const core::CancellationToken* cancel) {
  v1::ErasureRequest request;
  if (!request.ParseFromString(job.request_blob)) {
    return absl::InternalError("the journaled request does not parse");
  }
  UNL_ASSIGN_OR_RETURN(auto info, models_->registry().Info(job.model_id));
  UNL_ASSIGN_OR_RETURN(std::shared_ptr<const ServedVersion> parent,
                       models_->Resolve(job.model_id, 0));
  auto params = nlohmann::json::parse(job.params_json, nullptr, false);
  if (params.is_discarded()) params = nlohmann::json::object();
  const core::ErasureData data = ErasureDataFromProto(request);
  UNL_ASSIGN_OR_RETURN(std::vector<core::Threshold> thresholds,
                       ThresholdsFromProto(request.thresholds(), info->family));
  UNL_ASSIGN_OR_RETURN(core::ErasurePlan plan,
                       core::PlanErasure(*methods_, models_->families(), info->family, job.method,
                                         params, data, std::move(thresholds), parent->model.get()));

  // 1-2. Method on the parent (never modified: the serving version keeps answering queries),
  //      then verification against it.
  JobProgressSink sink(job, journal_, events_, metrics_);
  UNL_ASSIGN_OR_RETURN(
      core::ErasureOutcome outcome,
      core::RunErasure(
          plan, *parent->model, info->probes, data, models_->device(), &sink, cancel,
          absl::StrCat(job.model_id, "@", parent->version, ":", parent->manifest_sha256),
          parent->model));
  if (cancel->cancelled()) return absl::CancelledError("cancelled");
  const core::VerificationReport& report = outcome.report;
  const std::string report_json = ReportToJson(report).dump();
  metrics_->SetVerificationFigures(job.model_id, FigureMap(report, false), FigureMap(report, true),
                                   TierMap(report));
  if (!report.suite_sha256.empty()) metrics_->SetEvaluationSuite(job.model_id, report.suite_sha256);
  if (!report.passed) {
    Finish(job, JobState::kFailedVerification,
           absl::StrCat("verification failed, nothing published: ",
                        absl::StrJoin(report.checks, "; ")),
           report_json);
    return absl::OkStatus();
  }

  if (outcome.already_absent) return CompleteUnchanged(job, plan, *parent, report, report_json);

  // 3. Publish: store the artifact with its manifest (atomic), then one journal transaction
  //    (version + job + certificate), then the pointer swap.
  sink.OnProgress({0, 0, 0.0, 0.0, "publishing"});
  UNL_ASSIGN_OR_RETURN(auto serving_now, models_->registry().Serving(job.model_id));
  if (serving_now->version != parent->version) {
    return absl::AbortedError(absl::StrCat("model '", job.model_id, "' changed from version ",
                                           parent->version, " to ", serving_now->version,
                                           " while the job ran (rollback?); resubmit the request"));
  }
  core::Candidate& candidate = outcome.candidate;
  UNL_ASSIGN_OR_RETURN(int64_t next, journal_->NextVersion(job.model_id));
  Manifest header;
  header.kind = core::ArtifactKindName(candidate.kind);
  header.family = core::ModelFamilyName(info->family);
  header.parent_version = parent->version;
  header.facts = candidate.facts;
  UNL_ASSIGN_OR_RETURN(std::string dir,
                       store_->SaveWith(job.model_id, next, candidate.write, header));
  UNL_ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir, /*verify=*/false));
  UNL_ASSIGN_OR_RETURN(std::string sha_after, ManifestSha256(dir));
  UNL_ASSIGN_OR_RETURN(std::string previous_sha, journal_->LatestCertificateSha(job.model_id));

  auto served = std::make_shared<ServedVersion>();
  served->version = next;
  served->dir = dir;
  served->manifest_sha256 = sha_after;
  served->kind = candidate.kind;
  served->chain.push_back({next, candidate.kind, sha_after});
  if (core::NeedsParent(candidate.kind)) {
    served->chain.insert(served->chain.end(), parent->chain.begin(), parent->chain.end());
  }

  v1::Certificate cert = BaseCertificate(job, plan, *parent, report, previous_sha);
  cert.set_version_after(next);
  cert.set_manifest_after_sha256(sha_after);
  cert.set_artifact_kind(ToProto(candidate.kind));
  for (const ManifestFile& f : manifest.files) {
    v1::ArtifactFile* file = cert.add_artifact_files();
    file->set_path(f.path);
    file->set_bytes(f.bytes);
    file->set_sha256(f.sha256);
  }
  AddChain(served->chain, cert);
  cert.set_artifact_facts_json(candidate.facts.dump());

  UNL_ASSIGN_OR_RETURN(const CertificateRecord record,
                       SignedRecord(job, cert, options_.signing_key));

  ModelVersionRecord version;
  version.model_id = job.model_id;
  version.version = next;
  version.parent_version = parent->version;
  version.job_id = job.job_id;
  version.artifact_kind = core::ArtifactKindName(candidate.kind);
  version.dir = dir;
  version.manifest_sha256 = sha_after;
  version.figures_json = report_json;
  UNL_RETURN_IF_ERROR(journal_->CompleteJob(job.job_id, version, record, report_json));

  served->model = std::shared_ptr<const core::Model>(std::move(candidate.model));
  UNL_RETURN_IF_ERROR(models_->PublishResident(job.model_id, std::move(served)));

  const std::string message = absl::StrCat("published version ", next, " of ", job.model_id);
  RecordEnd(job, JobState::kCompleted, message);
  Emit(v1::ErasureEvent::KIND_COMPLETED, job.job_id, message, &cert);
  return absl::OkStatus();
}

}  // namespace unlearning::server
