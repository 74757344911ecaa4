#include "server/infra/journal.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <sqlite3.h>

#include "core/common/sha256.h"
#include "core/common/status_macros.h"
#include "server/infra/journal_sql.h"

namespace unlearning::server {
namespace {

using journal_sql::InsertVersion;
using journal_sql::InTransaction;
using journal_sql::kCertificateColumns;
using journal_sql::kJobColumns;
using journal_sql::kModelColumns;
using journal_sql::kVersionColumns;
using journal_sql::NewJobId;
using journal_sql::NowMs;
using journal_sql::QueryJob;
using journal_sql::QueryJobs;
using journal_sql::QueryLatestCertificateSha;
using journal_sql::QueryModel;
using journal_sql::ReadCertificate;
using journal_sql::ReadJob;
using journal_sql::ReadModel;
using journal_sql::ReadVersion;
using journal_sql::Stmt;
using journal_sql::VersionExists;

absl::Status CheckVersion(const ModelVersionRecord& v) {
  if (v.model_id.empty()) return absl::InvalidArgumentError("journal: version without model_id");
  if (v.version < 1) {
    return absl::InvalidArgumentError(absl::StrCat("journal: bad version ", v.version));
  }
  return absl::OkStatus();
}

}  // namespace

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kCompleted:
      return "completed";
    case JobState::kFailed:
      return "failed";
    case JobState::kFailedVerification:
      return "failed_verification";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

absl::StatusOr<JobState> ParseJobState(std::string_view name) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kCompleted, JobState::kFailed,
                     JobState::kFailedVerification, JobState::kCancelled}) {
    if (name == JobStateName(s)) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown job state '", std::string(name), "'"));
}

bool IsTerminal(JobState state) {
  return state != JobState::kQueued && state != JobState::kRunning;
}

Journal::Journal(sqlite3* db, JournalOptions options) : db_(db), options_(std::move(options)) {}

Journal::~Journal() { sqlite3_close_v2(db_); }

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& path,
                                                       JournalOptions options) {
  UNL_ASSIGN_OR_RETURN(sqlite3 * db, journal_sql::OpenDatabase(path, kSchemaVersion));
  std::unique_ptr<Journal> journal(new Journal(db, std::move(options)));
  UNL_RETURN_IF_ERROR(journal->PurgeFinishedPayloads().status());
  // A crash between a purge's commit and its checkpoint leaves the old page images in the WAL:
  // checkpoint and truncate it now. Not fatal (e.g. another connection is reading): the next
  // purge truncates it.
  journal_sql::CheckpointTruncate(db).IgnoreError();
  return journal;
}

absl::Status Journal::PurgeIfTerminal(const std::string& job_id, bool* purged) {
  if (options_.retain_payload) return absl::OkStatus();
  UNL_ASSIGN_OR_RETURN(JobRecord job, QueryJob(db_, "job_id", job_id));
  if (!IsTerminal(job.state) || job.payload_purged_unix_ms != 0) return absl::OkStatus();
  const std::string redacted =
      options_.redact_payload ? options_.redact_payload(job.request_blob) : std::string();
  UNL_RETURN_IF_ERROR(journal_sql::PurgePayload(db_, job_id, redacted));
  *purged = true;
  return absl::OkStatus();
}

absl::Status Journal::AfterPurge(bool purged) {
  if (!purged) return absl::OkStatus();
  return journal_sql::CheckpointTruncate(db_);
}

absl::StatusOr<int64_t> Journal::PurgeFinishedPayloads() {
  if (options_.retain_payload) return 0;
  absl::MutexLock lock(&mu_);
  int64_t count = 0;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    std::vector<std::string> ids;
    {
      Stmt st(db_,
              "SELECT job_id FROM jobs WHERE payload_purged_ms = 0 AND "
              "state NOT IN ('queued', 'running') ORDER BY seq");
      while (true) {
        UNL_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        ids.push_back(st.Text(0));
      }
    }
    for (const std::string& id : ids) {
      bool purged = false;
      UNL_RETURN_IF_ERROR(PurgeIfTerminal(id, &purged));
      count += purged ? 1 : 0;
    }
    return absl::OkStatus();
  });
  if (!txn.ok()) return txn;
  AfterPurge(count > 0).IgnoreError();  // the purge stands; the next one truncates the WAL
  return count;
}

absl::StatusOr<std::vector<JobRecord>> Journal::CompletedJobs(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kJobColumns,
                            " FROM jobs WHERE model_id = ?1 AND state = 'completed'"
                            " ORDER BY finished_ms, seq"));
  st.Bind(1, model_id);
  return QueryJobs(st);
}

// ---- Jobs
// -------------------------------------------------------------------------------------

absl::StatusOr<AcceptResult> Journal::AcceptRequest(const NewJob& job) {
  if (job.request_id.empty() || job.request_id.size() > 256) {
    return absl::InvalidArgumentError("journal: request_id must have 1..256 bytes");
  }
  if (job.request_fingerprint.empty()) {
    return absl::InvalidArgumentError("journal: request_fingerprint is required");
  }
  if (job.model_id.empty() || job.method.empty()) {
    return absl::InvalidArgumentError("journal: model_id and method are required");
  }
  absl::MutexLock lock(&mu_);
  AcceptResult result;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    absl::StatusOr<JobRecord> existing = QueryJob(db_, "request_id", job.request_id);
    if (existing.ok()) {
      if (existing->request_fingerprint != job.request_fingerprint) {
        return absl::AlreadyExistsError(
            absl::StrCat("request id '", job.request_id, "' was already used for a different ",
                         "request (job ", existing->job_id, "); choose a new request id"));
      }
      result.job = *std::move(existing);
      result.duplicate = true;
      return absl::OkStatus();
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
    UNL_RETURN_IF_ERROR(QueryModel(db_, job.model_id).status());

    std::string job_id = NewJobId();
    for (int tries = 0; QueryJob(db_, "job_id", job_id).ok(); ++tries) {  // 2^-64 per pair
      if (tries == 8) return absl::InternalError("journal: cannot draw a fresh job id");
      job_id = NewJobId();
    }
    Stmt st(db_,
            "INSERT INTO jobs (job_id, request_id, request_fingerprint, "
            "model_id, method, "
            "params_json, request_blob, forget_sha256, compliance_reference, "
            "state, accepted_ms, owner) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11)");
    st.Bind(1, job_id)
        .Bind(2, job.request_id)
        .Bind(3, job.request_fingerprint)
        .Bind(4, job.model_id)
        .Bind(5, job.method)
        .Bind(6, job.params_json)
        .BindBlob(7, job.request_blob)
        .Bind(8, job.forget_sha256)
        .Bind(9, job.compliance_reference)
        .Bind(10, NowMs())
        .Bind(11, job.owner);
    UNL_RETURN_IF_ERROR(st.Run());
    UNL_ASSIGN_OR_RETURN(result.job, QueryJob(db_, "job_id", job_id));
    result.duplicate = false;
    return absl::OkStatus();
  });
  if (!txn.ok()) return txn;
  return result;
}

absl::StatusOr<JobRecord> Journal::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return QueryJob(db_, "job_id", job_id);
}

absl::StatusOr<JobRecord> Journal::GetJobByRequest(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  return QueryJob(db_, "request_id", request_id);
}

absl::StatusOr<JobPage> Journal::ListJobs(const JobFilter& filter) {
  int64_t before_seq = 0;
  if (!filter.page_token.empty() &&
      (!absl::SimpleAtoi(filter.page_token, &before_seq) || before_seq <= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("journal: malformed page token '", filter.page_token, "'"));
  }
  const int page_size = std::min(std::max(filter.page_size, 1), 1000);
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kJobColumns,
                            ", seq FROM jobs WHERE (?1 = '' OR model_id = ?1)"
                            " AND (?2 = '' OR state = ?2) AND (?3 = 0 OR seq < ?3)"
                            " AND (?5 = 0 OR owner = ?6)"
                            " ORDER BY seq DESC LIMIT ?4"));
  st.Bind(1, filter.model_id)
      .Bind(2, filter.state ? JobStateName(*filter.state) : "")
      .Bind(3, before_seq)
      .Bind(4, page_size + 1)
      .Bind(5, filter.owner.has_value() ? 1 : 0)
      .Bind(6, filter.owner.value_or(""));
  JobPage page;
  int64_t last_seq = 0;
  while (true) {
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    if (static_cast<int>(page.jobs.size()) == page_size) {
      page.next_page_token = absl::StrCat(last_seq);
      break;
    }
    UNL_ASSIGN_OR_RETURN(JobRecord j, ReadJob(st));
    page.jobs.push_back(std::move(j));
    last_seq = st.Int(journal_sql::kJobColumnCount);
  }
  return page;
}

absl::StatusOr<std::vector<JobRecord>> Journal::UnfinishedJobs() {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kJobColumns,
                            " FROM jobs WHERE state IN ('queued', 'running') ORDER BY seq"));
  return QueryJobs(st);
}

absl::StatusOr<int64_t> Journal::CountQueued(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND (?1 = '' OR "
          "model_id = ?1)");
  st.Bind(1, model_id);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : 0;
}

absl::StatusOr<int64_t> Journal::RequeueInterrupted() {
  absl::MutexLock lock(&mu_);
  int64_t changed = 0;
  bool purged = false;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    std::vector<std::string> cancelled;
    {
      Stmt st(db_, "SELECT job_id FROM jobs WHERE state = 'running' AND cancel_requested != 0");
      while (true) {
        UNL_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        cancelled.push_back(st.Text(0));
      }
    }
    Stmt cancel(db_,
                "UPDATE jobs SET state = 'cancelled', finished_ms = ?1, error_message "
                "= "
                "'cancelled (interrupted by a restart)' WHERE state = 'running' AND "
                "cancel_requested != 0");
    cancel.Bind(1, NowMs());
    UNL_RETURN_IF_ERROR(cancel.Run());
    changed += sqlite3_changes(db_);
    Stmt requeue(db_, "UPDATE jobs SET state = 'queued' WHERE state = 'running'");
    UNL_RETURN_IF_ERROR(requeue.Run());
    changed += sqlite3_changes(db_);
    for (const std::string& id : cancelled) UNL_RETURN_IF_ERROR(PurgeIfTerminal(id, &purged));
    return absl::OkStatus();
  });
  if (!txn.ok()) return txn;
  AfterPurge(purged).IgnoreError();  // the purge stands; the next one truncates the WAL
  return changed;
}

absl::StatusOr<JobRecord> Journal::MarkRunning(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  JobRecord out;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    UNL_ASSIGN_OR_RETURN(JobRecord job, QueryJob(db_, "job_id", job_id));
    if (IsTerminal(job.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("journal: job ", job_id, " is ", JobStateName(job.state)));
    }
    Stmt st(db_,
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, "
            "started_ms = ?2, "
            "step = 0, total_steps = 0, loss = 0 WHERE job_id = ?1");
    st.Bind(1, job_id).Bind(2, NowMs());
    UNL_RETURN_IF_ERROR(st.Run());
    UNL_ASSIGN_OR_RETURN(out, QueryJob(db_, "job_id", job_id));
    return absl::OkStatus();
  });
  if (!txn.ok()) return txn;
  return out;
}

absl::Status Journal::UpdateProgress(const std::string& job_id, int64_t step, int64_t total_steps,
                                     double loss) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "UPDATE jobs SET step = ?2, total_steps = ?3, loss = ?4 "
          "WHERE job_id = ?1 AND state = 'running'");
  st.Bind(1, job_id).Bind(2, step).Bind(3, total_steps).Bind(4, loss);
  UNL_RETURN_IF_ERROR(st.Run());
  if (sqlite3_changes(db_) == 0) {
    UNL_ASSIGN_OR_RETURN(JobRecord job, QueryJob(db_, "job_id", job_id));
    return absl::FailedPreconditionError(
        absl::StrCat("journal: job ", job_id, " is ", JobStateName(job.state), ", not running"));
  }
  return absl::OkStatus();
}

absl::StatusOr<JobRecord> Journal::RequestCancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  JobRecord out;
  bool purged = false;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    UNL_ASSIGN_OR_RETURN(JobRecord job, QueryJob(db_, "job_id", job_id));
    if (IsTerminal(job.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("journal: job ", job_id, " is already ", JobStateName(job.state)));
    }
    if (job.state == JobState::kQueued) {
      Stmt st(db_,
              "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, "
              "finished_ms = ?2, "
              "error_message = 'cancelled before it started' WHERE job_id = ?1");
      st.Bind(1, job_id).Bind(2, NowMs());
      UNL_RETURN_IF_ERROR(st.Run());
      UNL_RETURN_IF_ERROR(PurgeIfTerminal(job_id, &purged));
    } else {
      Stmt st(db_, "UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?1");
      st.Bind(1, job_id);
      UNL_RETURN_IF_ERROR(st.Run());
    }
    UNL_ASSIGN_OR_RETURN(out, QueryJob(db_, "job_id", job_id));
    return absl::OkStatus();
  });
  if (!txn.ok()) return txn;
  AfterPurge(purged).IgnoreError();  // the purge stands; the next one truncates the WAL
  return out;
}

absl::Status Journal::FinishJob(const std::string& job_id, JobState state,
                                const std::string& error_message,
                                const std::string& verification_json) {
  if (state != JobState::kFailed && state != JobState::kFailedVerification &&
      state != JobState::kCancelled) {
    return absl::InvalidArgumentError(
        absl::StrCat("journal: FinishJob takes failed, failed_verification or "
                     "cancelled, not ",
                     JobStateName(state)));
  }
  absl::MutexLock lock(&mu_);
  bool purged = false;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    UNL_ASSIGN_OR_RETURN(JobRecord job, QueryJob(db_, "job_id", job_id));
    if (IsTerminal(job.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("journal: job ", job_id, " is already ", JobStateName(job.state)));
    }
    Stmt st(db_,
            "UPDATE jobs SET state = ?2, error_message = ?3, verification_json "
            "= ?4, "
            "finished_ms = ?5 WHERE job_id = ?1");
    st.Bind(1, job_id)
        .Bind(2, JobStateName(state))
        .Bind(3, error_message)
        .Bind(4, verification_json)
        .Bind(5, NowMs());
    UNL_RETURN_IF_ERROR(st.Run());
    return PurgeIfTerminal(job_id, &purged);
  });
  if (!txn.ok()) return txn;
  AfterPurge(purged).IgnoreError();  // the purge stands; the next one truncates the WAL
  return absl::OkStatus();
}

absl::Status Journal::CompleteJob(const std::string& job_id, const ModelVersionRecord& version,
                                  const CertificateRecord& certificate,
                                  const std::string& verification_json) {
  if (version.version < 1) {
    return absl::InvalidArgumentError(absl::StrCat("journal: bad version ", version.version));
  }
  return Complete(job_id, &version, version.version, certificate, verification_json);
}

absl::Status Journal::CompleteJobUnchanged(const std::string& job_id, int64_t current_version,
                                           const CertificateRecord& certificate,
                                           const std::string& verification_json) {
  return Complete(job_id, nullptr, current_version, certificate, verification_json);
}

absl::Status Journal::Complete(const std::string& job_id, const ModelVersionRecord* version,
                               int64_t published_version, const CertificateRecord& certificate,
                               const std::string& verification_json) {
  if (certificate.certificate_id.empty()) {
    return absl::InvalidArgumentError("journal: certificate_id is required");
  }
  if (certificate.sha256 != core::Sha256Hex(certificate.json)) {
    return absl::InvalidArgumentError("journal: certificate sha256 does not match its json");
  }
  absl::MutexLock lock(&mu_);
  bool purged = false;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    UNL_ASSIGN_OR_RETURN(JobRecord job, QueryJob(db_, "job_id", job_id));
    if (job.state != JobState::kRunning) {
      return absl::FailedPreconditionError(absl::StrCat("journal: cannot complete job ", job_id,
                                                        ": it is ", JobStateName(job.state)));
    }
    UNL_ASSIGN_OR_RETURN(std::string latest, QueryLatestCertificateSha(db_, job.model_id));
    if (certificate.previous_sha256 != latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal: certificate chain mismatch on model ", job.model_id, ": previous_sha256 '",
          certificate.previous_sha256, "' but the latest certificate is '", latest, "'"));
    }
    if (version != nullptr) {
      if (!version->model_id.empty() && version->model_id != job.model_id) {
        return absl::FailedPreconditionError(absl::StrCat(
            "journal: job ", job_id, " is on model ", job.model_id, ", not ", version->model_id));
      }
      UNL_ASSIGN_OR_RETURN(bool exists, VersionExists(db_, job.model_id, version->version));
      if (exists) {
        return absl::AlreadyExistsError(absl::StrCat("journal: model ", job.model_id,
                                                     " already has version ", version->version));
      }
      ModelVersionRecord v = *version;
      v.model_id = job.model_id;
      v.job_id = job_id;
      UNL_RETURN_IF_ERROR(InsertVersion(db_, v));
      Stmt st(db_, "UPDATE models SET current_version = ?2 WHERE model_id = ?1");
      st.Bind(1, job.model_id).Bind(2, v.version);
      UNL_RETURN_IF_ERROR(st.Run());
    } else {
      Stmt cur(db_, "SELECT current_version FROM models WHERE model_id = ?1");
      cur.Bind(1, job.model_id);
      UNL_ASSIGN_OR_RETURN(bool row, cur.Step());
      if (!row || cur.Int(0) != published_version) {
        return absl::FailedPreconditionError(
            absl::StrCat("journal: model ", job.model_id, " is no longer at version ",
                         published_version, "; resubmit the request"));
      }
    }
    const int64_t now = NowMs();
    {
      Stmt st(db_,
              "UPDATE jobs SET state = 'completed', error_message = '', "
              "published_version = ?2, "
              "verification_json = ?3, finished_ms = ?4 WHERE job_id = ?1");
      st.Bind(1, job_id).Bind(2, published_version).Bind(3, verification_json).Bind(4, now);
      UNL_RETURN_IF_ERROR(st.Run());
    }
    Stmt st(db_, absl::StrCat("INSERT INTO certificates (", kCertificateColumns,
                              ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"));
    st.Bind(1, certificate.certificate_id)
        .Bind(2, job_id)
        .Bind(3, job.model_id)
        .Bind(4, certificate.json)
        .Bind(5, certificate.sha256)
        .Bind(6, certificate.previous_sha256)
        .Bind(7, now)
        .Bind(8, kCertificateKindErasure)
        .Bind(9, certificate.format)
        .Bind(10, certificate.signature_hex)
        .Bind(11, certificate.key_id);
    UNL_RETURN_IF_ERROR(st.Run());
    return PurgeIfTerminal(job_id, &purged);
  });
  if (!txn.ok()) return txn;
  AfterPurge(purged).IgnoreError();  // the purge stands; the next one truncates the WAL
  return absl::OkStatus();
}

// ---- Events
// -----------------------------------------------------------------------------------

absl::StatusOr<JobEvent> Journal::AppendEvent(const std::string& job_id, const std::string& kind,
                                              const std::string& payload_json) {
  absl::MutexLock lock(&mu_);
  JobEvent ev;
  absl::Status txn = InTransaction(db_, [&]() -> absl::Status {
    UNL_RETURN_IF_ERROR(QueryJob(db_, "job_id", job_id).status());
    Stmt next(db_, "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?1");
    next.Bind(1, job_id);
    UNL_RETURN_IF_ERROR(next.Step().status());
    ev.job_id = job_id;
    ev.seq = next.Int(0);
    ev.kind = kind;
    ev.payload_json = payload_json;
    ev.unix_ms = NowMs();
    Stmt st(db_,
            "INSERT INTO events (job_id, seq, kind, payload_json, unix_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5)");
    st.Bind(1, job_id).Bind(2, ev.seq).Bind(3, kind).Bind(4, payload_json).Bind(5, ev.unix_ms);
    return st.Run();
  });
  if (!txn.ok()) return txn;
  return ev;
}

absl::StatusOr<std::vector<JobEvent>> Journal::ListEvents(const std::string& job_id,
                                                          int64_t after_seq, int limit) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT seq, kind, payload_json, unix_ms FROM events WHERE job_id = "
          "?1 AND seq > ?2 "
          "ORDER BY seq LIMIT ?3");
  st.Bind(1, job_id).Bind(2, after_seq).Bind(3, limit > 0 ? limit : -1);
  std::vector<JobEvent> out;
  while (true) {
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(JobEvent{job_id, st.Int(0), st.Text(1), st.Text(2), st.Int(3)});
  }
  return out;
}

// ---- Models and versions
// ----------------------------------------------------------------------

absl::Status Journal::RegisterModel(const ModelRecord& model) {
  if (model.model_id.empty()) return absl::InvalidArgumentError("journal: model_id is required");
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    absl::StatusOr<ModelRecord> existing = QueryModel(db_, model.model_id);
    if (existing.ok()) {
      return absl::AlreadyExistsError(
          absl::StrCat("journal: model ", model.model_id, " is already registered"));
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
    Stmt st(db_, absl::StrCat("INSERT INTO models (", kModelColumns,
                              ") VALUES (?1, ?2, ?3, ?4, 0, ?5)"));
    st.Bind(1, model.model_id)
        .Bind(2, model.family)
        .Bind(3, model.architecture)
        .Bind(4, model.source_dir)
        .Bind(5, NowMs());
    return st.Run();
  });
}

absl::StatusOr<ModelRecord> Journal::GetModel(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  return QueryModel(db_, model_id);
}

absl::StatusOr<std::vector<ModelRecord>> Journal::ListModels() {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kModelColumns, " FROM models ORDER BY model_id"));
  std::vector<ModelRecord> out;
  while (true) {
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadModel(st));
  }
  return out;
}

absl::Status Journal::AddVersion(const ModelVersionRecord& version, bool make_current) {
  UNL_RETURN_IF_ERROR(CheckVersion(version));
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    UNL_RETURN_IF_ERROR(QueryModel(db_, version.model_id).status());
    UNL_ASSIGN_OR_RETURN(bool exists, VersionExists(db_, version.model_id, version.version));
    if (exists) {
      return absl::AlreadyExistsError(absl::StrCat("journal: model ", version.model_id,
                                                   " already has version ", version.version));
    }
    UNL_RETURN_IF_ERROR(InsertVersion(db_, version));
    if (!make_current) return absl::OkStatus();
    Stmt st(db_, "UPDATE models SET current_version = ?2 WHERE model_id = ?1");
    st.Bind(1, version.model_id).Bind(2, version.version);
    return st.Run();
  });
}

absl::StatusOr<std::vector<ModelVersionRecord>> Journal::ListVersions(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  UNL_RETURN_IF_ERROR(QueryModel(db_, model_id).status());
  Stmt st(db_, absl::StrCat("SELECT ", kVersionColumns,
                            " FROM model_versions WHERE model_id = ?1 ORDER BY version"));
  st.Bind(1, model_id);
  std::vector<ModelVersionRecord> out;
  while (true) {
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadVersion(st));
  }
  return out;
}

absl::StatusOr<ModelVersionRecord> Journal::GetVersion(const std::string& model_id,
                                                       int64_t version) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kVersionColumns,
                            " FROM model_versions WHERE model_id = ?1 AND version = ?2"));
  st.Bind(1, model_id).Bind(2, version);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) {
    return absl::NotFoundError(
        absl::StrCat("journal: model ", model_id, " has no version ", version));
  }
  return ReadVersion(st);
}

absl::StatusOr<int64_t> Journal::NextVersion(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  UNL_RETURN_IF_ERROR(QueryModel(db_, model_id).status());
  Stmt st(db_,
          "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE "
          "model_id = ?1");
  st.Bind(1, model_id);
  UNL_RETURN_IF_ERROR(st.Step().status());
  return st.Int(0);
}

absl::Status Journal::SetCurrentVersion(const std::string& model_id, int64_t version) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    UNL_RETURN_IF_ERROR(QueryModel(db_, model_id).status());
    UNL_ASSIGN_OR_RETURN(bool exists, VersionExists(db_, model_id, version));
    if (!exists) {
      return absl::NotFoundError(
          absl::StrCat("journal: model ", model_id, " has no version ", version));
    }
    Stmt st(db_, "UPDATE models SET current_version = ?2 WHERE model_id = ?1");
    st.Bind(1, model_id).Bind(2, version);
    return st.Run();
  });
}

absl::Status Journal::MarkVersionPurged(const std::string& model_id, int64_t version,
                                        const std::string& by_job_id) {
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    UNL_ASSIGN_OR_RETURN(ModelRecord model, QueryModel(db_, model_id));
    UNL_ASSIGN_OR_RETURN(bool exists, VersionExists(db_, model_id, version));
    if (!exists) {
      return absl::NotFoundError(
          absl::StrCat("journal: model ", model_id, " has no version ", version));
    }
    if (model.current_version == version) {
      return absl::FailedPreconditionError(absl::StrCat("journal: version ", version, " of model ",
                                                        model_id, " is serving; not purged"));
    }
    Stmt st(db_,
            "UPDATE model_versions SET purged_ms = ?3, purged_by_job = ?4 "
            "WHERE model_id = ?1 AND version = ?2 AND purged_ms = 0");
    st.Bind(1, model_id).Bind(2, version).Bind(3, NowMs()).Bind(4, by_job_id);
    return st.Run();
  });
}

absl::Status Journal::RecordForcedRollback(const ModelVersionRecord& version,
                                           const CertificateRecord& certificate) {
  UNL_RETURN_IF_ERROR(CheckVersion(version));
  if (certificate.certificate_id.empty()) {
    return absl::InvalidArgumentError("journal: certificate_id is required");
  }
  if (certificate.sha256 != core::Sha256Hex(certificate.json)) {
    return absl::InvalidArgumentError("journal: certificate sha256 does not match its json");
  }
  absl::MutexLock lock(&mu_);
  return InTransaction(db_, [&]() -> absl::Status {
    UNL_RETURN_IF_ERROR(QueryModel(db_, version.model_id).status());
    UNL_ASSIGN_OR_RETURN(std::string latest, QueryLatestCertificateSha(db_, version.model_id));
    if (certificate.previous_sha256 != latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "journal: certificate chain mismatch on model ", version.model_id, ": previous_sha256 '",
          certificate.previous_sha256, "' but the latest certificate is '", latest, "'"));
    }
    UNL_ASSIGN_OR_RETURN(bool exists, VersionExists(db_, version.model_id, version.version));
    if (exists) {
      return absl::AlreadyExistsError(absl::StrCat("journal: model ", version.model_id,
                                                   " already has version ", version.version));
    }
    UNL_RETURN_IF_ERROR(InsertVersion(db_, version));
    {
      Stmt st(db_, "UPDATE models SET current_version = ?2 WHERE model_id = ?1");
      st.Bind(1, version.model_id).Bind(2, version.version);
      UNL_RETURN_IF_ERROR(st.Run());
    }
    Stmt st(db_, absl::StrCat("INSERT INTO certificates (", kCertificateColumns,
                              ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"));
    st.Bind(1, certificate.certificate_id)
        .BindNull(2)
        .Bind(3, version.model_id)
        .Bind(4, certificate.json)
        .Bind(5, certificate.sha256)
        .Bind(6, certificate.previous_sha256)
        .Bind(7, NowMs())
        .Bind(8, kCertificateKindForcedRollback)
        .Bind(9, certificate.format)
        .Bind(10, certificate.signature_hex)
        .Bind(11, certificate.key_id);
    return st.Run();
  });
}

// ---- Certificates
// -----------------------------------------------------------------------------

absl::StatusOr<std::string> Journal::LatestCertificateSha(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  return QueryLatestCertificateSha(db_, model_id);
}

absl::StatusOr<CertificateRecord> Journal::GetCertificate(const std::string& certificate_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kCertificateColumns,
                            " FROM certificates WHERE certificate_id = ?1"));
  st.Bind(1, certificate_id);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("journal: no certificate ", certificate_id));
  return ReadCertificate(st);
}

absl::StatusOr<CertificateRecord> Journal::GetCertificateByJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          absl::StrCat("SELECT ", kCertificateColumns, " FROM certificates WHERE job_id = ?1"));
  st.Bind(1, job_id);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("journal: no certificate for job ", job_id));
  return ReadCertificate(st);
}

absl::StatusOr<std::vector<CertificateRecord>> Journal::ListCertificates(
    const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, absl::StrCat("SELECT ", kCertificateColumns,
                            " FROM certificates WHERE model_id = ?1 ORDER BY seq"));
  st.Bind(1, model_id);
  std::vector<CertificateRecord> out;
  while (true) {
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadCertificate(st));
  }
  return out;
}

}  // namespace unlearning::server
