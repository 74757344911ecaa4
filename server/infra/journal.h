// Durable journal of the unlearning server: erasure requests/jobs, their
// progress events, erasure certificates (hash-chained per model), registered
// models and their published versions.
//
// Storage: one SQLite database file (WAL, synchronous=FULL, foreign keys,
// busy_timeout), schema versioned with PRAGMA user_version. Every mutating call
// is one transaction that is durable (fsync'd) when the call returns OK: the
// server may acknowledge a request as ACCEPTED as soon as AcceptRequest()
// returns. After a crash (even SIGKILL mid-way) reopening the file returns
// every accepted-but-unfinished job from UnfinishedJobs().
//
// Thread-safety: a Journal is thread-safe. All calls share one connection
// guarded by a mutex, so calls are serialised; each is a few hundred
// microseconds plus one fsync for writes. Keep UpdateProgress() rate-limited on
// the caller side (e.g. at most a few per second per job).
//
// No gRPC/protobuf here: request_blob is opaque bytes (the server stores the
// serialized proto).
//
// Retention (JournalOptions): a request's payload (the forget set: the very data to erase) is kept
// only while its job may still run. In the transaction that makes a job terminal, request_blob is
// replaced by JournalOptions::redact_payload(request_blob) (default: empty) and
// payload_purged_unix_ms is stamped; what stays is the request's fingerprint (SHA-256), the forget
// set's SHA-256, whatever counts the redacted blob keeps, and the certificate. PRAGMA
// secure_delete is on (freed content is zeroed in the file) and the WAL is checkpointed and
// truncated after a purge, so the bytes are gone from journal.sqlite and journal.sqlite-wal alike.
// Open() purges every terminal job still holding its payload (a journal of an older version, or
// one written with retain_payload). Queued and running jobs are never purged: a restart re-runs
// them from their payload.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct sqlite3;

namespace unlearning::server {

// Job state machine:
//   queued -> running -> completed | failed | failed_verification | cancelled
//   queued -> cancelled (RequestCancel on a queued job)
//   running -> queued   (RequeueInterrupted() at startup, after a crash)
enum class JobState { kQueued, kRunning, kCompleted, kFailed, kFailedVerification, kCancelled };

// "queued", "running", "completed", "failed", "failed_verification",
// "cancelled". These strings are what the journal stores and what the metrics
// use as `outcome` label values.
const char* JobStateName(JobState state);
// Inverse of JobStateName; kInvalidArgument for an unknown name.
absl::StatusOr<JobState> ParseJobState(std::string_view name);
// True for completed, failed, failed_verification, cancelled.
bool IsTerminal(JobState state);

// What the caller supplies when a request arrives.
struct NewJob {
  std::string request_id;            // client-chosen idempotency key; required, <= 256 bytes
  std::string request_fingerprint;   // sha256 (hex) of the canonical request; required
  std::string model_id;              // required; must be a registered model
  std::string method;                // required, e.g. "npo"
  std::string params_json;           // effective method parameters (JSON text), may be empty
  std::string request_blob;          // serialized request bytes (opaque to the journal)
  std::string forget_sha256;         // sha256 of the forget set, may be empty
  std::string compliance_reference;  // e.g. ticket id; never used as a metric label
  std::string owner;  // the submitter's identity (token name; "" without authentication)
};

struct JobRecord {
  std::string job_id;  // "job-<16 hex>"
  std::string request_id;
  std::string request_fingerprint;
  std::string model_id;
  std::string method;
  std::string params_json;
  std::string request_blob;
  std::string forget_sha256;
  std::string compliance_reference;
  JobState state = JobState::kQueued;
  std::string error_message;
  int attempts = 0;  // number of MarkRunning() calls
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0.0;
  int64_t accepted_unix_ms = 0;
  int64_t started_unix_ms = 0;    // 0 = never started (set by the latest MarkRunning)
  int64_t finished_unix_ms = 0;   // 0 = not finished
  int64_t published_version = 0;  // 0 = nothing published (set by CompleteJob)
  std::string verification_json;
  bool cancel_requested = false;
  // When request_blob was replaced by its redacted form (0 = still the full request).
  int64_t payload_purged_unix_ms = 0;
  // Who submitted it: the token name (docs/security.md); "" = submitted without authentication.
  std::string owner;
};

struct AcceptResult {
  JobRecord job;
  bool duplicate = false;  // true: request_id was already journaled; `job` is
                           // the existing one
};

struct JobEvent {
  std::string job_id;
  int64_t seq = 0;   // 1, 2, ... per job
  std::string kind;  // free-form, e.g. "state", "progress", "verification"
  std::string payload_json;
  int64_t unix_ms = 0;
};

// Kinds of record in a model's certificate chain.
inline constexpr const char* kCertificateKindErasure = "erasure";
// An admin forced a rollback to a version older than completed erasures: the record names the
// erasures (and their requests) it undoes. It has no job.
inline constexpr const char* kCertificateKindForcedRollback = "forced_rollback";

struct CertificateRecord {
  std::string certificate_id;  // caller-chosen, unique (e.g. "cert-<job id>")
  std::string job_id;          // "" for a forced rollback
  std::string model_id;
  std::string json;             // the certificate document
  std::string sha256;           // sha256 (hex) of `json`; checked by CompleteJob
  std::string previous_sha256;  // LatestCertificateSha(model_id) at completion
                                // ("" for the first)
  int64_t created_unix_ms = 0;  // filled by the journal
  std::string kind = kCertificateKindErasure;
  // How it is sealed (docs/certificates.md): "jcs-ed25519-v1" (json is the RFC 8785 canonical
  // form, signed) or "" for a record written before signing (schema < 3: unsigned).
  std::string format;
  std::string signature_hex;  // Ed25519 over `json`; "" if unsigned
  std::string key_id;         // of the signing key; "" if unsigned
};

struct ModelRecord {
  std::string model_id;
  std::string family;           // e.g. "causal_lm"
  std::string architecture;     // e.g. "LlamaForCausalLM"
  std::string source_dir;       // where it was imported from (informational)
  int64_t current_version = 0;  // 0 = no version published yet
  int64_t created_unix_ms = 0;  // filled by the journal
};

struct ModelVersionRecord {
  std::string model_id;
  int64_t version = 0;          // >= 1, unique per model
  int64_t parent_version = 0;   // 0 = none (the imported base)
  std::string job_id;           // "" for imports / rollbacks not produced by a job
  std::string artifact_kind;    // core::ArtifactKindName ("full_weights", "lora_adapter", ...)
  std::string dir;              // absolute directory in the model store
  std::string manifest_sha256;  // of the version's manifest.json (SQL column weights_sha256)
  int64_t created_unix_ms = 0;  // filled by the journal
  std::string figures_json;     // verification figures of the job that produced it
                                // ("" if none)
  // Set once the version's bytes were deleted because it precedes a completed erasure: when, and
  // the erasure job that caused it. The row stays (lineage is never rewritten).
  int64_t purged_unix_ms = 0;
  std::string purged_by_job;
};

struct JournalOptions {
  // true: keep every request's payload after its job ends (--retain-forget-payload; for
  // debugging and audits that need the data; the data to be erased then stays on disk).
  bool retain_payload = false;
  // What a terminal job keeps of its request_blob (e.g. the request with its records' text
  // cleared, so counts survive). Unset: nothing (empty blob). Must not fail or throw.
  std::function<std::string(const std::string& request_blob)> redact_payload;
};

struct JobFilter {
  std::string model_id;              // "" = any
  std::optional<JobState> state;     // nullopt = any
  std::optional<std::string> owner;  // nullopt = any; else only jobs submitted by this identity
  int page_size = 50;                // clamped to [1, 1000]
  std::string page_token;            // "" = first page; else a JobPage::next_page_token
};

struct JobPage {
  std::vector<JobRecord> jobs;  // newest first (reverse acceptance order)
  std::string next_page_token;  // "" = no more
};

class Journal {
 public:
  // Opens (creating if needed) the database at `path` and migrates the schema.
  // kInternal on SQLite errors; kFailedPrecondition if the file's schema is
  // newer than this binary's.
  // Also purges the payloads of terminal jobs that still hold one (unless
  // options.retain_payload).
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& path,
                                                       JournalOptions options = {});
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // ---- Jobs
  // -----------------------------------------------------------------------------------

  // Atomically journals a new queued job, durable on return. Idempotent on
  // request_id: a resend with the same request_id and the same fingerprint
  // returns the existing job (whatever its state) with duplicate=true. The same
  // request_id with a different fingerprint is kAlreadyExists ("request id
  // reused for a different request"). kInvalidArgument for missing fields;
  // kNotFound if model_id is not registered.
  absl::StatusOr<AcceptResult> AcceptRequest(const NewJob& job);

  // kNotFound if absent.
  absl::StatusOr<JobRecord> GetJob(const std::string& job_id);
  absl::StatusOr<JobRecord> GetJobByRequest(const std::string& request_id);
  // kInvalidArgument for a malformed page token.
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter);
  // Queued or running jobs, oldest accepted first: what to schedule again after
  // a restart.
  absl::StatusOr<std::vector<JobRecord>> UnfinishedJobs();
  // Number of queued jobs on `model_id` ("" = all models).
  absl::StatusOr<int64_t> CountQueued(const std::string& model_id);
  // Startup helper: every job left `running` by a crash goes back to `queued`
  // (attempts are kept; cancel_requested jobs become cancelled). Returns how
  // many rows changed.
  absl::StatusOr<int64_t> RequeueInterrupted();

  // queued|running -> running; attempts += 1; started time = now; clears
  // step/loss. Returns the updated record. kFailedPrecondition if the job is
  // terminal (e.g. cancelled while queued).
  absl::StatusOr<JobRecord> MarkRunning(const std::string& job_id);
  // Records progress of a running job (one small UPDATE). kFailedPrecondition
  // if not running.
  absl::Status UpdateProgress(const std::string& job_id, int64_t step, int64_t total_steps,
                              double loss);
  // Asks for cancellation. A queued job becomes cancelled at once; a running
  // job gets cancel_requested=true (the runner polls it / its CancellationToken
  // and then calls FinishJob(kCancelled)). Returns the updated record.
  // kFailedPrecondition if already terminal.
  absl::StatusOr<JobRecord> RequestCancel(const std::string& job_id);
  // Ends a queued/running job as failed, failed_verification or cancelled
  // (completed goes through CompleteJob). kInvalidArgument for another state;
  // kFailedPrecondition if already terminal.
  absl::Status FinishJob(const std::string& job_id, JobState state,
                         const std::string& error_message, const std::string& verification_json);

  // Publishes the result of a job in ONE transaction: inserts `version`
  // (version.job_id is set to job_id), sets the model's current_version, marks
  // the job completed with published_version and verification_json, and stores
  // `certificate` (certificate.job_id/model_id are filled in). Preconditions
  // checked (kFailedPrecondition): job is running; version.model_id is the
  // job's model; certificate.previous_sha256 == LatestCertificateSha(model).
  // kInvalidArgument if certificate.sha256 != sha256(certificate.json).
  // kAlreadyExists if the version exists.
  absl::Status CompleteJob(const std::string& job_id, const ModelVersionRecord& version,
                           const CertificateRecord& certificate,
                           const std::string& verification_json);
  // Completes a job that published nothing because the data was already absent from the model's
  // `current_version` (the job's published_version is set to it): marks the job completed and
  // stores `certificate`, in one transaction. kFailedPrecondition if the model moved on from
  // `current_version` (or as CompleteJob for the job's state and the certificate chain).
  absl::Status CompleteJobUnchanged(const std::string& job_id, int64_t current_version,
                                    const CertificateRecord& certificate,
                                    const std::string& verification_json);

  // ---- Events (catch-up for WatchJob)
  // ------------------------------------------------------

  // Appends an event with the next seq for the job; returns it. kNotFound for
  // an unknown job.
  absl::StatusOr<JobEvent> AppendEvent(const std::string& job_id, const std::string& kind,
                                       const std::string& payload_json);
  // Events with seq > after_seq, in seq order, at most `limit` (0 = no limit).
  absl::StatusOr<std::vector<JobEvent>> ListEvents(const std::string& job_id, int64_t after_seq,
                                                   int limit = 0);

  // ---- Models and versions
  // ------------------------------------------------------------------

  // kAlreadyExists if model_id is taken. current_version starts at 0; publish
  // with AddVersion.
  absl::Status RegisterModel(const ModelRecord& model);
  absl::StatusOr<ModelRecord> GetModel(const std::string& model_id);
  absl::StatusOr<std::vector<ModelRecord>> ListModels();  // by model_id
  // Inserts a version (e.g. the imported base v1) and, if make_current, points
  // the model at it, in one transaction. kNotFound for an unknown model;
  // kAlreadyExists for a duplicate version.
  absl::Status AddVersion(const ModelVersionRecord& version, bool make_current);
  // Oldest first. kNotFound for an unknown model.
  absl::StatusOr<std::vector<ModelVersionRecord>> ListVersions(const std::string& model_id);
  absl::StatusOr<ModelVersionRecord> GetVersion(const std::string& model_id, int64_t version);
  // Highest version number recorded for the model + 1 (1 if none): the next
  // version to write.
  absl::StatusOr<int64_t> NextVersion(const std::string& model_id);
  // Rollback: points the model at an existing version. kNotFound if the version
  // does not exist.
  absl::Status SetCurrentVersion(const std::string& model_id, int64_t version);
  // Records that version `version`'s bytes were deleted because it precedes the completed erasure
  // `by_job_id` (purged_unix_ms = now). kNotFound for an unknown version; kFailedPrecondition for
  // the serving version. OK (unchanged) if it is already marked.
  absl::Status MarkVersionPurged(const std::string& model_id, int64_t version,
                                 const std::string& by_job_id);
  // A forced rollback, in ONE transaction: inserts `version` and makes it current, and appends
  // `certificate` (kind forced_rollback, no job) to the model's chain. Preconditions as
  // CompleteJob's for the chain (kFailedPrecondition) and the certificate's sha256
  // (kInvalidArgument); kAlreadyExists if the version exists.
  absl::Status RecordForcedRollback(const ModelVersionRecord& version,
                                    const CertificateRecord& certificate);

  // ---- Retention
  // ----------------------------------------------------------------------------

  // Completed jobs of `model_id`, oldest completion first.
  absl::StatusOr<std::vector<JobRecord>> CompletedJobs(const std::string& model_id);
  // Purges the payload of every terminal job that still holds one (a no-op with retain_payload),
  // then truncates the WAL. Returns how many were purged.
  absl::StatusOr<int64_t> PurgeFinishedPayloads();
  bool retains_payload() const { return options_.retain_payload; }

  // ---- Certificates
  // -------------------------------------------------------------------------

  // sha256 of the model's latest certificate, "" if it has none (the chain's
  // start).
  absl::StatusOr<std::string> LatestCertificateSha(const std::string& model_id);
  absl::StatusOr<CertificateRecord> GetCertificate(const std::string& certificate_id);
  absl::StatusOr<CertificateRecord> GetCertificateByJob(const std::string& job_id);
  // Oldest first (chain order).
  absl::StatusOr<std::vector<CertificateRecord>> ListCertificates(const std::string& model_id);

  // The current schema version (PRAGMA user_version).
  static constexpr int kSchemaVersion = 4;

 private:
  Journal(sqlite3* db, JournalOptions options);
  // Inside a transaction that has just made `job_id` terminal: replaces its payload by the
  // redacted form (unless retain_payload). Sets *purged when it did.
  // Called with mu_ held, from the transaction lambdas (where the thread-safety analysis cannot
  // see the lock, hence no annotation).
  absl::Status PurgeIfTerminal(const std::string& job_id, bool* purged);
  // After a committed purge: truncates the WAL. A failure (the WAL busy) leaves the purge
  // committed; the caller ignores it and the next purge or open truncates.
  absl::Status AfterPurge(bool purged);  // with mu_ held
  // CompleteJob (version != null) and CompleteJobUnchanged (version == null).
  absl::Status Complete(const std::string& job_id, const ModelVersionRecord* version,
                        int64_t published_version, const CertificateRecord& certificate,
                        const std::string& verification_json);

  sqlite3* db_;
  JournalOptions options_;
  absl::Mutex mu_;
};

}  // namespace unlearning::server
