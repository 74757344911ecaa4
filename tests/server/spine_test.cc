// The server's spine on a toy family and a fake method (tests/testing/toy_family.h): every path of
// an erasure request, the manifests and chains of every artifact kind, restart and recovery, in
// seconds and without the demo model.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/infra/manifest.h"
#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

class SpineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = tmp_.Join("toy-src");
    unlearning::testing::WriteToyModel(model_dir_, 1.0);
    StartServer();
  }
  void TearDown() override { StopServer(); }

  void StartServer() {
    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"toy", model_dir_}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    options.purge_grace_seconds = purge_grace_seconds_;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    models_ = v1::ModelService::NewStub(channel);
    erasure_ = v1::ErasureService::NewStub(channel);
  }
  void StopServer(absl::Duration grace = absl::Seconds(5)) {
    if (server_) server_->Shutdown(grace);
    server_.reset();
  }

  static v1::ErasureRequest Request(const std::string& id, const std::string& params_json) {
    v1::ErasureRequest r;
    r.set_request_id(id);
    r.set_model_id("toy");
    r.mutable_method()->mutable_named()->set_name("toy_scale");
    r.mutable_method()->mutable_named()->set_params_json(params_json);
    r.mutable_classes()->add_forget_classes(3);
    return r;
  }

  std::vector<v1::ErasureEvent> Stream(const std::vector<v1::ErasureRequest>& requests) {
    grpc::ClientContext ctx;
    auto stream = erasure_->Erase(&ctx);
    for (const auto& r : requests) {
      v1::ErasureStreamRequest m;
      *m.mutable_submit() = r;
      EXPECT_TRUE(stream->Write(m));
    }
    stream->WritesDone();
    std::vector<v1::ErasureEvent> events;
    v1::ErasureEvent e;
    while (stream->Read(&e)) events.push_back(e);
    EXPECT_TRUE(stream->Finish().ok());
    return events;
  }

  // The last event of the only request sent.
  v1::ErasureEvent Run(const v1::ErasureRequest& request) {
    auto events = Stream({request});
    EXPECT_FALSE(events.empty());
    return events.empty() ? v1::ErasureEvent() : events.back();
  }

  v1::ModelInfo Describe() {
    grpc::ClientContext ctx;
    v1::DescribeModelRequest req;
    req.set_model_id("toy");
    v1::ModelInfo info;
    EXPECT_TRUE(models_->DescribeModel(&ctx, req, &info).ok());
    return info;
  }

  // The "before" value of forget.value in a completed job's report: the served model's value.
  static double BeforeValue(const v1::ErasureEvent& e) {
    for (const auto& f : e.certificate().verification().figures()) {
      if (f.name() == "forget.value") return f.before();
    }
    return -1;
  }

  server::testing::TempDir tmp_;
  unlearning::testing::ToyRegistries registries_;
  std::string model_dir_;
  int64_t purge_grace_seconds_ = 0;  // ServerOptions::purge_grace_seconds of StartServer()
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
};

TEST_F(SpineTest, PublishesEveryArtifactKindWithManifestAndChainAndRestoresThem) {
  // Keep every version: this test rolls back to v4 after v5 is published (retention would have
  // purged v2..v4 by then).
  StopServer();
  purge_grace_seconds_ = -1;
  StartServer();
  // v2: full weights (1.0 -> 0.1).
  v1::ErasureEvent full = Run(Request("full", R"({"factor": 0.1})"));
  ASSERT_EQ(full.kind(), v1::ErasureEvent::KIND_COMPLETED) << full.message();
  EXPECT_EQ(full.certificate().artifact_kind(), v1::ARTIFACT_KIND_FULL_WEIGHTS);
  ASSERT_EQ(full.certificate().artifact_files_size(), 1);
  EXPECT_EQ(full.certificate().artifact_files(0).path(), "config.json");
  EXPECT_DOUBLE_EQ(BeforeValue(full), 1.0);

  // v3: an adapter on v2 (0.1 -> 0.05): only the adapter file is stored; the chain is [3, 2].
  v1::ErasureEvent adapter = Run(Request("adapter", R"({"factor": 0.5, "kind": "lora_adapter"})"));
  ASSERT_EQ(adapter.kind(), v1::ErasureEvent::KIND_COMPLETED) << adapter.message();
  const v1::Certificate& cert = adapter.certificate();
  EXPECT_EQ(cert.artifact_kind(), v1::ARTIFACT_KIND_LORA_ADAPTER);
  ASSERT_EQ(cert.artifact_files_size(), 1);
  EXPECT_EQ(cert.artifact_files(0).path(), "adapter.json");
  ASSERT_EQ(cert.chain_size(), 2);
  EXPECT_EQ(cert.chain(0).version(), 3);
  EXPECT_EQ(cert.chain(1).version(), 2);
  EXPECT_EQ(cert.chain(1).manifest_sha256(), full.certificate().manifest_after_sha256());
  EXPECT_EQ(cert.manifest_before_sha256(), full.certificate().manifest_after_sha256());
  EXPECT_THAT(cert.artifact_facts_json(), HasSubstr("delta"));
  EXPECT_DOUBLE_EQ(BeforeValue(adapter), 0.1);

  // v4: an assistant beside v3 (0.05 -> 0.025), v5: a one-step generator, which loads on the
  // version it was distilled from (v4, through its chain).
  v1::ErasureEvent assistant = Run(Request("assistant", R"({"factor": 0.5, "kind": "assistant"})"));
  ASSERT_EQ(assistant.kind(), v1::ErasureEvent::KIND_COMPLETED) << assistant.message();
  EXPECT_EQ(assistant.certificate().chain_size(), 3);
  v1::ErasureEvent generator =
      Run(Request("generator", R"({"factor": 0.5, "kind": "one_step_generator"})"));
  ASSERT_EQ(generator.kind(), v1::ErasureEvent::KIND_COMPLETED) << generator.message();
  EXPECT_DOUBLE_EQ(BeforeValue(generator), 0.025);
  EXPECT_EQ(generator.certificate().chain_size(), 4);

  v1::ModelInfo info = Describe();
  ASSERT_EQ(info.versions_size(), 5);
  EXPECT_EQ(info.versions(2).artifact_kind(), v1::ARTIFACT_KIND_LORA_ADAPTER);
  EXPECT_THAT(info.versions(2).chain(), ::testing::ElementsAre(3, 2));
  EXPECT_THAT(info.versions(3).chain(), ::testing::ElementsAre(4, 3, 2));
  EXPECT_EQ(info.versions(3).artifact_kind(), v1::ARTIFACT_KIND_ASSISTANT);
  EXPECT_EQ(info.versions(4).artifact_kind(), v1::ARTIFACT_KIND_ONE_STEP_GENERATOR);
  EXPECT_THAT(info.versions(4).chain(), ::testing::ElementsAre(5, 4, 3, 2));

  // Roll back to the assistant (v4): recorded as v6, which loads through v4's chain.
  {
    grpc::ClientContext ctx;
    v1::RollbackModelRequest req;
    req.set_model_id("toy");
    req.set_version(4);
    req.set_force(true);  // v4 precedes the completed erasure that published v5
    v1::ModelInfo rolled;
    ASSERT_TRUE(models_->RollbackModel(&ctx, req, &rolled).ok());
    EXPECT_EQ(rolled.serving_version(), 6);
    EXPECT_THAT(rolled.versions(5).chain(), ::testing::ElementsAre(6, 3, 2));
  }

  // A restart restores v6 through its chain: the next job starts from v4's value.
  StopServer();
  StartServer();
  v1::ErasureEvent after_restart = Run(Request("after-restart", R"({"factor": 0.5})"));
  ASSERT_EQ(after_restart.kind(), v1::ErasureEvent::KIND_COMPLETED) << after_restart.message();
  EXPECT_DOUBLE_EQ(BeforeValue(after_restart), 0.025);
}

TEST_F(SpineTest, ATamperedArtifactFileStopsTheRestartAndIsNamed) {
  ASSERT_EQ(Run(Request("adapter", R"({"factor": 0.5, "kind": "lora_adapter"})")).kind(),
            v1::ErasureEvent::KIND_COMPLETED);
  StopServer();
  const std::string file = tmp_.Join("data/models/toy/v2/adapter.json");
  ASSERT_TRUE(fs::exists(file));
  std::ofstream(file) << R"({"delta": 5.0})";
  ServerOptions options;
  options.auth.insecure = true;  // no token file: explicit (docs/security.md)
  options.listen = "127.0.0.1:0";
  options.metrics_listen = "";
  options.data_dir = tmp_.Join("data");
  options.methods = &registries_.methods;
  options.families = &registries_.families;
  EXPECT_THAT(UnlearningServer::Start(options).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("adapter.json does not match its manifest SHA-256")));
}

TEST_F(SpineTest, ResendIsIdempotentAndFailedVerificationPublishesNothing) {
  v1::ErasureEvent first = Run(Request("once", R"({"factor": 0.1})"));
  ASSERT_EQ(first.kind(), v1::ErasureEvent::KIND_COMPLETED);
  auto again = Stream({Request("once", R"({"factor": 0.1})")});
  ASSERT_FALSE(again.empty());
  EXPECT_TRUE(again.front().duplicate());
  EXPECT_EQ(again.front().job_id(), first.job_id());

  // factor 0.9 misses forget.value ratio <= 0.5: FAILED_VERIFICATION, serving version unchanged.
  v1::ErasureEvent weak = Run(Request("weak", R"({"factor": 0.9})"));
  EXPECT_EQ(weak.kind(), v1::ErasureEvent::KIND_FAILED_VERIFICATION);
  EXPECT_THAT(weak.message(), HasSubstr("forget.value ratio 0.900 <= 0.50: FAILED"));
  EXPECT_EQ(Describe().serving_version(), 2);

  // The same factor passes when the request's own threshold allows it.
  v1::ErasureRequest lenient = Request("lenient", R"({"factor": 0.9})");
  v1::Threshold* t = lenient.mutable_thresholds()->add_checks();
  t->set_figure("forget.value");
  t->set_comparison(v1::COMPARISON_RATIO_AT_MOST);
  t->set_bound(0.95);
  EXPECT_EQ(Run(lenient).kind(), v1::ErasureEvent::KIND_COMPLETED);
  EXPECT_EQ(Describe().serving_version(), 3);
}

TEST_F(SpineTest, EveryRejectionClassHasItsCodeAndStoresNothing) {
  struct Case {
    std::string name;
    v1::ErasureRequest request;
    int code;
    std::string message;
  };
  std::vector<Case> cases;
  {
    auto r = Request("text-payload", "");
    r.mutable_text()->add_forget_set()->set_question("q");
    r.mutable_text()->mutable_forget_set(0)->set_answer("a");
    cases.push_back({"payload of another family", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "causal_lm payload but the model is a image_classifier model"});
  }
  {
    auto r = Request("unknown-method", "");
    r.mutable_method()->mutable_named()->set_name("nope");
    cases.push_back({"unknown method", r, grpc::StatusCode::NOT_FOUND, "nope"});
  }
  {
    auto r = Request("text-method", "");
    r.mutable_method()->mutable_gradient_ascent();
    cases.push_back({"method of another family", r, grpc::StatusCode::FAILED_PRECONDITION,
                     "applies to causal_lm models"});
  }
  {
    auto r = Request("bad-param", R"({"bogus": 1})");
    cases.push_back({"unknown parameter", r, grpc::StatusCode::INVALID_ARGUMENT, "bogus"});
  }
  {
    auto r = Request("bad-json", "[1, 2]");
    cases.push_back({"params not an object", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "params_json must be a JSON object"});
  }
  {
    auto r = Request("bad-class", "");
    r.mutable_classes()->add_forget_classes(42);
    cases.push_back(
        {"class out of range", r, grpc::StatusCode::INVALID_ARGUMENT, "class 42 does not exist"});
  }
  {
    auto r = Request("dup-class", "");
    r.mutable_classes()->add_forget_classes(3);
    cases.push_back({"class twice", r, grpc::StatusCode::INVALID_ARGUMENT, "names class 3 twice"});
  }
  {
    auto r = Request("no-class", "");
    r.mutable_classes()->clear_forget_classes();
    cases.push_back({"no class", r, grpc::StatusCode::INVALID_ARGUMENT, "forget_classes is empty"});
  }
  {
    auto r = Request("bad-figure", "");
    v1::Threshold* t = r.mutable_thresholds()->add_checks();
    t->set_figure("forget.answer_probability");
    t->set_comparison(v1::COMPARISON_RATIO_AT_MOST);
    t->set_bound(0.5);
    cases.push_back({"figure of another family", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "not a figure of image_classifier models (known: forget.value"});
  }
  {
    auto r = Request("shorthand", "");
    r.mutable_thresholds()->set_max_mia_auc(0.9);
    cases.push_back({"text shorthand on a non-text model", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "use thresholds.checks"});
  }
  {
    auto r = Request("no-comparison", "");
    r.mutable_thresholds()->add_checks()->set_figure("forget.value");
    cases.push_back({"threshold without comparison", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "comparison is not set"});
  }
  {
    auto r = Request("unknown-model", "");
    r.set_model_id("nope");
    cases.push_back({"unknown model", r, grpc::StatusCode::NOT_FOUND, "nope"});
  }
  std::vector<v1::ErasureRequest> requests;
  for (const auto& c : cases) requests.push_back(c.request);
  auto events = Stream(requests);
  ASSERT_EQ(events.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    EXPECT_EQ(events[i].kind(), v1::ErasureEvent::KIND_REJECTED);
    EXPECT_EQ(events[i].status_code(), cases[i].code) << events[i].message();
    EXPECT_THAT(events[i].message(), HasSubstr(cases[i].message));
  }
  grpc::ClientContext ctx;
  v1::ListJobsRequest req;
  v1::ListJobsResponse resp;
  ASSERT_TRUE(erasure_->ListJobs(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.jobs_size(), 0);
  EXPECT_EQ(Describe().versions_size(), 1);
}

TEST_F(SpineTest, CancelStopsAJobAndAnInterruptedJobResumesAfterRestart) {
  // A slow job (200 x 20 ms) cancelled while it runs: CANCELLED, nothing published.
  grpc::ClientContext ctx;
  auto stream = erasure_->Erase(&ctx);
  v1::ErasureStreamRequest m;
  *m.mutable_submit() = Request("slow", R"({"steps": 200, "step_ms": 20})");
  ASSERT_TRUE(stream->Write(m));
  v1::ErasureEvent e;
  ASSERT_TRUE(stream->Read(&e));
  ASSERT_EQ(e.kind(), v1::ErasureEvent::KIND_ACCEPTED);
  const std::string job_id = e.job_id();
  while (stream->Read(&e) &&
         !(e.kind() == v1::ErasureEvent::KIND_PROGRESS && e.progress().step() > 0)) {
  }
  {
    grpc::ClientContext cancel_ctx;
    v1::CancelJobRequest req;
    req.set_job_id(job_id);
    v1::Job job;
    ASSERT_TRUE(erasure_->CancelJob(&cancel_ctx, req, &job).ok());
  }
  while (stream->Read(&e) && e.kind() == v1::ErasureEvent::KIND_PROGRESS) {
  }
  EXPECT_EQ(e.kind(), v1::ErasureEvent::KIND_CANCELLED);
  stream->WritesDone();
  while (stream->Read(&e)) {
  }
  (void)stream->Finish();
  EXPECT_EQ(Describe().serving_version(), 1);

  // A job interrupted by a shutdown is resumed by the next start and completes.
  {
    grpc::ClientContext ctx2;
    auto s2 = erasure_->Erase(&ctx2);
    v1::ErasureStreamRequest m2;
    *m2.mutable_submit() = Request("interrupted", R"({"steps": 100, "step_ms": 20})");
    ASSERT_TRUE(s2->Write(m2));
    ASSERT_TRUE(s2->Read(&e));
    ASSERT_EQ(e.kind(), v1::ErasureEvent::KIND_ACCEPTED);
    while (s2->Read(&e) &&
           !(e.kind() == v1::ErasureEvent::KIND_PROGRESS && e.progress().step() > 0)) {
    }
    ctx2.TryCancel();
  }
  StopServer(absl::ZeroDuration());
  StartServer();
  EXPECT_EQ(server_->recovered_jobs(), 1);
  grpc::ClientContext watch_ctx;
  auto watch = erasure_->Erase(&watch_ctx);
  v1::ErasureStreamRequest w;
  *w.mutable_submit() = Request("interrupted", R"({"steps": 100, "step_ms": 20})");
  ASSERT_TRUE(watch->Write(w));
  watch->WritesDone();
  v1::ErasureEvent last;
  while (watch->Read(&e)) last = e;
  (void)watch->Finish();
  EXPECT_EQ(last.kind(), v1::ErasureEvent::KIND_COMPLETED) << last.message();
  EXPECT_EQ(Describe().serving_version(), 2);
}

}  // namespace
}  // namespace unlearning::server
