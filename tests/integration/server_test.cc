// The real server in-process on 127.0.0.1:0 with the demo model, driven over real gRPC.
#include "server/server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <grpcpp/grpcpp.h>

#include "core/data/text_example.h"
#include "tests/testing/status_matchers.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// ULD's parameters on the demo model (from the sweep recorded in docs/methods/uld.md): an assistant
// that memorises the forget answers (60 epochs at lr 5e-3, D′_r = the retain set only) subtracted
// at α = 1.25 (the paper's 0.75 barely moves this over-confident demo model: 74% of before).
constexpr char kUldParams[] =
    R"({"epochs": 60, "learning_rate": 5e-3, "num_layers": 1, "perturbed": false, "alpha": 1.25,
        "seed": 3})";

std::string DemoDir() {
  const char* env = std::getenv("UNL_DEMO_DIR");
  return env != nullptr && *env != '\0' ? env : std::string(UNL_SOURCE_DIR) + "/.cache/demo";
}

std::vector<core::TextExample> ReadSplit(const std::string& name) {
  auto examples = core::ReadJsonl(DemoDir() + "/data/" + name + ".jsonl");
  EXPECT_TRUE(examples.ok()) << examples.status()
                             << " (the demo model is built by tools/build_demo.sh; run ctest so "
                                "the demo_model fixture builds it)";
  return examples.ok() ? *examples : std::vector<core::TextExample>{};
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(DemoDir() + "/model/config.json"))
        << "demo model missing in " << DemoDir() << ": run tools/build_demo.sh";
    data_dir_ = fs::temp_directory_path() /
                ("unl-it-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(data_dir_);
    StartServer();
    forget_ = ReadSplit("forget");
    retain_ = ReadSplit("retain");
    holdout_ = ReadSplit("holdout");
    ASSERT_GE(forget_.size(), 4u);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(data_dir_);
  }

  void StartServer() {
    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    options.data_dir = data_dir_.string();
    options.models = {{"demo", DemoDir() + "/model"}};
    options.limits.max_forget_examples = 64;
    options.max_message_bytes = 1 << 20;
    // Keep every version (retention would purge version 1 once the erasure is published): the
    // test queries version 1 after the erasure and rolls back to it.
    options.purge_grace_seconds = -1;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    models_ = v1::ModelService::NewStub(channel);
    erasure_ = v1::ErasureService::NewStub(channel);
    inference_ = v1::InferenceService::NewStub(channel);
  }

  v1::ErasureRequest FlatRequest(const std::string& id, int n) {
    v1::ErasureRequest r;
    r.set_request_id(id);
    r.set_model_id("demo");
    // These lifecycle tests need a run that clearly moves the model in a few steps: FLAT at a
    // constant lr 1e-4 (its defaults before FLAT was tuned not to collapse the demo model).
    v1::FlatParams* flat = r.mutable_method()->mutable_flat();
    flat->mutable_training()->set_learning_rate(1e-4);
    flat->set_lr_schedule(v1::FlatParams::LR_SCHEDULE_CONSTANT);
    r.mutable_text();  // the text payload, even when empty
    for (int i = 0; i < n && i < static_cast<int>(forget_.size()); ++i) {
      v1::TextExample* e = r.mutable_text()->add_forget_set();
      e->set_question(forget_[i].question);
      e->set_answer(forget_[i].answer);
    }
    for (size_t i = 0; i < retain_.size() && i < 40; ++i) {
      v1::TextExample* e = r.mutable_text()->add_retain_set();
      e->set_question(retain_[i].question);
      e->set_answer(retain_[i].answer);
    }
    r.set_compliance_reference("TICKET-42 subject=alice");
    // These tests are about the request lifecycle, not forget quality: the three-check policy
    // (forget ratio <= 0.5, retain ratio >= 0.5) that FLAT at these settings meets on the demo.
    r.mutable_thresholds()->set_max_forget_probability_ratio(0.5);
    r.mutable_thresholds()->set_min_retain_probability_ratio(0.5);
    return r;
  }

  // A ULD request (named method) on forget examples [first, first + n), with their paraphrases and
  // perturbed answers (ULD's augmented sets) and 64 retain examples.
  v1::ErasureRequest UldRequest(const std::string& id, int first, int n) {
    v1::ErasureRequest r;
    r.set_request_id(id);
    r.set_model_id("demo");
    r.mutable_method()->mutable_named()->set_name("uld");
    r.mutable_method()->mutable_named()->set_params_json(kUldParams);
    for (int i = first; i < first + n && i < static_cast<int>(forget_.size()); ++i) {
      v1::TextExample* e = r.mutable_text()->add_forget_set();
      e->set_question(forget_[i].question);
      e->set_answer(forget_[i].answer);
      for (const auto& q : forget_[i].paraphrased_questions) e->add_paraphrased_questions(q);
      for (const auto& a : forget_[i].perturbed_answers) e->add_perturbed_answers(a);
    }
    for (size_t i = 0; i < retain_.size() && i < 64; ++i) {
      v1::TextExample* e = r.mutable_text()->add_retain_set();
      e->set_question(retain_[i].question);
      e->set_answer(retain_[i].answer);
    }
    // Published whatever the default checks say: this test states its own bars below.
    r.mutable_thresholds()->set_max_forget_probability_ratio(1.0);
    r.mutable_thresholds()->set_min_retain_probability_ratio(0.0);
    return r;
  }

  // Mean answer probability (per-token geometric mean, Score's mean_token_probability) of
  // `examples` at `version` (0 = serving).
  double MeanAnswerProbability(const std::vector<core::TextExample>& examples, int64_t version) {
    double sum = 0.0;
    for (const auto& e : examples) sum += AnswerProbability(e, version);
    return examples.empty() ? 0.0 : sum / static_cast<double>(examples.size());
  }

  // Sends `requests` on one stream, half-closes, and returns every event until the server ends it.
  std::vector<v1::ErasureEvent> Stream(const std::vector<v1::ErasureRequest>& requests,
                                       grpc::Status* status = nullptr) {
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
    grpc::Status s = stream->Finish();
    if (status != nullptr) *status = s;
    return events;
  }

  int64_t ServingVersion() {
    grpc::ClientContext ctx;
    v1::DescribeModelRequest req;
    req.set_model_id("demo");
    v1::ModelInfo info;
    EXPECT_TRUE(models_->DescribeModel(&ctx, req, &info).ok());
    return info.serving_version();
  }

  int JobCount() {
    grpc::ClientContext ctx;
    v1::ListJobsRequest req;
    req.set_page_size(1000);
    v1::ListJobsResponse resp;
    EXPECT_TRUE(erasure_->ListJobs(&ctx, req, &resp).ok());
    return resp.jobs_size();
  }

  // Score of `e`'s answer (QA layout) at `version`, with optional per-query ULD settings.
  grpc::Status ScoreAnswer(const core::TextExample& e, int64_t version, v1::ScoreResponse* resp,
                           std::optional<double> uld_alpha = std::nullopt,
                           std::optional<double> uld_filter_rate = std::nullopt) {
    grpc::ClientContext ctx;
    v1::ScoreRequest req;
    req.set_model_id("demo");
    req.set_version(version);
    req.set_prompt(e.question);
    req.set_qa_format(true);
    req.set_continuation(e.answer);
    if (uld_alpha) req.mutable_logit_difference()->set_alpha(*uld_alpha);
    if (uld_filter_rate) req.mutable_logit_difference()->set_filter_rate(*uld_filter_rate);
    return inference_->Score(&ctx, req, resp);
  }

  double AnswerProbability(const core::TextExample& e, int64_t version) {
    v1::ScoreResponse resp;
    grpc::Status s = ScoreAnswer(e, version, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.version(), version == 0 ? ServingVersion() : version);
    return resp.mean_token_probability();
  }

  fs::path data_dir_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
  std::vector<core::TextExample> forget_, retain_, holdout_;
};

TEST_F(ServerTest, EraseStreamsAcceptedProgressCompletedAndServesTheNewVersion) {
  const double before = AnswerProbability(forget_[0], 0);
  ASSERT_EQ(ServingVersion(), 1);

  grpc::Status status;
  auto events = Stream({FlatRequest("it-erase-1", 8)}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front().kind(), v1::ErasureEvent::KIND_ACCEPTED);
  EXPECT_FALSE(events.front().duplicate());
  const std::string job_id = events.front().job_id();
  int progress = 0;
  for (const auto& e : events) {
    if (e.kind() == v1::ErasureEvent::KIND_PROGRESS && e.progress().total_steps() > 0) ++progress;
  }
  EXPECT_GE(progress, 1);
  const v1::ErasureEvent& last = events.back();
  ASSERT_EQ(last.kind(), v1::ErasureEvent::KIND_COMPLETED) << last.message();
  EXPECT_EQ(last.job_id(), job_id);

  // The certificate names the request, the versions, the hashes, and the compliance reference.
  const v1::Certificate& cert = last.certificate();
  EXPECT_EQ(cert.request_id(), "it-erase-1");
  EXPECT_EQ(cert.compliance_reference(), "TICKET-42 subject=alice");
  EXPECT_EQ(cert.version_before(), 1);
  EXPECT_EQ(cert.version_after(), 2);
  EXPECT_EQ(cert.forget_set_sha256().size(), 64u);
  EXPECT_NE(cert.manifest_before_sha256(), cert.manifest_after_sha256());
  EXPECT_EQ(cert.certificate_sha256().size(), 64u);
  EXPECT_TRUE(cert.verification().passed());
  EXPECT_EQ(cert.previous_certificate_sha256(), "");
  // It hashes every file of the full-weights artifact, and its chain is the new version alone.
  EXPECT_EQ(cert.artifact_kind(), v1::ARTIFACT_KIND_FULL_WEIGHTS);
  std::set<std::string> paths;
  for (const auto& f : cert.artifact_files()) {
    paths.insert(f.path());
    EXPECT_EQ(f.sha256().size(), 64u) << f.path();
  }
  EXPECT_TRUE(paths.count("model.safetensors"));
  EXPECT_TRUE(paths.count("config.json"));
  EXPECT_FALSE(paths.count("manifest.json"));
  ASSERT_EQ(cert.chain_size(), 1);
  EXPECT_EQ(cert.chain(0).version(), 2);
  EXPECT_EQ(cert.chain(0).manifest_sha256(), cert.manifest_after_sha256());

  // Queries now answer from version 2, where the forgotten answer is much less likely; version 1
  // still answers when named.
  EXPECT_EQ(ServingVersion(), 2);
  const double after = AnswerProbability(forget_[0], 0);
  EXPECT_LT(after, 0.5 * before) << "before " << before << " after " << after;
  EXPECT_NEAR(AnswerProbability(forget_[0], 1), before, 1e-6);

  {
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_model_id("demo");
    req.set_prompt(forget_[0].question);
    req.set_qa_format(true);
    req.set_max_tokens(16);
    auto reader = inference_->Generate(&ctx, req);
    v1::GenerateResponse chunk;
    int chunks = 0;
    std::string finish;
    while (reader->Read(&chunk)) {
      ++chunks;
      EXPECT_EQ(chunk.version(), 2);
      if (!chunk.finish_reason().empty()) finish = chunk.finish_reason();
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_GE(chunks, 1);
    EXPECT_FALSE(finish.empty());
  }

  // A resent request id returns the same job, already completed, without running it again.
  auto again = Stream({FlatRequest("it-erase-1", 8)});
  ASSERT_GE(again.size(), 2u);
  EXPECT_EQ(again.front().kind(), v1::ErasureEvent::KIND_ACCEPTED);
  EXPECT_TRUE(again.front().duplicate());
  EXPECT_EQ(again.front().job_id(), job_id);
  EXPECT_EQ(again.back().kind(), v1::ErasureEvent::KIND_COMPLETED);
  EXPECT_EQ(again.back().certificate().certificate_sha256(), cert.certificate_sha256());
  EXPECT_EQ(ServingVersion(), 2);
  EXPECT_EQ(JobCount(), 1);

  // The same id with different content is refused.
  auto reused = Stream({FlatRequest("it-erase-1", 4)});
  ASSERT_EQ(reused.size(), 1u);
  EXPECT_EQ(reused[0].kind(), v1::ErasureEvent::KIND_REJECTED);
  EXPECT_EQ(reused[0].status_code(), grpc::StatusCode::ALREADY_EXISTS);

  // Unary catch-up: job and certificate.
  {
    grpc::ClientContext ctx;
    v1::GetCertificateRequest req;
    req.set_request_id("it-erase-1");
    v1::Certificate got;
    ASSERT_TRUE(erasure_->GetCertificate(&ctx, req, &got).ok());
    EXPECT_EQ(got.certificate_sha256(), cert.certificate_sha256());
  }

  // The metrics endpoint carries the model's verification gauge.
  const std::string exposition = server_->metrics().Serialize();
  EXPECT_THAT(exposition, HasSubstr("unlearning_verification_figure{"));
  EXPECT_THAT(exposition, HasSubstr("forget.answer_probability"));
  EXPECT_THAT(exposition, ::testing::Not(HasSubstr("TICKET-42")));

  // Restart on the same data dir: version 2 is served again, the job is still there.
  server_.reset();
  StartServer();
  EXPECT_EQ(ServingVersion(), 2);
  EXPECT_EQ(JobCount(), 1);
  EXPECT_NEAR(AnswerProbability(forget_[0], 0), after, 1e-6);

  // Rollback to version 1 is recorded as version 3 with version 1's weights.
  {
    grpc::ClientContext ctx;
    v1::RollbackModelRequest req;
    req.set_model_id("demo");
    req.set_version(1);
    // Version 1 precedes the completed erasure: the rollback undoes it and must be forced.
    req.set_force(true);
    v1::ModelInfo info;
    ASSERT_TRUE(models_->RollbackModel(&ctx, req, &info).ok());
    EXPECT_EQ(info.serving_version(), 3);
    ASSERT_EQ(info.versions_size(), 3);
    EXPECT_EQ(info.versions(2).parent_version(), 2);
    EXPECT_EQ(info.versions(2).manifest_sha256(), info.versions(0).manifest_sha256());
    EXPECT_EQ(info.versions(1).artifact_kind(), v1::ARTIFACT_KIND_FULL_WEIGHTS);
    ASSERT_EQ(info.versions(2).chain_size(), 1);
    EXPECT_EQ(info.versions(2).chain(0), 3);
    EXPECT_NEAR(AnswerProbability(forget_[0], 0), before, 1e-6);
  }
}

// ULD through the service: the published version is an assistant beside version 1 (no copy of the
// target), served as the composite target − α·assistant. Measured over gRPC, the forget set's
// answer probability falls to <= 25% of before while the retain and holdout sets stay within 1%
// (ULD's "no utility loss"). A second request stacks a second assistant and the first request's
// data stays forgotten; a restart reloads the chain from disk and serves the same numbers.
TEST_F(ServerTest, UldPublishesAnAssistantServedAsTheCompositeAndRequestsStack) {
  const std::vector<core::TextExample> first(forget_.begin(), forget_.begin() + 16);
  const std::vector<core::TextExample> second(forget_.begin() + 16, forget_.end());
  const std::vector<core::TextExample> retain(retain_.begin() + 64, retain_.begin() + 128);
  // Mean answer probabilities of `forget`, the retain probes and the holdout people at `version`.
  struct Figures {
    double forget, retain, holdout;
  };
  auto measure = [&](const std::vector<core::TextExample>& forget, int64_t version) {
    return Figures{MeanAnswerProbability(forget, version), MeanAnswerProbability(retain, version),
                   MeanAnswerProbability(holdout_, version)};
  };
  auto print = [](const char* what, const Figures& before, const Figures& after) {
    std::printf("%s: forget %.4f -> %.4f (%.1f%%), retain %.2f%%, holdout %.2f%% of before\n", what,
                before.forget, after.forget, 100 * after.forget / before.forget,
                100 * after.retain / before.retain, 100 * after.holdout / before.holdout);
  };
  const Figures before = measure(first, 1);

  grpc::Status status;
  auto events = Stream({UldRequest("it-uld-1", 0, 16)}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(events.back().kind(), v1::ErasureEvent::KIND_COMPLETED) << events.back().message();
  const v1::Certificate& cert = events.back().certificate();
  EXPECT_EQ(cert.artifact_kind(), v1::ARTIFACT_KIND_ASSISTANT);
  for (const auto& f : cert.artifact_files()) {
    EXPECT_NE(f.path(), "model.safetensors") << "the target's weights must not be copied";
  }
  ASSERT_EQ(ServingVersion(), 2);

  const Figures after = measure(first, 0);
  print("uld over gRPC", before, after);
  EXPECT_LE(after.forget, 0.25 * before.forget);
  EXPECT_NEAR(after.retain / before.retain, 1.0, 0.01);
  EXPECT_NEAR(after.holdout / before.holdout, 1.0, 0.01);

  // Per-query logit_difference settings: a stronger subtraction (α 2.5 > the stored 1.25) forgets
  // more; a weaker one (α 0.5) would bring the data back and is refused, as is a higher filter
  // rate; on a version that is not a composite the settings are FAILED_PRECONDITION.
  {
    double stronger_sum = 0.0;
    v1::ScoreResponse resp;
    for (const auto& e : first) {
      const grpc::Status s = ScoreAnswer(e, 2, &resp, 2.5);
      ASSERT_TRUE(s.ok()) << s.error_message();
      stronger_sum += resp.mean_token_probability();
    }
    const double stronger = stronger_sum / static_cast<double>(first.size());
    std::printf("uld at alpha 2.5 for the query: forget %.4f (stored alpha: %.4f)\n", stronger,
                after.forget);
    EXPECT_LT(stronger, after.forget);
    grpc::Status s = ScoreAnswer(first[0], 2, &resp, 0.5);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("alpha must be in [1.25, 4]"));
    s = ScoreAnswer(first[0], 2, &resp, std::nullopt, 0.5);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("filter_rate must be in"));
    s = ScoreAnswer(first[0], 1, &resp, 2.0);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    // Generate accepts the same settings.
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_model_id("demo");
    req.set_prompt(first[0].question);
    req.set_qa_format(true);
    req.set_max_tokens(8);
    req.mutable_logit_difference()->set_alpha(2.0);
    auto reader = inference_->Generate(&ctx, req);
    v1::GenerateResponse chunk;
    int chunks = 0;
    while (reader->Read(&chunk)) ++chunks;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_GE(chunks, 1);
  }

  // A second request stacks: its data is forgotten too, the first request's stays forgotten.
  const double second_before = MeanAnswerProbability(second, 1);
  events = Stream({UldRequest("it-uld-2", 16, 16)}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(events.back().kind(), v1::ErasureEvent::KIND_COMPLETED) << events.back().message();
  ASSERT_EQ(ServingVersion(), 3);
  const double second_after = MeanAnswerProbability(second, 0);
  const Figures after_both = measure(first, 0);
  print("uld stacked, first request", before, after_both);
  std::printf("uld stacked, second request: %.4f -> %.4f\n", second_before, second_after);
  EXPECT_LE(second_after, 0.25 * second_before);
  EXPECT_LE(after_both.forget, 0.25 * before.forget);
  {
    grpc::ClientContext ctx;
    v1::DescribeModelRequest req;
    req.set_model_id("demo");
    v1::ModelInfo info;
    ASSERT_TRUE(models_->DescribeModel(&ctx, req, &info).ok());
    ASSERT_EQ(info.versions_size(), 3);
    EXPECT_THAT(info.versions(2).chain(), ::testing::ElementsAre(3, 2, 1));
  }

  // A full-weights method on the composite is refused at submit (REJECTED, FAILED_PRECONDITION):
  // nothing is accepted, run or stored.
  {
    v1::ErasureRequest flat = FlatRequest("it-uld-flat", 4);
    events = Stream({flat}, &status);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind(), v1::ErasureEvent::KIND_REJECTED) << events.back().message();
    EXPECT_EQ(events.back().status_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(events.back().message(), HasSubstr("uld"));
    EXPECT_EQ(ServingVersion(), 3);
  }

  // Restart: the chain (target, assistant, assistant) loads from disk and answers the same.
  server_.reset();
  StartServer();
  EXPECT_EQ(ServingVersion(), 3);
  EXPECT_NEAR(MeanAnswerProbability(first, 0), after_both.forget, 1e-5);
}

TEST_F(ServerTest, BadRequestsAreRejectedWithTheRightCodeAndChangeNothing) {
  struct Case {
    std::string name;
    v1::ErasureRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  {
    auto r = FlatRequest("bad-model", 2);
    r.set_model_id("nope");
    cases.push_back({"unknown model", r, grpc::StatusCode::NOT_FOUND, "nope"});
  }
  {
    auto r = FlatRequest("bad-method", 2);
    r.clear_method();
    cases.push_back({"no method", r, grpc::StatusCode::INVALID_ARGUMENT, "method"});
  }
  {
    auto r = FlatRequest("bad-empty", 0);
    cases.push_back({"empty forget set", r, grpc::StatusCode::INVALID_ARGUMENT, "forget_set"});
  }
  {
    auto r = FlatRequest("bad-lr", 2);
    r.mutable_method()->mutable_flat()->mutable_training()->set_learning_rate(5.0);
    cases.push_back(
        {"learning rate out of range", r, grpc::StatusCode::INVALID_ARGUMENT, "learning_rate"});
  }
  {
    auto r = FlatRequest("bad-epochs", 2);
    r.mutable_method()->mutable_flat()->mutable_training()->set_epochs(0);
    cases.push_back({"epochs out of range", r, grpc::StatusCode::INVALID_ARGUMENT, "epochs"});
  }
  {
    auto r = FlatRequest("bad-threshold", 2);
    r.mutable_thresholds()->set_max_forget_probability_ratio(1.5);
    cases.push_back({"threshold out of range", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "max_forget_probability_ratio"});
  }
  {
    auto r = FlatRequest("bad-too-many", 2);
    for (int i = 0; i < 70; ++i) *r.mutable_text()->add_forget_set() = r.text().forget_set(0);
    cases.push_back({"forget set over the limit", r, grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "max-forget-examples"});
  }
  {
    auto r = FlatRequest("bad utf8 id!", 2);
    cases.push_back({"bad request id", r, grpc::StatusCode::INVALID_ARGUMENT, "request_id"});
  }
  {
    auto r = FlatRequest("bad-gd", 2);
    r.mutable_method()->mutable_gradient_difference();
    r.mutable_text()->clear_retain_set();
    cases.push_back({"gradient difference without retain set", r,
                     grpc::StatusCode::INVALID_ARGUMENT, "retain"});
  }
  {
    auto r = FlatRequest("bad-payload", 2);
    r.mutable_classes()->add_forget_classes(3);
    cases.push_back({"class payload on a language model", r, grpc::StatusCode::INVALID_ARGUMENT,
                     "image_classifier payload but the model is a causal_lm model"});
  }
  {
    auto r = FlatRequest("bad-no-payload", 2);
    r.clear_payload();
    cases.push_back({"no payload", r, grpc::StatusCode::INVALID_ARGUMENT, "no payload"});
  }
  {
    auto r = FlatRequest("bad-figure", 2);
    r.clear_thresholds();
    v1::Threshold* t = r.mutable_thresholds()->add_checks();
    t->set_figure("acc_f");
    t->set_comparison(v1::COMPARISON_AT_MOST);
    t->set_bound(0.1);
    cases.push_back({"threshold on a figure of another family", r,
                     grpc::StatusCode::INVALID_ARGUMENT,
                     "'acc_f' is not a figure of causal_lm models"});
  }
  {
    auto r = FlatRequest("bad-both-forms", 2);
    r.mutable_thresholds()->set_max_mia_auc(0.9);
    v1::Threshold* t = r.mutable_thresholds()->add_checks();
    t->set_figure("mia.loss_auc");
    t->set_comparison(v1::COMPARISON_AT_MOST);
    t->set_bound(0.9);
    cases.push_back({"both threshold forms", r, grpc::StatusCode::INVALID_ARGUMENT, "not both"});
  }
  std::vector<v1::ErasureRequest> requests;
  for (const auto& c : cases) requests.push_back(c.request);
  grpc::Status status;
  auto events = Stream(requests, &status);
  ASSERT_TRUE(status.ok()) << "a bad request must not end the stream: " << status.error_message();
  ASSERT_EQ(events.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    EXPECT_EQ(events[i].kind(), v1::ErasureEvent::KIND_REJECTED);
    EXPECT_EQ(events[i].status_code(), cases[i].code) << events[i].message();
    EXPECT_THAT(events[i].message(), HasSubstr(cases[i].message));
  }
  EXPECT_EQ(JobCount(), 0);
  EXPECT_EQ(ServingVersion(), 1);

  // A message over --max-message-bytes is refused by gRPC itself with RESOURCE_EXHAUSTED.
  {
    auto r = FlatRequest("too-big", 2);
    r.set_compliance_reference("x");
    r.mutable_text()->mutable_forget_set(0)->set_answer(std::string(2 << 20, 'a'));
    Stream({r}, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  }
  // Malformed UTF-8 in a text field, which protobuf's parser refuses: the message gets its own
  // REJECTED naming the field and the stream ends OK (server/wire_parse.h).
  {
    auto r = FlatRequest("bad-utf8", 2);
    r.mutable_text()->mutable_forget_set(0)->set_answer("caf\xc3");
    auto bad = Stream({r}, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(bad.size(), 1u);
    EXPECT_EQ(bad[0].kind(), v1::ErasureEvent::KIND_REJECTED);
    EXPECT_EQ(bad[0].request_id(), "bad-utf8");
    EXPECT_EQ(bad[0].status_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(bad[0].message(), HasSubstr("submit.text.forget_set[0].answer is not valid UTF-8"));
  }
  // Token and context limits of Generate and Score, over the RPC.
  auto generate_status = [&](const std::string& prompt, int max_tokens) {
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_model_id("demo");
    req.set_prompt(prompt);
    req.set_max_tokens(max_tokens);
    auto reader = inference_->Generate(&ctx, req);
    v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  };
  {
    const grpc::Status s = generate_status("Who is the author?", 4097);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("max_tokens must be in [1, 4096], got 4097"));
  }
  {
    const grpc::Status s = generate_status(std::string(5000, 'x'), 8);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("exceeds the model's context of"));
  }
  {
    grpc::ClientContext ctx;
    v1::ScoreRequest req;
    req.set_model_id("demo");
    req.set_prompt("Who is the author?");
    req.set_continuation(std::string(5000, 'y'));
    v1::ScoreResponse resp;
    const grpc::Status s = inference_->Score(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("the model's context is"));
  }
  // Inference on unknown models / versions.
  {
    grpc::ClientContext ctx;
    v1::ScoreRequest req;
    req.set_model_id("demo");
    req.set_version(7);
    req.set_prompt("q");
    req.set_continuation("a");
    v1::ScoreResponse resp;
    EXPECT_EQ(inference_->Score(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id("job-0000");
    v1::Job job;
    EXPECT_EQ(erasure_->GetJob(&ctx, req, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(JobCount(), 0);
  EXPECT_EQ(ServingVersion(), 1);
}

// Queries never see stale state across a publish: while a query thread scores one forget example
// back to back, an erasure is published. Every answer is labelled with the version that produced
// it and equals that version's own answer (no mix of old weights and new label); every query that
// started after the client saw COMPLETED comes from the new version; no query after the first one
// answered by the new version comes from the old one. Latency: the p99 of the queries that overlap
// the publish phase (from the "publishing" progress event to COMPLETED: store, journal, pointer
// swap) against the p99 of the same query idle, bound 2x (both printed).
TEST_F(ServerTest, QueriesDuringAPublishComeFromOneVersionAndNeverFromTheOldOneAfterIt) {
  using Clock = std::chrono::steady_clock;
  const core::TextExample& probe = forget_[0];
  auto score = [&](int64_t version, int64_t* answered_by) {
    grpc::ClientContext ctx;
    v1::ScoreRequest req;
    req.set_model_id("demo");
    req.set_version(version);
    req.set_prompt(probe.question);
    req.set_qa_format(true);
    req.set_continuation(probe.answer);
    v1::ScoreResponse resp;
    const grpc::Status s = inference_->Score(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    *answered_by = resp.version();
    return resp.log_probability();
  };
  struct Query {
    Clock::time_point start, end;
    int64_t version = 0;
    double log_probability = 0.0;
  };
  auto percentile99 = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(0.99 * v.size()))];
  };
  auto run_queries = [&](std::atomic<bool>* stop, std::vector<Query>* out) {
    while (!stop->load()) {
      Query q;
      q.start = Clock::now();
      q.log_probability = score(0, &q.version);
      q.end = Clock::now();
      out->push_back(q);
    }
  };

  // Idle.
  std::vector<Query> idle;
  {
    std::atomic<bool> stop{false};
    std::thread t(run_queries, &stop, &idle);
    std::this_thread::sleep_for(std::chrono::seconds(3));
    stop = true;
    t.join();
  }
  ASSERT_GE(idle.size(), 50u);

  // During an erasure; the stream's events are timestamped as they arrive.
  std::vector<Query> busy;
  std::atomic<bool> stop{false};
  std::thread queries(run_queries, &stop, &busy);
  Clock::time_point publishing{}, completed{};
  int64_t version_after = 0;
  {
    grpc::ClientContext ctx;
    auto stream = erasure_->Erase(&ctx);
    v1::ErasureStreamRequest m;
    *m.mutable_submit() = FlatRequest("publish-under-load", 2);
    ASSERT_TRUE(stream->Write(m));
    stream->WritesDone();
    v1::ErasureEvent e;
    while (stream->Read(&e)) {
      if (e.kind() == v1::ErasureEvent::KIND_PROGRESS && e.progress().phase() == "publishing" &&
          publishing == Clock::time_point{}) {
        publishing = Clock::now();
      }
      if (e.kind() == v1::ErasureEvent::KIND_COMPLETED) {
        completed = Clock::now();
        version_after = e.certificate().version_after();
      }
    }
    ASSERT_TRUE(stream->Finish().ok());
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  stop = true;
  queries.join();
  ASSERT_NE(completed, Clock::time_point{}) << "the erasure did not complete";
  ASSERT_NE(publishing, Clock::time_point{}) << "no publishing progress event";
  ASSERT_EQ(version_after, 2);

  // Each version's own answer, asked by number.
  int64_t by = 0;
  const double old_answer = score(1, &by);
  const double new_answer = score(2, &by);
  ASSERT_LT(new_answer, old_answer - 0.5) << "the erasure did not change the probe's answer";

  bool seen_new = false;
  int after_publish = 0, stale = 0, mislabelled = 0, back_to_old = 0;
  std::vector<double> publish_ms;
  for (const Query& q : busy) {
    const double expected = q.version == 2 ? new_answer : old_answer;
    if (q.version != 1 && q.version != 2) ++mislabelled;
    if (std::abs(q.log_probability - expected) > 1e-4) ++mislabelled;
    if (q.version == 2) seen_new = true;
    if (seen_new && q.version == 1) ++back_to_old;
    if (q.start > completed) {
      ++after_publish;
      if (q.version != 2) ++stale;
    }
    if (q.end >= publishing && q.start <= completed) {
      publish_ms.push_back(std::chrono::duration<double, std::milli>(q.end - q.start).count());
    }
  }
  std::vector<double> idle_ms;
  for (const Query& q : idle) {
    idle_ms.push_back(std::chrono::duration<double, std::milli>(q.end - q.start).count());
  }
  const double idle_p99 = percentile99(idle_ms);
  const double publish_p99 = percentile99(publish_ms);
  std::cout << "queries: " << idle.size() << " idle, " << busy.size() << " during the erasure ("
            << publish_ms.size() << " overlapping the "
            << std::chrono::duration<double, std::milli>(completed - publishing).count()
            << " ms publish phase, " << after_publish << " after it); p99 idle " << idle_p99
            << " ms, p99 during the publish " << publish_p99 << " ms (" << publish_p99 / idle_p99
            << "x)\n";
  EXPECT_EQ(mislabelled, 0);
  EXPECT_EQ(back_to_old, 0);
  EXPECT_GT(after_publish, 10);
  EXPECT_EQ(stale, 0);
  ASSERT_FALSE(publish_ms.empty());
  EXPECT_LE(publish_p99, 2.0 * idle_p99);
}

TEST_F(ServerTest, CancelStopsARunningJobAndPublishesNothing) {
  auto request = FlatRequest("it-cancel", 8);
  request.mutable_method()->mutable_flat()->mutable_training()->set_epochs(500);
  grpc::ClientContext ctx;
  auto stream = erasure_->Erase(&ctx);
  v1::ErasureStreamRequest m;
  *m.mutable_submit() = request;
  ASSERT_TRUE(stream->Write(m));
  stream->WritesDone();
  v1::ErasureEvent e;
  std::string job_id;
  bool cancelled_sent = false;
  std::vector<v1::ErasureEvent> events;
  while (stream->Read(&e)) {
    events.push_back(e);
    if (e.kind() == v1::ErasureEvent::KIND_ACCEPTED) job_id = e.job_id();
    if (!cancelled_sent && e.kind() == v1::ErasureEvent::KIND_PROGRESS &&
        e.progress().step() >= 2) {
      grpc::ClientContext cctx;
      v1::CancelJobRequest req;
      req.set_job_id(job_id);
      v1::Job job;
      ASSERT_TRUE(erasure_->CancelJob(&cctx, req, &job).ok());
      cancelled_sent = true;
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_TRUE(cancelled_sent);
  EXPECT_EQ(events.back().kind(), v1::ErasureEvent::KIND_CANCELLED);
  EXPECT_EQ(ServingVersion(), 1);
  grpc::ClientContext gctx;
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  v1::Job job;
  ASSERT_TRUE(erasure_->GetJob(&gctx, req, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(job.published_version(), 0);
}

}  // namespace
}  // namespace unlearning::server
