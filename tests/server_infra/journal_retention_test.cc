// Journal retention ("erased means erased"): a terminal job's payload leaves the journal (the
// database file and its WAL), what must stay stays (fingerprint, forget-set SHA-256, counts via
// the redacted blob, certificate), unfinished jobs keep theirs, a v1 journal migrates, and the
// certificate chain takes forced-rollback records.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "core/common/sha256.h"
#include "server/infra/journal.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::unlearning::testing::StatusIs;

// A payload with a marker that must not survive its job, larger than a page (overflow pages).
std::string Payload(const std::string& id) {
  std::vector<std::string> parts = {absl::StrCat("FORGET-ME-", id, ":")};
  for (int i = 0; i < 500; ++i) parts.push_back(absl::StrCat("Lentas-", id, " was born. "));
  return absl::StrJoin(parts, "");
}

NewJob MakeJob(const std::string& request_id) {
  NewJob j;
  j.request_id = request_id;
  j.request_fingerprint = core::Sha256Hex("request:" + request_id);
  j.model_id = "m";
  j.method = "npo";
  j.params_json = "{}";
  j.request_blob = Payload(request_id);
  j.forget_sha256 = core::Sha256Hex("forget:" + request_id);
  j.compliance_reference = "GDPR-7";
  return j;
}

CertificateRecord MakeCertificate(const std::string& id, const std::string& previous) {
  CertificateRecord c;
  c.certificate_id = id;
  c.json = absl::StrCat(R"({"certificate":")", id, R"("})");
  c.sha256 = core::Sha256Hex(c.json);
  c.previous_sha256 = previous;
  return c;
}

ModelVersionRecord MakeVersion(int64_t version, int64_t parent) {
  ModelVersionRecord v;
  v.model_id = "m";
  v.version = version;
  v.parent_version = parent;
  v.artifact_kind = "full_weights";
  v.dir = absl::StrCat("/data/models/m/v", version);
  v.manifest_sha256 = core::Sha256Hex(absl::StrCat("v", version));
  return v;
}

// Every byte of the journal's files (database, WAL, shared memory).
std::string JournalBytes(const std::string& path) {
  std::string all;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::ifstream in(path + suffix, std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string Redact(const std::string& blob) { return absl::StrCat("redacted:", blob.size()); }

class JournalRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Join("journal.sqlite");
    Open({});
    UNL_ASSERT_OK(journal_->RegisterModel({"m", "causal_lm", "LlamaForCausalLM", "/src"}));
    UNL_ASSERT_OK(journal_->AddVersion(MakeVersion(1, 0), /*make_current=*/true));
  }

  void Open(bool retain) {
    journal_.reset();
    JournalOptions options;
    options.retain_payload = retain;
    options.redact_payload = Redact;
    auto j = Journal::Open(path_, options);
    ASSERT_TRUE(j.ok()) << j.status();
    journal_ = *std::move(j);
  }

  std::string Start(const std::string& request_id) {
    auto accepted = journal_->AcceptRequest(MakeJob(request_id));
    EXPECT_TRUE(accepted.ok()) << accepted.status();
    if (!accepted.ok()) return "";
    EXPECT_TRUE(journal_->MarkRunning(accepted->job.job_id).ok());
    return accepted->job.job_id;
  }

  // Completes `job_id` by publishing version `version` with a certificate chained to the latest.
  void Complete(const std::string& job_id, int64_t version) {
    UNL_ASSERT_OK_AND_ASSIGN(std::string previous, journal_->LatestCertificateSha("m"));
    UNL_ASSERT_OK(journal_->CompleteJob(job_id, MakeVersion(version, version - 1),
                                        MakeCertificate("cert-" + job_id, previous), "{}"));
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Journal> journal_;
};

TEST_F(JournalRetentionTest, TerminalJobsLoseTheirPayloadUnfinishedOnesKeepIt) {
  const std::string completed = Start("completed");
  const std::string failed = Start("failed");
  const std::string verification = Start("verification");
  const std::string cancelled_running = Start("cancelled-running");
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult cancelled_queued,
                           journal_->AcceptRequest(MakeJob("cancelled-queued")));
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult queued, journal_->AcceptRequest(MakeJob("queued")));
  const std::string running = Start("running");
  // Before anything ends, every payload is on disk (so the checks below can fail).
  for (const char* id : {"completed", "failed", "queued", "running"}) {
    EXPECT_TRUE(Contains(JournalBytes(path_), absl::StrCat("FORGET-ME-", id, ":"))) << id;
  }

  Complete(completed, 2);
  UNL_ASSERT_OK(journal_->FinishJob(failed, JobState::kFailed, "boom", ""));
  UNL_ASSERT_OK(journal_->FinishJob(verification, JobState::kFailedVerification, "weak", "{}"));
  UNL_ASSERT_OK(journal_->RequestCancel(cancelled_queued.job.job_id).status());
  UNL_ASSERT_OK(journal_->RequestCancel(cancelled_running).status());
  UNL_ASSERT_OK(journal_->FinishJob(cancelled_running, JobState::kCancelled, "asked", ""));

  for (const std::string& id :
       {completed, failed, verification, cancelled_running, cancelled_queued.job.job_id}) {
    UNL_ASSERT_OK_AND_ASSIGN(JobRecord j, journal_->GetJob(id));
    EXPECT_TRUE(IsTerminal(j.state)) << id;
    EXPECT_EQ(j.request_blob, Redact(MakeJob(j.request_id).request_blob)) << j.request_id;
    EXPECT_GT(j.payload_purged_unix_ms, 0) << j.request_id;
    // What stays: the request's fingerprint and the forget set's SHA-256.
    EXPECT_EQ(j.request_fingerprint, MakeJob(j.request_id).request_fingerprint);
    EXPECT_EQ(j.forget_sha256, MakeJob(j.request_id).forget_sha256);
    EXPECT_EQ(j.compliance_reference, "GDPR-7");
  }
  UNL_ASSERT_OK_AND_ASSIGN(CertificateRecord cert, journal_->GetCertificateByJob(completed));
  EXPECT_EQ(cert.certificate_id, "cert-" + completed);
  EXPECT_EQ(cert.kind, kCertificateKindErasure);

  // Queued and running jobs keep their payload: a restart re-runs them from it.
  for (const std::string& id : {queued.job.job_id, running}) {
    UNL_ASSERT_OK_AND_ASSIGN(JobRecord j, journal_->GetJob(id));
    EXPECT_EQ(j.request_blob, MakeJob(j.request_id).request_blob);
    EXPECT_EQ(j.payload_purged_unix_ms, 0);
  }
  // The bytes are gone from the database and the WAL, not only from the rows.
  const std::string bytes = JournalBytes(path_);
  for (const char* id :
       {"completed", "failed", "verification", "cancelled-running", "cancelled-queued"}) {
    EXPECT_FALSE(Contains(bytes, absl::StrCat("FORGET-ME-", id, ":"))) << id;
    EXPECT_FALSE(Contains(bytes, absl::StrCat("Lentas-", id, " was born"))) << id;
  }
  EXPECT_TRUE(Contains(bytes, "FORGET-ME-queued:"));
  EXPECT_TRUE(Contains(bytes, "FORGET-ME-running:"));
  EXPECT_EQ(fs::file_size(path_ + "-wal"), 0u) << "the WAL is truncated after a purge";

  // A resend of a purged request is still recognised by its fingerprint.
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult again, journal_->AcceptRequest(MakeJob("completed")));
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.job.job_id, completed);
}

TEST_F(JournalRetentionTest, RestartRecoveryStillHasThePayloadOfInterruptedJobs) {
  const std::string running = Start("interrupted");
  const std::string cancel_asked = Start("cancel-asked");
  UNL_ASSERT_OK(journal_->RequestCancel(cancel_asked).status());
  Open(false);  // a "crash": reopen with the jobs still running
  UNL_ASSERT_OK_AND_ASSIGN(int64_t changed, journal_->RequeueInterrupted());
  EXPECT_EQ(changed, 2);
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> unfinished, journal_->UnfinishedJobs());
  ASSERT_THAT(unfinished, SizeIs(1));
  EXPECT_EQ(unfinished[0].job_id, running);
  EXPECT_EQ(unfinished[0].request_blob, MakeJob("interrupted").request_blob);
  // The job whose cancel was asked ended cancelled at the restart: its payload went with it.
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord cancelled, journal_->GetJob(cancel_asked));
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_GT(cancelled.payload_purged_unix_ms, 0);
  EXPECT_FALSE(Contains(JournalBytes(path_), "FORGET-ME-cancel-asked:"));
}

TEST_F(JournalRetentionTest, RetainPayloadKeepsItUntilAJournalWithoutItOpens) {
  Open(/*retain=*/true);
  const std::string job = Start("kept");
  Complete(job, 2);
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord kept, journal_->GetJob(job));
  EXPECT_EQ(kept.request_blob, MakeJob("kept").request_blob);
  EXPECT_EQ(kept.payload_purged_unix_ms, 0);
  EXPECT_TRUE(Contains(JournalBytes(path_), "FORGET-ME-kept:"));
  UNL_ASSERT_OK_AND_ASSIGN(int64_t none, journal_->PurgeFinishedPayloads());
  EXPECT_EQ(none, 0);

  Open(/*retain=*/false);  // Open() purges what a retaining run left behind
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord purged, journal_->GetJob(job));
  EXPECT_EQ(purged.request_blob, Redact(MakeJob("kept").request_blob));
  EXPECT_GT(purged.payload_purged_unix_ms, 0);
  EXPECT_FALSE(Contains(JournalBytes(path_), "FORGET-ME-kept:"));
}

TEST_F(JournalRetentionTest, PurgedVersionsAreMarkedAndTheServingOneIsRefused) {
  Complete(Start("e1"), 2);
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord e1, journal_->GetJobByRequest("e1"));
  UNL_ASSERT_OK(journal_->MarkVersionPurged("m", 1, e1.job_id));
  UNL_ASSERT_OK_AND_ASSIGN(ModelVersionRecord v1, journal_->GetVersion("m", 1));
  EXPECT_GT(v1.purged_unix_ms, 0);
  EXPECT_EQ(v1.purged_by_job, e1.job_id);
  // Idempotent: the first purge's time and cause stay.
  UNL_ASSERT_OK(journal_->MarkVersionPurged("m", 1, "job-other"));
  UNL_ASSERT_OK_AND_ASSIGN(ModelVersionRecord again, journal_->GetVersion("m", 1));
  EXPECT_EQ(again.purged_by_job, e1.job_id);
  EXPECT_EQ(again.purged_unix_ms, v1.purged_unix_ms);
  EXPECT_THAT(journal_->MarkVersionPurged("m", 2, e1.job_id),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("serving")));
  EXPECT_THAT(journal_->MarkVersionPurged("m", 9, e1.job_id),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no version 9")));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> completed, journal_->CompletedJobs("m"));
  ASSERT_THAT(completed, SizeIs(1));
  EXPECT_EQ(completed[0].published_version, 2);
}

TEST_F(JournalRetentionTest, AForcedRollbackIsARecordOfTheCertificateChain) {
  Complete(Start("e1"), 2);
  UNL_ASSERT_OK_AND_ASSIGN(std::string latest, journal_->LatestCertificateSha("m"));
  ModelVersionRecord rollback = MakeVersion(3, 2);
  rollback.dir = MakeVersion(1, 0).dir;
  CertificateRecord record = MakeCertificate("rollback-m-v3", "wrong");
  record.kind = kCertificateKindForcedRollback;
  EXPECT_THAT(journal_->RecordForcedRollback(rollback, record),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chain mismatch")));
  record.previous_sha256 = latest;
  UNL_ASSERT_OK(journal_->RecordForcedRollback(rollback, record));
  UNL_ASSERT_OK_AND_ASSIGN(ModelRecord model, journal_->GetModel("m"));
  EXPECT_EQ(model.current_version, 3);

  UNL_ASSERT_OK_AND_ASSIGN(std::vector<CertificateRecord> chain, journal_->ListCertificates("m"));
  ASSERT_THAT(chain, SizeIs(2));
  EXPECT_EQ(chain[0].kind, kCertificateKindErasure);
  EXPECT_EQ(chain[1].kind, kCertificateKindForcedRollback);
  EXPECT_EQ(chain[1].job_id, "");
  EXPECT_EQ(chain[1].previous_sha256, chain[0].sha256);
  UNL_ASSERT_OK_AND_ASSIGN(CertificateRecord got, journal_->GetCertificate("rollback-m-v3"));
  EXPECT_EQ(got.sha256, record.sha256);

  // The next erasure chains onto the rollback record.
  const std::string e2 = Start("e2");
  UNL_ASSERT_OK(
      journal_->CompleteJob(e2, MakeVersion(4, 3), MakeCertificate("cert-e2", got.sha256), "{}"));
}

// A journal written by the first schema (user_version 1), with a completed and a queued job, a
// published version and a certificate, opens, migrates and purges the completed job's payload.
TEST(JournalMigrationTest, AVersion1JournalMigratesAndPurgesFinishedPayloads) {
  testing::TempDir dir;
  const std::string path = dir.Join("journal.sqlite");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    // The schema of user_version 1, as released.
    const char* v1 = R"sql(
PRAGMA journal_mode = WAL;
CREATE TABLE models (model_id TEXT PRIMARY KEY, family TEXT NOT NULL, architecture TEXT NOT NULL,
  source_dir TEXT NOT NULL, current_version INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL);
CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL UNIQUE, request_fingerprint TEXT NOT NULL,
  model_id TEXT NOT NULL REFERENCES models(model_id), method TEXT NOT NULL,
  params_json TEXT NOT NULL, request_blob BLOB NOT NULL, forget_sha256 TEXT NOT NULL,
  compliance_reference TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'completed', 'failed',
                                       'failed_verification', 'cancelled')),
  error_message TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0,
  step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,
  loss REAL NOT NULL DEFAULT 0, accepted_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0, finished_ms INTEGER NOT NULL DEFAULT 0,
  published_version INTEGER NOT NULL DEFAULT 0, verification_json TEXT NOT NULL DEFAULT '',
  cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE INDEX jobs_by_state ON jobs (state, seq);
CREATE INDEX jobs_by_model ON jobs (model_id, seq);
CREATE TABLE events (job_id TEXT NOT NULL REFERENCES jobs(job_id), seq INTEGER NOT NULL,
  kind TEXT NOT NULL, payload_json TEXT NOT NULL, unix_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, seq)) WITHOUT ROWID;
CREATE TABLE model_versions (model_id TEXT NOT NULL REFERENCES models(model_id),
  version INTEGER NOT NULL CHECK (version >= 1), parent_version INTEGER NOT NULL,
  job_id TEXT NOT NULL, artifact_kind TEXT NOT NULL, dir TEXT NOT NULL,
  weights_sha256 TEXT NOT NULL, created_ms INTEGER NOT NULL, figures_json TEXT NOT NULL,
  PRIMARY KEY (model_id, version));
CREATE TABLE certificates (seq INTEGER PRIMARY KEY AUTOINCREMENT,
  certificate_id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL UNIQUE REFERENCES jobs(job_id),
  model_id TEXT NOT NULL REFERENCES models(model_id), json TEXT NOT NULL, sha256 TEXT NOT NULL,
  previous_sha256 TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX certificates_by_model ON certificates (model_id, seq);
INSERT INTO models VALUES ('m', 'causal_lm', 'LlamaForCausalLM', '/src', 2, 1);
INSERT INTO model_versions VALUES ('m', 1, 0, '', 'full_weights', '/d/v1', 'a', 1, '');
INSERT INTO model_versions VALUES ('m', 2, 1, 'job-done', 'full_weights', '/d/v2', 'b', 2, '{}');
INSERT INTO jobs (job_id, request_id, request_fingerprint, model_id, method, params_json,
  request_blob, forget_sha256, compliance_reference, state, accepted_ms, finished_ms,
  published_version)
  VALUES ('job-done', 'r-done', 'fp-done', 'm', 'npo', '{}', 'FORGET-ME-old-done', 'sha-done',
          'T-1', 'completed', 1, 2, 2);
INSERT INTO jobs (job_id, request_id, request_fingerprint, model_id, method, params_json,
  request_blob, forget_sha256, compliance_reference, state, accepted_ms)
  VALUES ('job-wait', 'r-wait', 'fp-wait', 'm', 'npo', '{}', 'FORGET-ME-old-wait', 'sha-wait',
          'T-2', 'queued', 3);
INSERT INTO certificates (certificate_id, job_id, model_id, json, sha256, previous_sha256,
  created_ms) VALUES ('cert-done', 'job-done', 'm', '{"c":1}', 'sha-cert', '', 2);
PRAGMA user_version = 1;
)sql";
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  ASSERT_TRUE(Contains(JournalBytes(path), "FORGET-ME-old-done"));

  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Journal> journal, Journal::Open(path));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord done, journal->GetJob("job-done"));
  EXPECT_EQ(done.request_blob, "");
  EXPECT_GT(done.payload_purged_unix_ms, 0);
  EXPECT_EQ(done.request_fingerprint, "fp-done");
  EXPECT_EQ(done.forget_sha256, "sha-done");
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord wait, journal->GetJob("job-wait"));
  EXPECT_EQ(wait.request_blob, "FORGET-ME-old-wait");
  EXPECT_EQ(wait.payload_purged_unix_ms, 0);
  UNL_ASSERT_OK_AND_ASSIGN(CertificateRecord cert, journal->GetCertificateByJob("job-done"));
  EXPECT_EQ(cert.kind, kCertificateKindErasure);
  EXPECT_EQ(cert.sha256, "sha-cert");
  UNL_ASSERT_OK_AND_ASSIGN(ModelVersionRecord v1, journal->GetVersion("m", 1));
  EXPECT_EQ(v1.purged_unix_ms, 0);
  EXPECT_EQ(v1.purged_by_job, "");
  UNL_ASSERT_OK_AND_ASSIGN(std::string latest, journal->LatestCertificateSha("m"));
  EXPECT_EQ(latest, "sha-cert");
  journal.reset();
  EXPECT_FALSE(Contains(JournalBytes(path), "FORGET-ME-old-done"));
  EXPECT_TRUE(Contains(JournalBytes(path), "FORGET-ME-old-wait"));

  // Migrated once: it reopens as the current schema.
  UNL_ASSERT_OK_AND_ASSIGN(journal, Journal::Open(path));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> unfinished, journal->UnfinishedJobs());
  ASSERT_THAT(unfinished, SizeIs(1));
  EXPECT_EQ(unfinished[0].job_id, "job-wait");
}

}  // namespace
}  // namespace unlearning::server
