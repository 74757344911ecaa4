// Retention on the toy family (tests/testing/toy_family.h): versions older than a completed
// erasure are purged (at once by default, after a grace period that survives a restart, never
// with a negative grace), the versions a kept version loads through stay, purged versions show
// as purged, rollback across an erasure needs force and is then a record of the certificate
// chain, and a finished job's payload leaves the journal.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/infra/journal.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = tmp_.Join("toy-src");
    unlearning::testing::WriteToyModel(model_dir_, 1.0);
  }
  void TearDown() override { StopServer(); }

  void StartServer(int64_t grace_seconds) {
    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"toy", model_dir_}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    options.purge_grace_seconds = grace_seconds;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    models_ = v1::ModelService::NewStub(channel);
    erasure_ = v1::ErasureService::NewStub(channel);
  }
  void StopServer() {
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
  }

  // Runs one erasure to its end; returns the terminal event.
  v1::ErasureEvent Run(const std::string& id, const std::string& params_json) {
    v1::ErasureRequest r;
    r.set_request_id(id);
    r.set_model_id("toy");
    r.mutable_method()->mutable_named()->set_name("toy_scale");
    r.mutable_method()->mutable_named()->set_params_json(params_json);
    r.mutable_classes()->add_forget_classes(3);
    grpc::ClientContext ctx;
    auto stream = erasure_->Erase(&ctx);
    v1::ErasureStreamRequest m;
    *m.mutable_submit() = r;
    EXPECT_TRUE(stream->Write(m));
    stream->WritesDone();
    v1::ErasureEvent e, last;
    while (stream->Read(&e)) last = e;
    EXPECT_TRUE(stream->Finish().ok());
    return last;
  }

  v1::ModelInfo Describe() {
    grpc::ClientContext ctx;
    v1::DescribeModelRequest req;
    req.set_model_id("toy");
    v1::ModelInfo info;
    EXPECT_TRUE(models_->DescribeModel(&ctx, req, &info).ok());
    return info;
  }

  grpc::Status Rollback(int64_t version, bool force, v1::ModelInfo* info) {
    grpc::ClientContext ctx;
    v1::RollbackModelRequest req;
    req.set_model_id("toy");
    req.set_version(version);
    req.set_force(force);
    return models_->RollbackModel(&ctx, req, info);
  }

  fs::path VersionDir(int64_t version) {
    return fs::path(tmp_.Join("data")) / "models" / "toy" / ("v" + std::to_string(version));
  }

  server::testing::TempDir tmp_;
  unlearning::testing::ToyRegistries registries_;
  std::string model_dir_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
};

TEST_F(RetentionTest, ByDefaultThePreErasureVersionIsPurgedOncePublished) {
  StartServer(/*grace_seconds=*/0);
  ASSERT_TRUE(fs::exists(VersionDir(1) / "config.json"));
  v1::ErasureEvent done = Run("e1", R"({"factor": 0.1})");
  ASSERT_EQ(done.kind(), v1::ErasureEvent::KIND_COMPLETED) << done.message();

  EXPECT_FALSE(fs::exists(VersionDir(1)));
  EXPECT_TRUE(fs::exists(VersionDir(2) / "config.json"));
  // The source directory the model was loaded from (probes, reference) is not the store's.
  EXPECT_TRUE(fs::exists(fs::path(model_dir_) / "config.json"));
  v1::ModelInfo info = Describe();
  ASSERT_EQ(info.versions_size(), 2);
  EXPECT_TRUE(info.versions(0).purged());
  EXPECT_GT(info.versions(0).purged_unix_ms(), 0);
  EXPECT_EQ(info.versions(0).purged_by_job_id(), done.job_id());
  EXPECT_EQ(info.versions(0).note(), "loaded");  // lineage stays
  EXPECT_FALSE(info.versions(1).purged());

  // A purged version cannot come back, not even by force.
  v1::ModelInfo rolled;
  for (bool force : {false, true}) {
    grpc::Status s = Rollback(1, force, &rolled);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << force;
    EXPECT_THAT(s.error_message(), HasSubstr("was purged at"));
    EXPECT_THAT(s.error_message(), HasSubstr(done.job_id()));
  }
  EXPECT_EQ(Describe().serving_version(), 2);

  // The job still reports its counts; its journaled payload is the redacted request.
  grpc::ClientContext ctx;
  v1::GetJobRequest get;
  get.set_job_id(done.job_id());
  v1::Job job;
  ASSERT_TRUE(erasure_->GetJob(&ctx, get, &job).ok());
  EXPECT_EQ(job.forget_examples(), 1);
  StopServer();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Journal> journal,
                           Journal::Open(tmp_.Join("data/journal.sqlite")));
  UNL_ASSERT_OK_AND_ASSIGN(JobRecord record, journal->GetJob(done.job_id()));
  EXPECT_GT(record.payload_purged_unix_ms, 0);
}

TEST_F(RetentionTest, VersionsAKeptVersionLoadsThroughStay) {
  StartServer(/*grace_seconds=*/0);
  ASSERT_EQ(Run("full", R"({"factor": 0.1})").kind(), v1::ErasureEvent::KIND_COMPLETED);
  ASSERT_EQ(Run("adapter", R"({"factor": 0.5, "kind": "lora_adapter"})").kind(),
            v1::ErasureEvent::KIND_COMPLETED);
  // v3 is an adapter on v2: v2 precedes an erasure but the serving version needs it.
  v1::ModelInfo info = Describe();
  ASSERT_EQ(info.versions_size(), 3);
  EXPECT_TRUE(info.versions(0).purged());
  EXPECT_FALSE(info.versions(1).purged());
  EXPECT_TRUE(fs::exists(VersionDir(2)));
  // A self-contained version on top: nothing needs v2 and v3 any more.
  ASSERT_EQ(Run("full-again", R"({"factor": 0.5})").kind(), v1::ErasureEvent::KIND_COMPLETED);
  info = Describe();
  ASSERT_EQ(info.versions_size(), 4);
  EXPECT_TRUE(info.versions(1).purged());
  EXPECT_TRUE(info.versions(2).purged());
  EXPECT_FALSE(info.versions(3).purged());
  EXPECT_FALSE(fs::exists(VersionDir(2)));
  EXPECT_FALSE(fs::exists(VersionDir(3)));
  // A restart loads the serving version and purges nothing else.
  StopServer();
  StartServer(0);
  EXPECT_EQ(Describe().serving_version(), 4);
}

TEST_F(RetentionTest, AGracePeriodSurvivesARestart) {
  StartServer(/*grace_seconds=*/2);
  const auto published = std::chrono::steady_clock::now();
  v1::ErasureEvent done = Run("e1", R"({"factor": 0.1})");
  ASSERT_EQ(done.kind(), v1::ErasureEvent::KIND_COMPLETED) << done.message();
  if (std::chrono::steady_clock::now() - published < std::chrono::seconds(2)) {
    EXPECT_TRUE(fs::exists(VersionDir(1) / "config.json")) << "purged before its grace period";
    EXPECT_FALSE(Describe().versions(0).purged());
  }
  StopServer();
  std::this_thread::sleep_for(std::chrono::milliseconds(2300));
  EXPECT_TRUE(fs::exists(VersionDir(1) / "config.json")) << "nothing runs while the server is down";
  StartServer(2);  // the startup sweep purges what fell due meanwhile
  EXPECT_FALSE(fs::exists(VersionDir(1)));
  v1::ModelInfo info = Describe();
  EXPECT_TRUE(info.versions(0).purged());
  EXPECT_EQ(info.versions(0).purged_by_job_id(), done.job_id());
}

// A crash between the store and the journal commit of a publish leaves a complete v<N> that no
// journal row lists (the crash campaign's "unlisted directory"). If the requeued job does not
// publish again (cancelled, failed), nothing would replace it: the restart removes it, and the
// next erasure publishes that number normally.
TEST_F(RetentionTest, AVersionStoredButNeverJournaledIsRemovedAtStartup) {
  StartServer(/*grace_seconds=*/-1);
  ASSERT_EQ(Run("e1", R"({"factor": 0.1})").kind(), v1::ErasureEvent::KIND_COMPLETED);
  StopServer();
  fs::copy(VersionDir(2), VersionDir(3), fs::copy_options::recursive);  // the crash's leftover
  StartServer(-1);
  EXPECT_FALSE(fs::exists(VersionDir(3))) << "an uncommitted version survived the restart";
  EXPECT_TRUE(fs::exists(VersionDir(1) / "manifest.json"));
  EXPECT_TRUE(fs::exists(VersionDir(2) / "manifest.json"));
  EXPECT_EQ(Describe().versions_size(), 2);
  ASSERT_EQ(Run("e2", R"({"factor": 0.5})").kind(), v1::ErasureEvent::KIND_COMPLETED);
  EXPECT_TRUE(fs::exists(VersionDir(3) / "manifest.json"));
  EXPECT_EQ(Describe().versions_size(), 3);
}

TEST_F(RetentionTest, APeriodicSweepPurgesOnceTheGracePeriodPasses) {
  StartServer(/*grace_seconds=*/1);
  ASSERT_EQ(Run("e1", R"({"factor": 0.1})").kind(), v1::ErasureEvent::KIND_COMPLETED);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fs::exists(VersionDir(1)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(fs::exists(VersionDir(1)));
  EXPECT_TRUE(Describe().versions(0).purged());
}

TEST_F(RetentionTest, RollbackAcrossAnErasureNeedsForceAndIsRecordedInTheChain) {
  StartServer(/*grace_seconds=*/-1);  // keep every version: the rollback target must exist
  v1::ErasureEvent done = Run("e1", R"({"factor": 0.1})");
  ASSERT_EQ(done.kind(), v1::ErasureEvent::KIND_COMPLETED) << done.message();
  EXPECT_TRUE(fs::exists(VersionDir(1) / "config.json"));
  EXPECT_FALSE(Describe().versions(0).purged());

  v1::ModelInfo info;
  grpc::Status refused = Rollback(1, /*force=*/false, &info);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr(done.job_id()));
  EXPECT_THAT(refused.error_message(), HasSubstr("request e1"));
  EXPECT_THAT(refused.error_message(), HasSubstr("force"));
  EXPECT_EQ(Describe().serving_version(), 2);
  EXPECT_EQ(Describe().versions_size(), 2) << "a refused rollback records nothing";

  grpc::Status forced = Rollback(1, /*force=*/true, &info);
  ASSERT_TRUE(forced.ok()) << forced.error_message();
  EXPECT_EQ(info.serving_version(), 3);
  ASSERT_EQ(info.versions_size(), 3);
  const v1::ModelVersion& v3 = info.versions(2);
  EXPECT_THAT(v3.undoes_job_ids(), ElementsAre(done.job_id()));
  EXPECT_THAT(v3.undoes_request_ids(), ElementsAre("e1"));
  EXPECT_EQ(v3.certificate_id(), "rollback-toy-v3");
  EXPECT_EQ(v3.note(), "forced rollback to 1");

  // Rolling forward to the erased version needs no force.
  ASSERT_TRUE(Rollback(2, /*force=*/false, &info).ok());
  EXPECT_EQ(info.serving_version(), 4);

  // The chain: the erasure's certificate, then the forced rollback's record naming it.
  StopServer();
  UNL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Journal> journal,
                           Journal::Open(tmp_.Join("data/journal.sqlite")));
  UNL_ASSERT_OK_AND_ASSIGN(std::vector<CertificateRecord> chain, journal->ListCertificates("toy"));
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0].job_id, done.job_id());
  EXPECT_EQ(chain[1].kind, kCertificateKindForcedRollback);
  EXPECT_EQ(chain[1].certificate_id, "rollback-toy-v3");
  EXPECT_EQ(chain[1].previous_sha256, chain[0].sha256);
  EXPECT_THAT(chain[1].json, HasSubstr(done.job_id()));
  EXPECT_THAT(chain[1].json, HasSubstr("forced_rollback"));
}

}  // namespace
}  // namespace unlearning::server
