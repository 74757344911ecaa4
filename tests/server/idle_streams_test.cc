// The gRPC services on the callback API: an open Erase stream holds no thread. 200 idle Erase
// streams stay open while inference (Score and streamed Generate on a tiny LM) keeps answering and
// the process's thread
// count barely moves; the streams then close cleanly and an erasure still runs; a shutdown with
// streams open neither hangs nor crashes. Toy family + a tiny random LM (tests/testing/), no demo
// model.
//
// Against the synchronous server this fails: every open Erase stream held a sync-pool thread
// (gRPC's sync pool grows without bound by default) plus a writer thread of its own, so 200 idle
// streams added about 400 threads, and the server sent nothing (not even initial metadata) on an
// idle stream, so no stream counted as established.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/server.h"
#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/tiny_lm.h"
#include "tests/testing/toy_family.h"
#include "unlearning/v1/service.grpc.pb.h"

namespace unlearning::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kIdleStreams = 200;
constexpr int kScoreCalls = 20;
// Bounds stated up front: each Score (8 tokens on a 2-layer, 32-wide LM; a few ms idle) and each
// Generate (16 tokens, streamed) answers within 2 s; the 200 idle streams add fewer than 20 threads
// to the process (client and server: the sync server added ~400).
constexpr auto kScoreDeadline = std::chrono::seconds(2);
constexpr int kMaxThreadGrowth = 20;

int ThreadCount() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// A client Erase stream that sends nothing until Close() (WritesDone) and counts what it reads.
class IdleStream : public grpc::ClientBidiReactor<v1::ErasureStreamRequest, v1::ErasureEvent> {
 public:
  explicit IdleStream(v1::ErasureService::Stub* stub) {
    stub->async()->Erase(&ctx_, this);
    StartRead(&event_);
    StartCall();
  }
  ~IdleStream() override {
    if (!WaitDone(std::chrono::seconds(0))) {
      ctx_.TryCancel();
      WaitDone(std::chrono::seconds(10));
    }
  }

  void Close() { StartWritesDone(); }

  void OnReadInitialMetadataDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    established_ = ok;
    cv_.notify_all();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++events_;
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }

  // True once the server sent initial metadata (its reactor exists) within `timeout`.
  bool WaitEstablished(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return established_ || done_; }) && established_;
  }
  bool WaitDone(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return done_; });
  }
  grpc::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  int events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  grpc::ClientContext ctx_;
  v1::ErasureEvent event_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool established_ = false;
  bool done_ = false;
  int events_ = 0;
  grpc::Status status_;
};

class IdleStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string toy_dir = tmp_.Join("toy-src");
    unlearning::testing::WriteToyModel(toy_dir, 1.0);
    const std::string lm_dir = tmp_.Join("lm-src");
    std::filesystem::create_directories(lm_dir);
    ASSERT_TRUE(unlearning::testing::TinyCausalLm(/*seed=*/7)->Save(lm_dir).ok());

    ServerOptions options;
    options.auth.insecure = true;  // no token file: explicit (docs/security.md)
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "";
    options.data_dir = tmp_.Join("data");
    options.models = {{"toy", toy_dir}, {"lm", lm_dir}};
    options.methods = &registries_.methods;
    options.families = &registries_.families;
    auto server = UnlearningServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    erasure_ = v1::ErasureService::NewStub(channel);
    inference_ = v1::InferenceService::NewStub(channel);
  }
  void TearDown() override {
    streams_.clear();
    if (server_) server_->Shutdown(absl::ZeroDuration());
  }

  // One streamed Generate of 16 tokens; its wall time (failures are recorded). The random LM's
  // bytes are mostly not UTF-8: the server sends U+FFFD for them, so the stream still parses.
  std::chrono::milliseconds Generate(int i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GenerateRequest request;
    request.set_model_id("lm");
    request.set_prompt("hello " + std::to_string(i));
    request.set_max_tokens(16);
    const auto start = Clock::now();
    auto reader = inference_->Generate(&ctx, request);
    v1::GenerateResponse response;
    int tokens = 0;
    std::string finish;
    while (reader->Read(&response)) {
      tokens += response.token_ids_size();
      if (!response.finish_reason().empty()) finish = response.finish_reason();
    }
    const grpc::Status status = reader->Finish();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_LE(tokens, 16);  // 16, or fewer if the random LM drew EOS
    EXPECT_FALSE(finish.empty());
    return took;
  }

  // One Score of an 8-character continuation on the LM; its wall time (failures are recorded).
  std::chrono::milliseconds Score(int i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ScoreRequest request;
    request.set_model_id("lm");
    request.set_prompt("hello " + std::to_string(i));
    request.set_continuation(" world!!");
    v1::ScoreResponse response;
    const auto start = Clock::now();
    const grpc::Status status = inference_->Score(&ctx, request, &response);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.num_tokens(), 8);
    EXPECT_LT(response.log_probability(), 0.0);
    return took;
  }

  // Opens `n` idle streams; returns how many the server established within 10 s.
  int OpenIdleStreams(int n) {
    for (int i = 0; i < n; ++i) streams_.push_back(std::make_unique<IdleStream>(erasure_.get()));
    int established = 0;
    const auto until = Clock::now() + std::chrono::seconds(10);
    for (auto& s : streams_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (s->WaitEstablished(std::max(left, std::chrono::milliseconds(1)))) ++established;
    }
    return established;
  }

  // Submits one toy erasure on a fresh stream and returns its last event.
  v1::ErasureEvent RunErasure(const std::string& request_id, const std::string& params_json) {
    grpc::ClientContext ctx;
    auto stream = erasure_->Erase(&ctx);
    v1::ErasureStreamRequest m;
    v1::ErasureRequest* r = m.mutable_submit();
    r->set_request_id(request_id);
    r->set_model_id("toy");
    r->mutable_method()->mutable_named()->set_name("toy_scale");
    r->mutable_method()->mutable_named()->set_params_json(params_json);
    r->mutable_classes()->add_forget_classes(3);
    EXPECT_TRUE(stream->Write(m));
    stream->WritesDone();
    v1::ErasureEvent e, last;
    while (stream->Read(&e)) last = e;
    EXPECT_TRUE(stream->Finish().ok());
    return last;
  }

  server::testing::TempDir tmp_;
  unlearning::testing::ToyRegistries registries_;
  std::unique_ptr<UnlearningServer> server_;
  std::unique_ptr<v1::ErasureService::Stub> erasure_;
  std::unique_ptr<v1::InferenceService::Stub> inference_;
  std::vector<std::unique_ptr<IdleStream>> streams_;
};

TEST_F(IdleStreamsTest, TwoHundredIdleStreamsHoldNoThreadsAndInferenceKeepsAnswering) {
  // Warm up (LibTorch's pools, the channel, the first stream) before the baseline.
  Score(-1);
  ASSERT_EQ(RunErasure("warm-up", R"({"factor": 0.5})").kind(), v1::ErasureEvent::KIND_COMPLETED);
  // The client's Finish can return before the server's reactor has counted the warm-up stream
  // closed (seen as 201 open streams about 1 run in 12): wait for it before counting.
  const auto closed_by = Clock::now() + std::chrono::seconds(5);
  while (server_->open_erase_streams() > 0 && Clock::now() < closed_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(server_->open_erase_streams(), 0);
  const int baseline = ThreadCount();
  ASSERT_GT(baseline, 0);

  EXPECT_EQ(OpenIdleStreams(kIdleStreams), kIdleStreams);
  EXPECT_EQ(server_->open_erase_streams(), kIdleStreams);
  const int with_streams = ThreadCount();
  std::chrono::milliseconds slowest{0};
  for (int i = 0; i < kScoreCalls; ++i) {
    const auto took = Score(i);
    slowest = std::max(slowest, took);
    EXPECT_LT(took, kScoreDeadline)
        << "Score " << i << " with " << kIdleStreams << " idle streams open";
    const auto generated = Generate(i);
    slowest = std::max(slowest, generated);
    EXPECT_LT(generated, kScoreDeadline)
        << "Generate " << i << " with " << kIdleStreams << " idle streams open";
  }
  const int after_calls = ThreadCount();
  std::cout << "threads: baseline " << baseline << ", with " << kIdleStreams << " idle streams "
            << with_streams << ", after " << kScoreCalls << " Score + Generate calls "
            << after_calls << "; slowest call " << slowest.count() << " ms\n";
  EXPECT_LT(with_streams - baseline, kMaxThreadGrowth);
  EXPECT_LT(after_calls - baseline, kMaxThreadGrowth);

  // Clean close: the server ends each half-closed stream with OK; idle streams got no event.
  for (auto& s : streams_) s->Close();
  for (auto& s : streams_) {
    ASSERT_TRUE(s->WaitDone(std::chrono::seconds(10)));
    EXPECT_TRUE(s->status().ok()) << s->status().error_message();
    EXPECT_EQ(s->events(), 0);
  }
  streams_.clear();
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (server_->open_erase_streams() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->open_erase_streams(), 0);

  v1::ErasureEvent last = RunErasure("after-idle", R"({"factor": 0.1})");
  EXPECT_EQ(last.kind(), v1::ErasureEvent::KIND_COMPLETED) << last.message();
}

TEST_F(IdleStreamsTest, ShutdownWithOpenStreamsEndsThemPromptly) {
  constexpr int kStreams = 50;
  EXPECT_EQ(OpenIdleStreams(kStreams), kStreams);
  // One more stream follows a slow job (1000 x 20 ms): it is interrupted, not awaited.
  grpc::ClientContext ctx;
  auto busy = erasure_->Erase(&ctx);
  v1::ErasureStreamRequest m;
  v1::ErasureRequest* r = m.mutable_submit();
  r->set_request_id("slow");
  r->set_model_id("toy");
  r->mutable_method()->mutable_named()->set_name("toy_scale");
  r->mutable_method()->mutable_named()->set_params_json(R"({"steps": 1000, "step_ms": 20})");
  r->mutable_classes()->add_forget_classes(3);
  ASSERT_TRUE(busy->Write(m));
  v1::ErasureEvent e;
  ASSERT_TRUE(busy->Read(&e));
  ASSERT_EQ(e.kind(), v1::ErasureEvent::KIND_ACCEPTED);

  // The gRPC shutdown deadline is 5 s; ending the streams ourselves must be much faster.
  const auto start = Clock::now();
  server_->Shutdown(absl::ZeroDuration());
  const auto took = Clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(2))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  for (auto& s : streams_) {
    ASSERT_TRUE(s->WaitDone(std::chrono::seconds(5)));
    EXPECT_EQ(s->status().error_code(), grpc::StatusCode::UNAVAILABLE)
        << s->status().error_message();
  }
  while (busy->Read(&e)) {
  }
  const grpc::Status status = busy->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("watch_job_id"));
  server_.reset();  // destroys services with the streams gone: no crash
}

}  // namespace
}  // namespace unlearning::server
