#include "server/infra/journal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include "core/common/sha256.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::SizeIs;
using ::unlearning::testing::StatusIs;

NewJob MakeJob(const std::string& request_id, const std::string& model = "tiny-lm") {
  NewJob j;
  j.request_id = request_id;
  j.request_fingerprint = core::Sha256Hex("request:" + request_id);
  j.model_id = model;
  j.method = "npo";
  j.params_json = R"({"steps":10})";
  j.request_blob = std::string("\x00\x01\xff blob", 8);  // binary with an embedded NUL
  j.forget_sha256 = core::Sha256Hex("forget");
  j.compliance_reference = "GDPR-TICKET-1";
  return j;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Join("journal.db");
    UNL_ASSERT_OK_AND_ASSIGN(journal_, Journal::Open(path_));
    UNL_ASSERT_OK(journal_->RegisterModel({"tiny-lm", "causal_lm", "LlamaForCausalLM", "/src"}));
    UNL_ASSERT_OK(journal_->RegisterModel({"other", "causal_lm", "LlamaForCausalLM", "/src2"}));
  }

  // Accepts and marks running; returns the job id.
  std::string StartJob(const std::string& request_id, const std::string& model = "tiny-lm") {
    auto accepted = journal_->AcceptRequest(MakeJob(request_id, model));
    EXPECT_TRUE(accepted.ok()) << accepted.status();
    if (!accepted.ok()) return "";
    EXPECT_TRUE(journal_->MarkRunning(accepted->job.job_id).ok());
    return accepted->job.job_id;
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Journal> journal_;
};

CertificateRecord MakeCertificate(const std::string& id, const std::string& previous) {
  CertificateRecord c;
  c.certificate_id = id;
  c.json = absl::StrCat(R"({"certificate":")", id, R"(","previous":")", previous, "\"}");
  c.sha256 = core::Sha256Hex(c.json);
  c.previous_sha256 = previous;
  return c;
}

ModelVersionRecord MakeVersion(int64_t version, int64_t parent) {
  ModelVersionRecord v;
  v.model_id = "tiny-lm";
  v.version = version;
  v.parent_version = parent;
  v.artifact_kind = "full";
  v.dir = absl::StrCat("/data/models/tiny-lm/v", version);
  v.manifest_sha256 = core::Sha256Hex(absl::StrCat("weights", version));
  v.figures_json = R"({"forget_quality":0.9})";
  return v;
}

TEST(JobStateTest, NamesRoundTrip) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kCompleted, JobState::kFailed,
                     JobState::kFailedVerification, JobState::kCancelled}) {
    UNL_ASSERT_OK_AND_ASSIGN(JobState parsed, ParseJobState(JobStateName(s)));
    EXPECT_EQ(parsed, s);
  }
  EXPECT_THAT(ParseJobState("done"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("done")));
  EXPECT_FALSE(IsTerminal(JobState::kRunning));
  EXPECT_TRUE(IsTerminal(JobState::kFailedVerification));
}

TEST_F(JournalTest, AcceptStoresEveryFieldAndGeneratesJobId) {
  const NewJob in = MakeJob("req-1");
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult r, journal_->AcceptRequest(in));
  EXPECT_FALSE(r.duplicate);
  EXPECT_THAT(r.job.job_id, MatchesRegex("job-[0-9a-f]{16}"));
  EXPECT_EQ(r.job.state, JobState::kQueued);
  EXPECT_GT(r.job.accepted_unix_ms, 0);

  UNL_ASSERT_OK_AND_ASSIGN(JobRecord got, journal_->GetJob(r.job.job_id));
  EXPECT_EQ(got.request_id, in.request_id);
  EXPECT_EQ(got.request_fingerprint, in.request_fingerprint);
  EXPECT_EQ(got.model_id, in.model_id);
  EXPECT_EQ(got.method, in.method);
  EXPECT_EQ(got.params_json, in.params_json);
  EXPECT_EQ(got.request_blob, in.request_blob);
  EXPECT_EQ(got.request_blob.size(), 8u);
  EXPECT_EQ(got.forget_sha256, in.forget_sha256);
  EXPECT_EQ(got.compliance_reference, in.compliance_reference);
  EXPECT_EQ(got.attempts, 0);
  EXPECT_FALSE(got.cancel_requested);

  UNL_ASSERT_OK_AND_ASSIGN(JobRecord by_request, journal_->GetJobByRequest("req-1"));
  EXPECT_EQ(by_request.job_id, r.job.job_id);
  EXPECT_THAT(journal_->GetJob("job-0000000000000000"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job")));
}

TEST_F(JournalTest, ResendIsIdempotentButReuseForAnotherRequestIsRejected) {
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult first, journal_->AcceptRequest(MakeJob("req-1")));
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult again, journal_->AcceptRequest(MakeJob("req-1")));
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.job.job_id, first.job.job_id);

  NewJob different = MakeJob("req-1");
  different.request_fingerprint = core::Sha256Hex("something else");
  EXPECT_THAT(journal_->AcceptRequest(different),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("different request")));
  UNL_ASSERT_OK_AND_ASSIGN(int64_t queued, journal_->CountQueued(""));
  EXPECT_EQ(queued, 1);

  // A resend after the job finished still returns the finished job.
  UNL_ASSERT_OK(journal_->MarkRunning(first.job.job_id).status());
  UNL_ASSERT_OK(journal_->FinishJob(first.job.job_id, JobState::kFailed, "boom", ""));
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult late, journal_->AcceptRequest(MakeJob("req-1")));
  EXPECT_TRUE(late.duplicate);
  EXPECT_EQ(late.job.state, JobState::kFailed);
}

TEST_F(JournalTest, AcceptValidates) {
  NewJob j = MakeJob("");
  EXPECT_THAT(journal_->AcceptRequest(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request_id")));
  j = MakeJob("r");
  j.request_fingerprint.clear();
  EXPECT_THAT(journal_->AcceptRequest(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fingerprint")));
  j = MakeJob("r");
  j.method.clear();
  EXPECT_THAT(journal_->AcceptRequest(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("method")));
  EXPECT_THAT(journal_->AcceptRequest(MakeJob("r", "no-such-model")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-model")));
}

TEST_F(JournalTest, JobIdsAreDistinct) {
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    UNL_ASSERT_OK_AND_ASSIGN(AcceptResult r,
                             journal_->AcceptRequest(MakeJob(absl::StrCat("r", i))));
    ids.insert(r.job.job_id);
  }
  EXPECT_EQ(ids.size(), 50u);
}

TEST_F(JournalTest, LifecycleRunningProgressFailed) {
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult r, journal_->AcceptRequest(MakeJob("req-1")));
  const std::string id = r.job.job_id;
  EXPECT_THAT(journal_->UpdateProgress(id, 1, 10, 2.0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("queued")));

  UNL_ASSERT_OK_AND_ASSIGN(JobRecord running, journal_->MarkRunning(id));
  EXPECT_EQ(running.state, JobState::kRunning);
  EXPECT_EQ(running.attempts, 1);
  EXPECT_GT(running.started_unix_ms, 0);

  UNL_ASSERT_OK(journal_->UpdateProgress(id, 3, 10, 1.25));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord progressed, journal_->GetJob(id));
  EXPECT_EQ(progressed.step, 3);
  EXPECT_EQ(progressed.total_steps, 10);
  EXPECT_DOUBLE_EQ(progressed.loss, 1.25);

  EXPECT_THAT(journal_->FinishJob(id, JobState::kCompleted, "", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("completed")));
  UNL_ASSERT_OK(journal_->FinishJob(id, JobState::kFailedVerification, "forget quality 0.1 < 0.5",
                                    R"({"forget_quality":0.1})"));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord done, journal_->GetJob(id));
  EXPECT_EQ(done.state, JobState::kFailedVerification);
  EXPECT_EQ(done.error_message, "forget quality 0.1 < 0.5");
  EXPECT_EQ(done.verification_json, R"({"forget_quality":0.1})");
  EXPECT_GE(done.finished_unix_ms, done.started_unix_ms);

  EXPECT_THAT(journal_->FinishJob(id, JobState::kFailed, "", ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));
  EXPECT_THAT(journal_->MarkRunning(id).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("failed_verification")));
  EXPECT_THAT(journal_->UpdateProgress(id, 4, 10, 1.0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not running")));
  EXPECT_THAT(journal_->UpdateProgress("job-nope", 4, 10, 1.0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-nope")));
}

TEST_F(JournalTest, CancelQueuedIsImmediateCancelRunningSetsFlag) {
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult q, journal_->AcceptRequest(MakeJob("q")));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord cancelled, journal_->RequestCancel(q.job.job_id));
  EXPECT_EQ(cancelled.state, JobState::kCancelled);
  EXPECT_TRUE(cancelled.cancel_requested);
  EXPECT_THAT(journal_->MarkRunning(q.job.job_id).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cancelled")));
  EXPECT_THAT(journal_->RequestCancel(q.job.job_id).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));

  const std::string running = StartJob("r");
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord flagged, journal_->RequestCancel(running));
  EXPECT_EQ(flagged.state, JobState::kRunning);
  EXPECT_TRUE(flagged.cancel_requested);
  UNL_ASSERT_OK(journal_->FinishJob(running, JobState::kCancelled, "cancelled", ""));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord done, journal_->GetJob(running));
  EXPECT_EQ(done.state, JobState::kCancelled);
}

TEST_F(JournalTest, CompleteJobPublishesVersionAndChainsCertificates) {
  UNL_ASSERT_OK(journal_->AddVersion(MakeVersion(1, 0), /*make_current=*/true));
  const std::string a = StartJob("a");
  UNL_ASSERT_OK_AND_ASSIGN(std::string latest, journal_->LatestCertificateSha("tiny-lm"));
  EXPECT_EQ(latest, "");
  const CertificateRecord cert_a = MakeCertificate("cert-a", "");
  UNL_ASSERT_OK(journal_->CompleteJob(a, MakeVersion(2, 1), cert_a, R"({"ok":true})"));

  UNL_ASSERT_OK_AND_ASSIGN(JobRecord job_a, journal_->GetJob(a));
  EXPECT_EQ(job_a.state, JobState::kCompleted);
  EXPECT_EQ(job_a.published_version, 2);
  EXPECT_EQ(job_a.verification_json, R"({"ok":true})");
  UNL_ASSERT_OK_AND_ASSIGN(ModelRecord model, journal_->GetModel("tiny-lm"));
  EXPECT_EQ(model.current_version, 2);
  UNL_ASSERT_OK_AND_ASSIGN(ModelVersionRecord v2, journal_->GetVersion("tiny-lm", 2));
  EXPECT_EQ(v2.job_id, a);
  EXPECT_EQ(v2.parent_version, 1);
  EXPECT_EQ(v2.manifest_sha256, MakeVersion(2, 1).manifest_sha256);
  UNL_ASSERT_OK_AND_ASSIGN(CertificateRecord got_a, journal_->GetCertificateByJob(a));
  EXPECT_EQ(got_a.certificate_id, "cert-a");
  EXPECT_EQ(got_a.model_id, "tiny-lm");
  EXPECT_EQ(got_a.sha256, cert_a.sha256);
  UNL_ASSERT_OK_AND_ASSIGN(latest, journal_->LatestCertificateSha("tiny-lm"));
  EXPECT_EQ(latest, cert_a.sha256);

  // Second job: a certificate that does not chain to the first is refused, and
  // nothing changes.
  const std::string b = StartJob("b");
  EXPECT_THAT(journal_->CompleteJob(b, MakeVersion(3, 2), MakeCertificate("cert-b", ""), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chain")));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord job_b, journal_->GetJob(b));
  EXPECT_EQ(job_b.state, JobState::kRunning);
  EXPECT_THAT(journal_->GetVersion("tiny-lm", 3).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("version 3")));
  UNL_ASSERT_OK_AND_ASSIGN(model, journal_->GetModel("tiny-lm"));
  EXPECT_EQ(model.current_version, 2);

  // A tampered certificate (sha does not match the json) is refused.
  CertificateRecord tampered = MakeCertificate("cert-b", cert_a.sha256);
  tampered.json += " ";
  EXPECT_THAT(journal_->CompleteJob(b, MakeVersion(3, 2), tampered, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sha256")));
  // An existing version number is refused.
  EXPECT_THAT(
      journal_->CompleteJob(b, MakeVersion(2, 1), MakeCertificate("cert-b", cert_a.sha256), ""),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("version 2")));

  const CertificateRecord cert_b = MakeCertificate("cert-b", cert_a.sha256);
  UNL_ASSERT_OK(journal_->CompleteJob(b, MakeVersion(3, 2), cert_b, ""));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<CertificateRecord> chain,
                           journal_->ListCertificates("tiny-lm"));
  ASSERT_THAT(chain, SizeIs(2));
  EXPECT_EQ(chain[0].previous_sha256, "");
  EXPECT_EQ(chain[1].previous_sha256, chain[0].sha256);
  UNL_ASSERT_OK_AND_ASSIGN(CertificateRecord by_id, journal_->GetCertificate("cert-b"));
  EXPECT_EQ(by_id.job_id, b);

  // Completing a job that is not running is refused.
  EXPECT_THAT(
      journal_->CompleteJob(b, MakeVersion(4, 3), MakeCertificate("cert-c", cert_b.sha256), ""),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("completed")));
  // The chain is per model.
  UNL_ASSERT_OK_AND_ASSIGN(latest, journal_->LatestCertificateSha("other"));
  EXPECT_EQ(latest, "");
}

TEST_F(JournalTest, EventsAreNumberedPerJobAndListedAfterSeq) {
  const std::string a = StartJob("a");
  const std::string b = StartJob("b");
  for (int i = 0; i < 5; ++i) {
    UNL_ASSERT_OK_AND_ASSIGN(
        JobEvent ev, journal_->AppendEvent(a, "progress", absl::StrCat(R"({"step":)", i, "}")));
    EXPECT_EQ(ev.seq, i + 1);
  }
  UNL_ASSERT_OK_AND_ASSIGN(JobEvent eb, journal_->AppendEvent(b, "state", "{}"));
  EXPECT_EQ(eb.seq, 1);

  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobEvent> after2, journal_->ListEvents(a, 2));
  ASSERT_THAT(after2, SizeIs(3));
  EXPECT_EQ(after2[0].seq, 3);
  EXPECT_EQ(after2[0].payload_json, R"({"step":2})");
  EXPECT_EQ(after2[0].kind, "progress");
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobEvent> limited, journal_->ListEvents(a, 0, 2));
  EXPECT_THAT(limited, SizeIs(2));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobEvent> none, journal_->ListEvents(a, 5));
  EXPECT_THAT(none, SizeIs(0));
  EXPECT_THAT(journal_->AppendEvent("job-missing", "x", "{}").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-missing")));
}

TEST_F(JournalTest, ListJobsPagesNewestFirstWithFilters) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    UNL_ASSERT_OK_AND_ASSIGN(AcceptResult r,
                             journal_->AcceptRequest(MakeJob(absl::StrCat("r", i))));
    ids.push_back(r.job.job_id);
  }
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult other, journal_->AcceptRequest(MakeJob("o", "other")));
  UNL_ASSERT_OK(journal_->MarkRunning(ids[1]).status());

  std::vector<std::string> seen;
  JobFilter f;
  f.model_id = "tiny-lm";
  f.page_size = 2;
  int pages = 0;
  do {
    UNL_ASSERT_OK_AND_ASSIGN(JobPage page, journal_->ListJobs(f));
    for (const JobRecord& j : page.jobs) seen.push_back(j.job_id);
    f.page_token = page.next_page_token;
    ++pages;
  } while (!f.page_token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ElementsAre(ids[4], ids[3], ids[2], ids[1], ids[0]));

  JobFilter running;
  running.state = JobState::kRunning;
  UNL_ASSERT_OK_AND_ASSIGN(JobPage r, journal_->ListJobs(running));
  ASSERT_THAT(r.jobs, SizeIs(1));
  EXPECT_EQ(r.jobs[0].job_id, ids[1]);
  EXPECT_EQ(r.next_page_token, "");

  JobFilter all;
  UNL_ASSERT_OK_AND_ASSIGN(JobPage everything, journal_->ListJobs(all));
  EXPECT_THAT(everything.jobs, SizeIs(6));
  EXPECT_EQ(everything.jobs[0].job_id, other.job.job_id);

  JobFilter bad;
  bad.page_token = "abc";
  EXPECT_THAT(journal_->ListJobs(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page token")));
}

TEST_F(JournalTest, UnfinishedJobsInAcceptanceOrderAndCounts) {
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    UNL_ASSERT_OK_AND_ASSIGN(
        AcceptResult r,
        journal_->AcceptRequest(MakeJob(absl::StrCat("r", i), i == 2 ? "other" : "tiny-lm")));
    ids.push_back(r.job.job_id);
  }
  UNL_ASSERT_OK(journal_->MarkRunning(ids[0]).status());
  UNL_ASSERT_OK(journal_->MarkRunning(ids[3]).status());
  UNL_ASSERT_OK(journal_->FinishJob(ids[3], JobState::kFailed, "x", ""));

  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> unfinished, journal_->UnfinishedJobs());
  ASSERT_THAT(unfinished, SizeIs(3));
  EXPECT_EQ(unfinished[0].job_id, ids[0]);
  EXPECT_EQ(unfinished[1].job_id, ids[1]);
  EXPECT_EQ(unfinished[2].job_id, ids[2]);
  UNL_ASSERT_OK_AND_ASSIGN(int64_t q_tiny, journal_->CountQueued("tiny-lm"));
  UNL_ASSERT_OK_AND_ASSIGN(int64_t q_other, journal_->CountQueued("other"));
  UNL_ASSERT_OK_AND_ASSIGN(int64_t q_all, journal_->CountQueued(""));
  EXPECT_EQ(q_tiny, 1);
  EXPECT_EQ(q_other, 1);
  EXPECT_EQ(q_all, 2);
}

TEST_F(JournalTest, ModelsVersionsAndRollback) {
  EXPECT_THAT(journal_->RegisterModel({"tiny-lm", "causal_lm", "X", ""}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("tiny-lm")));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<ModelRecord> models, journal_->ListModels());
  ASSERT_THAT(models, SizeIs(2));
  EXPECT_EQ(models[0].model_id, "other");
  EXPECT_EQ(models[1].architecture, "LlamaForCausalLM");
  EXPECT_EQ(models[1].current_version, 0);

  UNL_ASSERT_OK_AND_ASSIGN(int64_t next, journal_->NextVersion("tiny-lm"));
  EXPECT_EQ(next, 1);
  UNL_ASSERT_OK(journal_->AddVersion(MakeVersion(1, 0), true));
  UNL_ASSERT_OK(journal_->AddVersion(MakeVersion(2, 1), true));
  EXPECT_THAT(journal_->AddVersion(MakeVersion(2, 1), true),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("version 2")));
  UNL_ASSERT_OK_AND_ASSIGN(next, journal_->NextVersion("tiny-lm"));
  EXPECT_EQ(next, 3);
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<ModelVersionRecord> versions,
                           journal_->ListVersions("tiny-lm"));
  ASSERT_THAT(versions, SizeIs(2));
  EXPECT_EQ(versions[0].version, 1);
  EXPECT_EQ(versions[1].figures_json, R"({"forget_quality":0.9})");

  UNL_ASSERT_OK(journal_->SetCurrentVersion("tiny-lm", 1));
  UNL_ASSERT_OK_AND_ASSIGN(ModelRecord m, journal_->GetModel("tiny-lm"));
  EXPECT_EQ(m.current_version, 1);
  EXPECT_THAT(journal_->SetCurrentVersion("tiny-lm", 7),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("version 7")));
  EXPECT_THAT(journal_->GetModel("nope").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(journal_->ListVersions("nope").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  ModelVersionRecord bad = MakeVersion(0, 0);
  EXPECT_THAT(journal_->AddVersion(bad, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version")));
}

TEST_F(JournalTest, ConcurrentAcceptsFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::atomic<int> duplicates{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every request id is sent by two threads: exactly one must win.
        const std::string id = absl::StrCat("r", (t / 2), "-", i);
        auto r = journal_->AcceptRequest(MakeJob(id));
        if (!r.ok()) {
          ++errors;
        } else if (r->duplicate) {
          ++duplicates;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(duplicates.load(), kThreads / 2 * kPerThread);
  UNL_ASSERT_OK_AND_ASSIGN(int64_t queued, journal_->CountQueued("tiny-lm"));
  EXPECT_EQ(queued, kThreads / 2 * kPerThread);
}

// ---- Crash safety
// ------------------------------------------------------------------------------

TEST_F(JournalTest, ReopenAfterDestroyMidwayReturnsUnfinishedJobs) {
  UNL_ASSERT_OK_AND_ASSIGN(AcceptResult q, journal_->AcceptRequest(MakeJob("queued")));
  const std::string running = StartJob("running");
  UNL_ASSERT_OK(journal_->UpdateProgress(running, 5, 10, 0.5));
  const std::string failed = StartJob("failed");
  UNL_ASSERT_OK(journal_->FinishJob(failed, JobState::kFailed, "x", ""));
  journal_.reset();

  UNL_ASSERT_OK_AND_ASSIGN(journal_, Journal::Open(path_));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> unfinished, journal_->UnfinishedJobs());
  ASSERT_THAT(unfinished, SizeIs(2));
  EXPECT_EQ(unfinished[0].job_id, q.job.job_id);
  EXPECT_EQ(unfinished[0].request_blob, MakeJob("queued").request_blob);
  EXPECT_EQ(unfinished[1].job_id, running);
  EXPECT_EQ(unfinished[1].state, JobState::kRunning);
  EXPECT_EQ(unfinished[1].step, 5);

  // Startup recovery: the interrupted running job is queued again and can run a
  // second attempt.
  UNL_ASSERT_OK_AND_ASSIGN(int64_t requeued, journal_->RequeueInterrupted());
  EXPECT_EQ(requeued, 1);
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord again, journal_->MarkRunning(running));
  EXPECT_EQ(again.attempts, 2);
}

TEST_F(JournalTest, RequeueInterruptedCancelsJobsWhoseCancelWasRequested) {
  const std::string a = StartJob("a");
  UNL_ASSERT_OK(journal_->RequestCancel(a).status());
  UNL_ASSERT_OK_AND_ASSIGN(int64_t changed, journal_->RequeueInterrupted());
  EXPECT_EQ(changed, 1);
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord j, journal_->GetJob(a));
  EXPECT_EQ(j.state, JobState::kCancelled);
}

TEST_F(JournalTest, ReopenRejectsNewerSchema) {
  journal_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  int64_t version = -1;
  sqlite3_exec(
      db, "PRAGMA user_version",
      [](void* out, int, char** values, char**) {
        *static_cast<int64_t*>(out) = std::stoll(values[0]);
        return 0;
      },
      &version, nullptr);
  EXPECT_EQ(version, Journal::kSchemaVersion);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_THAT(Journal::Open(path_).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema version 99")));
}

// A child process accepts requests, acknowledging each on a pipe once
// AcceptRequest returned, and is SIGKILLed mid-stream; every acknowledged
// request must be in the journal when reopened.
TEST_F(JournalTest, AcknowledgedRequestsSurviveSigkill) {
  journal_.reset();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    auto j = Journal::Open(path_);
    if (!j.ok()) _exit(2);
    for (int i = 0;; ++i) {
      if (!(*j)->AcceptRequest(MakeJob(absl::StrCat("kill-", i))).ok()) _exit(3);
      const char ack = 'a';
      if (write(fds[1], &ack, 1) != 1) _exit(4);
    }
  }
  close(fds[1]);
  int acked = 0;
  char c;
  while (acked < 20 && read(fds[0], &c, 1) == 1) ++acked;
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  // Count acknowledgements that were already in the pipe before the kill.
  while (read(fds[0], &c, 1) == 1) ++acked;
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
  ASSERT_GE(acked, 20);

  UNL_ASSERT_OK_AND_ASSIGN(journal_, Journal::Open(path_));
  for (int i = 0; i < acked; ++i) {
    UNL_ASSERT_OK_AND_ASSIGN(JobRecord j, journal_->GetJobByRequest(absl::StrCat("kill-", i)));
    EXPECT_EQ(j.state, JobState::kQueued);
  }
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> unfinished, journal_->UnfinishedJobs());
  EXPECT_GE(static_cast<int>(unfinished.size()), acked);
  // The journal is still writable after the crash.
  UNL_ASSERT_OK(journal_->AcceptRequest(MakeJob("after-crash")).status());
}

TEST_F(JournalTest, ChildExitWithoutCleanupLeavesAcceptedJob) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The inherited journal_ connection must not be used by the child: open a
    // fresh one, accept, and _exit without closing anything (no destructors, no
    // checkpoint).
    auto j = Journal::Open(path_);
    if (!j.ok()) _exit(2);
    auto r = (*j)->AcceptRequest(MakeJob("child-req"));
    if (!r.ok()) _exit(3);
    auto running = (*j)->MarkRunning(r->job.job_id);
    _exit(running.ok() ? 0 : 4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);

  journal_.reset();
  UNL_ASSERT_OK_AND_ASSIGN(journal_, Journal::Open(path_));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord j, journal_->GetJobByRequest("child-req"));
  EXPECT_EQ(j.state, JobState::kRunning);
  EXPECT_EQ(j.attempts, 1);
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> unfinished, journal_->UnfinishedJobs());
  ASSERT_THAT(unfinished, SizeIs(1));
  EXPECT_EQ(unfinished[0].request_id, "child-req");
}

}  // namespace
}  // namespace unlearning::server
