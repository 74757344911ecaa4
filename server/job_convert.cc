// Verification reports, artifact kinds, jobs and certificates: v1 <-> core / journal types
// (declared in server/proto_convert.h; the request side is in server/proto_convert.cc).
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include <google/protobuf/util/json_util.h>

#include "server/proto_convert.h"

namespace unlearning::server {

v1::VerificationReport ToProto(const core::VerificationReport& report) {
  v1::VerificationReport out;
  for (const auto& f : report.figures) {
    v1::Figure* fig = out.add_figures();
    fig->set_name(f.name);
    fig->set_before(f.before);
    fig->set_after(f.after);
    fig->set_tier(core::TierName(f.tier));
  }
  out.set_passed(report.passed);
  for (const auto& c : report.checks) out.add_checks(c);
  out.set_forget_examples(report.forget_examples);
  out.set_retain_examples(report.retain_examples);
  out.set_holdout_examples(report.holdout_examples);
  for (const auto& t : report.tiers) {
    v1::TierCoverage* tier = out.add_tiers();
    tier->set_tier(core::TierName(t.tier));
    tier->set_computed(t.computed);
    tier->set_basis(t.basis);
  }
  out.set_suite_sha256(report.suite_sha256);
  out.set_already_absent(report.already_absent);
  return out;
}

nlohmann::json ReportToJson(const core::VerificationReport& report) {
  nlohmann::json figures = nlohmann::json::array();
  for (const auto& f : report.figures) {
    figures.push_back({{"name", f.name},
                       {"before", f.before},
                       {"after", f.after},
                       {"tier", core::TierName(f.tier)}});
  }
  nlohmann::json tiers = nlohmann::json::array();
  for (const auto& t : report.tiers) {
    tiers.push_back(
        {{"tier", core::TierName(t.tier)}, {"computed", t.computed}, {"basis", t.basis}});
  }
  return {{"figures", figures},
          {"passed", report.passed},
          {"checks", report.checks},
          {"forget_examples", report.forget_examples},
          {"retain_examples", report.retain_examples},
          {"holdout_examples", report.holdout_examples},
          {"tiers", tiers},
          {"suite_sha256", report.suite_sha256},
          {"already_absent", report.already_absent}};
}

v1::VerificationReport ReportFromJson(const nlohmann::json& json) {
  v1::VerificationReport out;
  if (!json.is_object()) return out;
  for (const auto& f : json.value("figures", nlohmann::json::array())) {
    v1::Figure* fig = out.add_figures();
    fig->set_name(f.value("name", ""));
    fig->set_before(f.value("before", 0.0));
    fig->set_after(f.value("after", 0.0));
    fig->set_tier(f.value("tier", ""));
  }
  out.set_passed(json.value("passed", false));
  for (const auto& t : json.value("tiers", nlohmann::json::array())) {
    v1::TierCoverage* tier = out.add_tiers();
    tier->set_tier(t.value("tier", ""));
    tier->set_computed(t.value("computed", false));
    tier->set_basis(t.value("basis", ""));
  }
  out.set_suite_sha256(json.value("suite_sha256", ""));
  out.set_already_absent(json.value("already_absent", false));
  for (const auto& c : json.value("checks", nlohmann::json::array())) {
    out.add_checks(c.get<std::string>());
  }
  out.set_forget_examples(json.value("forget_examples", 0));
  out.set_retain_examples(json.value("retain_examples", 0));
  out.set_holdout_examples(json.value("holdout_examples", 0));
  return out;
}

absl::StatusOr<core::ArtifactKind> ArtifactKindFromName(const std::string& name) {
  return core::ParseArtifactKind(name);
}

v1::ArtifactKind ToProto(core::ArtifactKind kind) {
  switch (kind) {
    case core::ArtifactKind::kFullWeights:
      return v1::ARTIFACT_KIND_FULL_WEIGHTS;
    case core::ArtifactKind::kLoraAdapter:
      return v1::ARTIFACT_KIND_LORA_ADAPTER;
    case core::ArtifactKind::kAssistant:
      return v1::ARTIFACT_KIND_ASSISTANT;
    case core::ArtifactKind::kOneStepGenerator:
      return v1::ARTIFACT_KIND_ONE_STEP_GENERATOR;
  }
  return v1::ARTIFACT_KIND_UNSPECIFIED;
}

// ---- jobs and certificates (journal records <-> v1) ----

v1::JobState ToProto(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return v1::JOB_STATE_QUEUED;
    case JobState::kRunning:
      return v1::JOB_STATE_RUNNING;
    case JobState::kCompleted:
      return v1::JOB_STATE_COMPLETED;
    case JobState::kFailed:
      return v1::JOB_STATE_FAILED;
    case JobState::kFailedVerification:
      return v1::JOB_STATE_FAILED_VERIFICATION;
    case JobState::kCancelled:
      return v1::JOB_STATE_CANCELLED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

v1::ErasureEvent::Kind TerminalKind(JobState state) {
  switch (state) {
    case JobState::kCompleted:
      return v1::ErasureEvent::KIND_COMPLETED;
    case JobState::kFailedVerification:
      return v1::ErasureEvent::KIND_FAILED_VERIFICATION;
    case JobState::kCancelled:
      return v1::ErasureEvent::KIND_CANCELLED;
    default:
      return v1::ErasureEvent::KIND_FAILED;
  }
}

v1::Job JobToProto(const JobRecord& r) {
  v1::Job job;
  job.set_job_id(r.job_id);
  job.set_request_id(r.request_id);
  job.set_model_id(r.model_id);
  job.set_method(r.method);
  job.set_state(ToProto(r.state));
  job.set_error_message(r.error_message);
  job.set_step(r.step);
  job.set_total_steps(r.total_steps);
  job.set_loss(r.loss);
  job.set_accepted_unix_ms(r.accepted_unix_ms);
  job.set_started_unix_ms(r.started_unix_ms);
  job.set_finished_unix_ms(r.finished_unix_ms);
  job.set_published_version(r.published_version);
  v1::ErasureRequest request;
  if (request.ParseFromString(r.request_blob)) job.set_forget_examples(ForgetItemCount(request));
  job.set_compliance_reference(r.compliance_reference);
  if (!r.verification_json.empty()) {
    auto parsed = nlohmann::json::parse(r.verification_json, nullptr, false);
    if (!parsed.is_discarded()) *job.mutable_verification() = ReportFromJson(parsed);
  }
  job.set_attempts(r.attempts);
  return job;
}

absl::StatusOr<v1::Certificate> CertificateFromRecord(const CertificateRecord& record) {
  v1::Certificate cert;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(record.json, &cert, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("stored certificate ", record.certificate_id,
                                            " does not parse: ", status.ToString()));
  }
  cert.set_certificate_sha256(record.sha256);
  cert.set_signature_ed25519(record.signature_hex);
  return cert;
}

std::optional<JobState> JobStateFromProto(v1::JobState state) {
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

}  // namespace unlearning::server
