// The journal's storage layer, internal to server/infra/journal*.cc: opening the SQLite database
// with its schema (and future migrations), a prepared-statement wrapper, and the codecs between
// table rows and journal records. Not thread-safe on its own: the Journal serialises access.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include <sqlite3.h>

#include "core/common/status_macros.h"
#include "server/infra/journal.h"

namespace unlearning::server::journal_sql {

// Column lists, in the order the Read* codecs below expect.
inline constexpr const char* kJobColumns =
    "job_id, request_id, request_fingerprint, model_id, method, params_json, "
    "request_blob, "
    "forget_sha256, compliance_reference, state, error_message, attempts, "
    "step, total_steps, "
    "loss, accepted_ms, started_ms, finished_ms, published_version, "
    "verification_json, "
    "cancel_requested, payload_purged_ms, owner";
// Number of columns in kJobColumns (a query may select more after them).
inline constexpr int kJobColumnCount = 23;
inline constexpr const char* kModelColumns =
    "model_id, family, architecture, source_dir, current_version, created_ms";
inline constexpr const char* kVersionColumns =
    "model_id, version, parent_version, job_id, artifact_kind, dir, "
    "weights_sha256, created_ms, "
    "figures_json, purged_ms, purged_by_job";
inline constexpr const char* kCertificateColumns =
    "certificate_id, job_id, model_id, json, sha256, previous_sha256, "
    "created_ms, kind, format, signature, key_id";

// Now as Unix milliseconds.
int64_t NowMs();
// "job-" + 16 random hex digits.
std::string NewJobId();
absl::Status SqlError(sqlite3* db, int rc, std::string_view what);

// RAII prepared statement with 1-based binds and 0-based column reads.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
    if (rc_ != SQLITE_OK) status_ = SqlError(db, rc_, absl::StrCat("prepare `", sql, "`"));
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, const std::string& v) {
    return Check(
        sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string(v)); }
  Stmt& BindNull(int i) { return Check(sqlite3_bind_null(stmt_, i)); }
  Stmt& BindBlob(int i, const std::string& v) {
    return Check(
        sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& Bind(int i, int64_t v) { return Check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& Bind(int i, int v) { return Check(sqlite3_bind_int64(stmt_, i, v)); }
  Stmt& Bind(int i, double v) { return Check(sqlite3_bind_double(stmt_, i, v)); }

  // true: a row is available; false: done.
  absl::StatusOr<bool> Step() {
    UNL_RETURN_IF_ERROR(status_);
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(db_, rc, "step");
  }
  // Runs a statement that returns no rows.
  absl::Status Run() {
    UNL_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }

 private:
  Stmt& Check(int rc) {
    if (rc != SQLITE_OK && status_.ok()) status_ = SqlError(db_, rc, "bind");
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
  absl::Status status_;
};

// Runs SQL that returns no rows.
absl::Status Exec(sqlite3* db, const std::string& sql);
// Runs `fn` inside BEGIN IMMEDIATE ... COMMIT; rolls back if it fails.
absl::Status InTransaction(sqlite3* db, const std::function<absl::Status()>& fn);

// Opens (creating it if needed) the database at `path` in WAL mode with synchronous=FULL,
// secure_delete (freed pages and cells are overwritten with zeros) and foreign keys on, and brings
// its schema to `schema_version` (1: the first schema; 2: payload retention, purged versions,
// certificate record kinds), migrating an older file in place. kFailedPrecondition if the file's
// schema is newer; kInternal for SQLite errors. The caller owns the handle (sqlite3_close_v2).
absl::StatusOr<sqlite3*> OpenDatabase(const std::string& path, int schema_version);

// ---- rows <-> records (a row read with the matching k*Columns list)
absl::StatusOr<JobRecord> ReadJob(const Stmt& st);
ModelRecord ReadModel(const Stmt& st);
ModelVersionRecord ReadVersion(const Stmt& st);
CertificateRecord ReadCertificate(const Stmt& st);

// Single job by a unique column (job_id or request_id); kNotFound if absent.
absl::StatusOr<JobRecord> QueryJob(sqlite3* db, const char* column, const std::string& value);
// Every row of `st` (selecting kJobColumns) as a job.
absl::StatusOr<std::vector<JobRecord>> QueryJobs(Stmt& st);
// kNotFound for an unknown model.
absl::StatusOr<ModelRecord> QueryModel(sqlite3* db, const std::string& model_id);
absl::StatusOr<bool> VersionExists(sqlite3* db, const std::string& model_id, int64_t version);
absl::Status InsertVersion(sqlite3* db, const ModelVersionRecord& v);
// Overwrites the payload of terminal job `job_id` with `redacted` and stamps payload_purged_ms
// (no-op for a job that is not terminal or already purged). Inside a transaction.
absl::Status PurgePayload(sqlite3* db, const std::string& job_id, const std::string& redacted);
// Copies every WAL frame into the database file and truncates the WAL to zero bytes, so that the
// old page images (e.g. a purged payload) are gone from the -wal file too. Outside a transaction.
absl::Status CheckpointTruncate(sqlite3* db);
// "" if the model has no certificate yet.
absl::StatusOr<std::string> QueryLatestCertificateSha(sqlite3* db, const std::string& model_id);

}  // namespace unlearning::server::journal_sql
