#include "server/infra/journal_sql.h"

#include <memory>
#include <random>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace unlearning::server::journal_sql {
namespace {

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE models (
  model_id        TEXT PRIMARY KEY,
  family          TEXT NOT NULL,
  architecture    TEXT NOT NULL,
  source_dir      TEXT NOT NULL,
  current_version INTEGER NOT NULL DEFAULT 0,
  created_ms      INTEGER NOT NULL
);
CREATE TABLE jobs (
  seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id               TEXT NOT NULL UNIQUE,
  request_id           TEXT NOT NULL UNIQUE,
  request_fingerprint  TEXT NOT NULL,
  model_id             TEXT NOT NULL REFERENCES models(model_id),
  method               TEXT NOT NULL,
  params_json          TEXT NOT NULL,
  request_blob         BLOB NOT NULL,
  forget_sha256        TEXT NOT NULL,
  compliance_reference TEXT NOT NULL,
  state                TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed',
                                                      'failed_verification', 'cancelled')),
  error_message        TEXT NOT NULL DEFAULT '',
  attempts             INTEGER NOT NULL DEFAULT 0,
  step                 INTEGER NOT NULL DEFAULT 0,
  total_steps          INTEGER NOT NULL DEFAULT 0,
  loss                 REAL NOT NULL DEFAULT 0,
  accepted_ms          INTEGER NOT NULL,
  started_ms           INTEGER NOT NULL DEFAULT 0,
  finished_ms          INTEGER NOT NULL DEFAULT 0,
  published_version    INTEGER NOT NULL DEFAULT 0,
  verification_json    TEXT NOT NULL DEFAULT '',
  cancel_requested     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_model ON jobs (model_id, seq);
CREATE TABLE events (
  job_id       TEXT NOT NULL REFERENCES jobs(job_id),
  seq          INTEGER NOT NULL,
  kind         TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  unix_ms      INTEGER NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE model_versions (
  model_id       TEXT NOT NULL REFERENCES models(model_id),
  version        INTEGER NOT NULL CHECK (version >= 1),
  parent_version INTEGER NOT NULL,
  job_id         TEXT NOT NULL,
  artifact_kind  TEXT NOT NULL,
  dir            TEXT NOT NULL,
  weights_sha256 TEXT NOT NULL,
  created_ms     INTEGER NOT NULL,
  figures_json   TEXT NOT NULL,
  PRIMARY KEY (model_id, version)
);
CREATE TABLE certificates (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  certificate_id  TEXT NOT NULL UNIQUE,
  job_id          TEXT NOT NULL UNIQUE REFERENCES jobs(job_id),
  model_id        TEXT NOT NULL REFERENCES models(model_id),
  json            TEXT NOT NULL,
  sha256          TEXT NOT NULL,
  previous_sha256 TEXT NOT NULL,
  created_ms      INTEGER NOT NULL
);
CREATE INDEX certificates_by_model ON certificates (model_id, seq);
)sql";

// v1 -> v2 (retention): when a job's payload was purged, when a version's bytes were purged and by
// which erasure, and certificate record kinds ("erasure", "forced_rollback"). A forced rollback's
// record has no job, so certificates.job_id becomes nullable: SQLite cannot drop a NOT NULL with
// ALTER TABLE, so the table is rebuilt (same rows, same seq, same chain).
constexpr const char* kMigrateV2 = R"sql(
ALTER TABLE jobs ADD COLUMN payload_purged_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_versions ADD COLUMN purged_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_versions ADD COLUMN purged_by_job TEXT NOT NULL DEFAULT '';
CREATE TABLE certificates_v2 (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  certificate_id  TEXT NOT NULL UNIQUE,
  job_id          TEXT UNIQUE REFERENCES jobs(job_id),
  model_id        TEXT NOT NULL REFERENCES models(model_id),
  json            TEXT NOT NULL,
  sha256          TEXT NOT NULL,
  previous_sha256 TEXT NOT NULL,
  created_ms      INTEGER NOT NULL,
  kind            TEXT NOT NULL DEFAULT 'erasure' CHECK (kind IN ('erasure', 'forced_rollback')),
  CHECK ((kind = 'erasure') = (job_id IS NOT NULL))
);
INSERT INTO certificates_v2 (seq, certificate_id, job_id, model_id, json, sha256, previous_sha256,
                             created_ms, kind)
  SELECT seq, certificate_id, job_id, model_id, json, sha256, previous_sha256, created_ms,
         'erasure' FROM certificates ORDER BY seq;
DROP TABLE certificates;
ALTER TABLE certificates_v2 RENAME TO certificates;
CREATE INDEX certificates_by_model ON certificates (model_id, seq);
)sql";

// v2 -> v3 (signed certificates): how each record is sealed. Rows written before keep format ''
// (legacy: sha256 over the protobuf JSON printer's text, unsigned); see docs/certificates.md.
constexpr const char* kMigrateV3 = R"sql(
ALTER TABLE certificates ADD COLUMN format TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN signature TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
)sql";

// v3 -> v4 (authentication): who submitted each job (the token name; '' before, or without
// authentication), so that an erase-role caller sees and cancels only its own jobs.
constexpr const char* kMigrateV4 = R"sql(
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
)sql";

}  // namespace

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// "job-" + 16 random hex digits. Drawn from std::random_device on every call (no process-wide
// generator state, which a fork() would duplicate into two processes producing equal ids).
std::string NewJobId() {
  std::random_device rd;
  const uint64_t x = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  static const char kHex[] = "0123456789abcdef";
  std::string id = "job-";
  for (int i = 15; i >= 0; --i) id.push_back(kHex[(x >> (4 * i)) & 0xf]);
  return id;
}

absl::Status SqlError(sqlite3* db, int rc, std::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::InternalError(
      absl::StrCat("journal: ", std::string(what), ": ", msg, " (", rc, ")"));
}

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    absl::Status s = absl::InternalError(
        absl::StrCat("journal: exec `", sql.substr(0, 60), "`: ", err ? err : "", " (", rc, ")"));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::Status InTransaction(sqlite3* db, const std::function<absl::Status()>& fn) {
  UNL_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  absl::Status s = fn();
  if (s.ok()) s = Exec(db, "COMMIT");
  if (!s.ok()) (void)Exec(db, "ROLLBACK");
  return s;
}

absl::StatusOr<sqlite3*> OpenDatabase(const std::string& path, int schema_version) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqlError(db, rc, absl::StrCat("open ", path));
    sqlite3_close_v2(db);
    return s;
  }
  // Closes the handle on every error path below.
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(db, &sqlite3_close_v2);
  sqlite3_busy_timeout(db, 5000);
  {
    Stmt st(db, "PRAGMA journal_mode = WAL");
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row || st.Text(0) != "wal") {
      return absl::InternalError(absl::StrCat("journal: cannot enable WAL on ", path));
    }
  }
  UNL_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous = FULL"));
  UNL_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys = ON"));
  // Deleted or overwritten content (a purged payload) is overwritten with zeros in its page, and
  // freed pages are zeroed, instead of lingering in the file's free space.
  UNL_RETURN_IF_ERROR(Exec(db, "PRAGMA secure_delete = ON"));

  int64_t user_version = 0;
  {
    Stmt st(db, "PRAGMA user_version");
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) user_version = st.Int(0);
  }
  if (user_version > schema_version) {
    return absl::FailedPreconditionError(absl::StrCat("journal: ", path, " has schema version ",
                                                      user_version, ", newer than this binary's ",
                                                      schema_version));
  }
  if (user_version < 1) {
    absl::Status txn = InTransaction(db, [&]() -> absl::Status {
      UNL_RETURN_IF_ERROR(Exec(db, kSchemaV1));
      return Exec(db, "PRAGMA user_version = 1");
    });
    if (!txn.ok()) return txn;
  }
  if (user_version < 2 && schema_version >= 2) {
    absl::Status txn = InTransaction(db, [&]() -> absl::Status {
      UNL_RETURN_IF_ERROR(Exec(db, kMigrateV2));
      return Exec(db, "PRAGMA user_version = 2");
    });
    if (!txn.ok()) return txn;
  }
  if (user_version < 3 && schema_version >= 3) {
    absl::Status txn = InTransaction(db, [&]() -> absl::Status {
      UNL_RETURN_IF_ERROR(Exec(db, kMigrateV3));
      return Exec(db, "PRAGMA user_version = 3");
    });
    if (!txn.ok()) return txn;
  }
  if (user_version < 4 && schema_version >= 4) {
    absl::Status txn = InTransaction(db, [&]() -> absl::Status {
      UNL_RETURN_IF_ERROR(Exec(db, kMigrateV4));
      return Exec(db, "PRAGMA user_version = 4");
    });
    if (!txn.ok()) return txn;
  }
  // Future migrations: if (user_version < 5) { ...; PRAGMA user_version = 5; }
  return guard.release();
}

absl::StatusOr<JobRecord> ReadJob(const Stmt& st) {
  JobRecord j;
  j.job_id = st.Text(0);
  j.request_id = st.Text(1);
  j.request_fingerprint = st.Text(2);
  j.model_id = st.Text(3);
  j.method = st.Text(4);
  j.params_json = st.Text(5);
  j.request_blob = st.Text(6);
  j.forget_sha256 = st.Text(7);
  j.compliance_reference = st.Text(8);
  UNL_ASSIGN_OR_RETURN(j.state, ParseJobState(st.Text(9)));
  j.error_message = st.Text(10);
  j.attempts = static_cast<int>(st.Int(11));
  j.step = st.Int(12);
  j.total_steps = st.Int(13);
  j.loss = st.Real(14);
  j.accepted_unix_ms = st.Int(15);
  j.started_unix_ms = st.Int(16);
  j.finished_unix_ms = st.Int(17);
  j.published_version = st.Int(18);
  j.verification_json = st.Text(19);
  j.cancel_requested = st.Int(20) != 0;
  j.payload_purged_unix_ms = st.Int(21);
  j.owner = st.Text(22);
  return j;
}

ModelRecord ReadModel(const Stmt& st) {
  ModelRecord m;
  m.model_id = st.Text(0);
  m.family = st.Text(1);
  m.architecture = st.Text(2);
  m.source_dir = st.Text(3);
  m.current_version = st.Int(4);
  m.created_unix_ms = st.Int(5);
  return m;
}

ModelVersionRecord ReadVersion(const Stmt& st) {
  ModelVersionRecord v;
  v.model_id = st.Text(0);
  v.version = st.Int(1);
  v.parent_version = st.Int(2);
  v.job_id = st.Text(3);
  v.artifact_kind = st.Text(4);
  v.dir = st.Text(5);
  v.manifest_sha256 = st.Text(6);
  v.created_unix_ms = st.Int(7);
  v.figures_json = st.Text(8);
  v.purged_unix_ms = st.Int(9);
  v.purged_by_job = st.Text(10);
  return v;
}

CertificateRecord ReadCertificate(const Stmt& st) {
  CertificateRecord c;
  c.certificate_id = st.Text(0);
  c.job_id = st.Text(1);
  c.model_id = st.Text(2);
  c.json = st.Text(3);
  c.sha256 = st.Text(4);
  c.previous_sha256 = st.Text(5);
  c.created_unix_ms = st.Int(6);
  c.kind = st.Text(7);
  c.format = st.Text(8);
  c.signature_hex = st.Text(9);
  c.key_id = st.Text(10);
  return c;
}

absl::StatusOr<JobRecord> QueryJob(sqlite3* db, const char* column, const std::string& value) {
  Stmt st(db, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE ", column, " = ?1"));
  st.Bind(1, value);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("journal: no job with ", column, " ", value));
  return ReadJob(st);
}

absl::StatusOr<std::vector<JobRecord>> QueryJobs(Stmt& st) {
  std::vector<JobRecord> out;
  while (true) {
    UNL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    UNL_ASSIGN_OR_RETURN(JobRecord j, ReadJob(st));
    out.push_back(std::move(j));
  }
  return out;
}

absl::StatusOr<ModelRecord> QueryModel(sqlite3* db, const std::string& model_id) {
  Stmt st(db, absl::StrCat("SELECT ", kModelColumns, " FROM models WHERE model_id = ?1"));
  st.Bind(1, model_id);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("journal: unknown model ", model_id));
  return ReadModel(st);
}

absl::StatusOr<bool> VersionExists(sqlite3* db, const std::string& model_id, int64_t version) {
  Stmt st(db, "SELECT 1 FROM model_versions WHERE model_id = ?1 AND version = ?2");
  st.Bind(1, model_id).Bind(2, version);
  return st.Step();
}

absl::Status InsertVersion(sqlite3* db, const ModelVersionRecord& v) {
  Stmt st(db, absl::StrCat("INSERT INTO model_versions (", kVersionColumns,
                           ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, '')"));
  st.Bind(1, v.model_id)
      .Bind(2, v.version)
      .Bind(3, v.parent_version)
      .Bind(4, v.job_id)
      .Bind(5, v.artifact_kind)
      .Bind(6, v.dir)
      .Bind(7, v.manifest_sha256)
      .Bind(8, NowMs())
      .Bind(9, v.figures_json);
  return st.Run();
}

absl::Status PurgePayload(sqlite3* db, const std::string& job_id, const std::string& redacted) {
  Stmt st(db,
          "UPDATE jobs SET request_blob = ?2, payload_purged_ms = ?3 WHERE job_id = ?1 AND "
          "payload_purged_ms = 0 AND state NOT IN ('queued', 'running')");
  st.Bind(1, job_id).BindBlob(2, redacted).Bind(3, NowMs());
  return st.Run();
}

absl::Status CheckpointTruncate(sqlite3* db) {
  int wal_frames = 0;
  int checkpointed = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &wal_frames,
                                           &checkpointed);
  if (rc != SQLITE_OK) return SqlError(db, rc, "wal_checkpoint(TRUNCATE)");
  return absl::OkStatus();
}

absl::StatusOr<std::string> QueryLatestCertificateSha(sqlite3* db, const std::string& model_id) {
  Stmt st(db,
          "SELECT sha256 FROM certificates WHERE model_id = ?1 ORDER BY seq "
          "DESC LIMIT 1");
  st.Bind(1, model_id);
  UNL_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Text(0) : std::string();
}

}  // namespace unlearning::server::journal_sql
