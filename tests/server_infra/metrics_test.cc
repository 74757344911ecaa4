#include "server/infra/metrics.h"

#include <httplib.h>
#include <stdio.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "tests/server_infra/infra_test_util.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::unlearning::testing::StatusIs;

// Parses the text exposition: "name{labels} value" -> value (the series key is the text before
// the last space, verbatim).
std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

std::optional<double> Sample(const std::string& text, const std::string& series) {
  auto samples = ParseSamples(text);
  auto it = samples.find(series);
  if (it == samples.end()) return std::nullopt;
  return it->second;
}

std::string Scrape(int port, std::string* content_type = nullptr) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  auto res = client.Get("/metrics");
  if (!res) return "";
  EXPECT_EQ(res->status, 200);
  if (content_type != nullptr) *content_type = res->get_header_value("Content-Type");
  return res->body;
}

TEST(MetricsTest, ServesMetricsOnEphemeralPort) {
  Metrics metrics("1.2.3");
  UNL_ASSERT_OK_AND_ASSIGN(int port, metrics.Start("127.0.0.1", 0));
  EXPECT_GT(port, 0);
  EXPECT_EQ(metrics.port(), port);
  EXPECT_THAT(metrics.Start("127.0.0.1", 0).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));

  std::string content_type;
  const std::string body = Scrape(port, &content_type);
  EXPECT_EQ(content_type, "text/plain; version=0.0.4");
  // Families without series are not exposed yet; the fixed series are pre-created.
  for (const char* name :
       {"unlearning_erasure_requests_total", "unlearning_running_jobs", "unlearning_build_info"}) {
    EXPECT_THAT(body, HasSubstr(absl::StrCat("# TYPE ", name, " "))) << name;
  }
  EXPECT_EQ(Sample(body, R"(unlearning_build_info{version="1.2.3"})"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_erasure_requests_total{outcome="accepted"})"), 0.0);

  // Another server cannot take the same port.
  Metrics other;
  EXPECT_THAT(other.Start("127.0.0.1", port).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("bind")));

  metrics.Stop();
  EXPECT_EQ(metrics.port(), 0);
  metrics.Stop();  // idempotent
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  EXPECT_FALSE(client.Get("/metrics"));
}

TEST(MetricsTest, RecordedValuesAppearInScrape) {
  Metrics metrics;
  UNL_ASSERT_OK_AND_ASSIGN(int port, metrics.Start("127.0.0.1", 0));
  metrics.RecordErasureRequest(ErasureOutcome::kAccepted);
  metrics.RecordErasureRequest(ErasureOutcome::kAccepted);
  metrics.RecordErasureRequest(ErasureOutcome::kDuplicate);
  metrics.RecordErasureRequest(ErasureOutcome::kRejected, absl::StatusCode::kInvalidArgument);
  metrics.RecordJobStarted("npo");
  metrics.RecordJobFinished("npo", JobState::kCompleted, 90.0);
  metrics.RecordJobFinished("npo", JobState::kFailedVerification, 4000.0);
  metrics.SetQueueDepth("tiny-lm", 3);
  metrics.SetRunningJobs(1);
  metrics.SetJobProgress("tiny-lm", 2.0);  // clamped
  metrics.SetVerificationFigures("tiny-lm", {{"forget_quality", 0.01}, {"bad name!", 1}},
                                 {{"forget_quality", 0.75}, {"model_utility", 0.5}},
                                 {{"forget_quality", "T2"}});
  metrics.SetEvaluationSuite("tiny-lm", "abc123");
  metrics.SetEvaluationSuite("tiny-lm", "def456");  // replaces the previous suite's series
  metrics.SetModelVersion("tiny-lm", 4, /*published=*/true);
  metrics.RecordInference("tiny-lm", "Generate", absl::StatusCode::kOk, 0.02);
  metrics.RecordInference("tiny-lm", "Generate", absl::StatusCode::kNotFound, 0.0001);
  metrics.AddGeneratedTokens("tiny-lm", 128);

  const std::string body = Scrape(port);
  EXPECT_EQ(Sample(body, R"(unlearning_erasure_requests_total{outcome="accepted"})"), 2.0);
  EXPECT_EQ(Sample(body, R"(unlearning_erasure_requests_total{outcome="duplicate"})"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_erasure_requests_total{outcome="rejected"})"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_erasure_rejections_total{code="INVALID_ARGUMENT"})"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_jobs_started_total{method="npo"})"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_jobs_finished_total{method="npo",outcome="completed"})"),
            1.0);
  EXPECT_EQ(
      Sample(body, R"(unlearning_jobs_finished_total{method="npo",outcome="failed_verification"})"),
      1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_job_duration_seconds_count{method="npo"})"), 2.0);
  EXPECT_EQ(Sample(body, R"(unlearning_job_duration_seconds_sum{method="npo"})"), 4090.0);
  EXPECT_EQ(Sample(body, R"(unlearning_job_duration_seconds_bucket{method="npo",le="120"})"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_job_duration_seconds_bucket{method="npo",le="+Inf"})"), 2.0);
  EXPECT_EQ(Sample(body, R"(unlearning_queue_depth{model="tiny-lm"})"), 3.0);
  EXPECT_EQ(Sample(body, "unlearning_running_jobs"), 1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_job_progress_ratio{model="tiny-lm"})"), 1.0);
  EXPECT_EQ(
      Sample(
          body,
          R"(unlearning_verification_figure{figure="forget_quality",model="tiny-lm",stage="before",tier="T2"})"),
      0.01);
  EXPECT_EQ(
      Sample(
          body,
          R"(unlearning_verification_figure{figure="model_utility",model="tiny-lm",stage="after",tier="T0"})"),
      0.5);
  EXPECT_EQ(Sample(body, R"(unlearning_evaluation_suite_info{model="tiny-lm",suite="def456"})"),
            1.0);
  EXPECT_THAT(body, Not(HasSubstr("abc123")));
  EXPECT_EQ(
      Sample(
          body,
          R"(unlearning_verification_figure{figure="forget_quality",model="tiny-lm",stage="after",tier="T2"})"),
      0.75);
  EXPECT_THAT(body, Not(HasSubstr("bad name")));
  EXPECT_EQ(Sample(body, R"(unlearning_model_version{model="tiny-lm"})"), 4.0);
  EXPECT_EQ(Sample(body, R"(unlearning_model_publishes_total{model="tiny-lm"})"), 1.0);
  EXPECT_EQ(
      Sample(body,
             R"(unlearning_inference_requests_total{code="OK",model="tiny-lm",rpc="Generate"})"),
      1.0);
  EXPECT_EQ(
      Sample(
          body,
          R"(unlearning_inference_requests_total{code="NOT_FOUND",model="tiny-lm",rpc="Generate"})"),
      1.0);
  EXPECT_EQ(
      Sample(
          body,
          R"(unlearning_inference_latency_seconds_bucket{model="tiny-lm",rpc="Generate",le="0.001"})"),
      1.0);
  EXPECT_EQ(Sample(body, R"(unlearning_generated_tokens_total{model="tiny-lm"})"), 128.0);

  for (const char* name :
       {"unlearning_erasure_requests_total", "unlearning_jobs_started_total",
        "unlearning_job_progress_ratio", "unlearning_model_publishes_total",
        "unlearning_erasure_rejections_total", "unlearning_jobs_finished_total",
        "unlearning_job_duration_seconds", "unlearning_queue_depth", "unlearning_running_jobs",
        "unlearning_verification_figure", "unlearning_model_version",
        "unlearning_inference_requests_total", "unlearning_inference_latency_seconds",
        "unlearning_generated_tokens_total", "unlearning_build_info"}) {
    EXPECT_THAT(body, HasSubstr(absl::StrCat("# TYPE ", name, " "))) << name;
  }
  // The next job's figures replace the previous ones (model_utility disappears).
  metrics.SetVerificationFigures("tiny-lm", {{"forget_quality", 0.02}}, {{"forget_quality", 0.8}});
  const std::string body2 = Scrape(port);
  EXPECT_THAT(body2, Not(HasSubstr("model_utility")));
  EXPECT_EQ(
      Sample(
          body2,
          R"(unlearning_verification_figure{figure="forget_quality",model="tiny-lm",stage="after",tier="T0"})"),
      0.8);
}

TEST(MetricsTest, ConcurrentRecordingIsExact) {
  Metrics metrics;
  UNL_ASSERT_OK_AND_ASSIGN(int port, metrics.Start("127.0.0.1", 0));
  constexpr int kThreads = 4;
  constexpr int kIters = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        metrics.RecordErasureRequest(ErasureOutcome::kAccepted);
        metrics.RecordInference(absl::StrCat("m", t % 2), "Score", absl::StatusCode::kOk, 0.003);
        if (i % 500 == 0) {
          metrics.SetVerificationFigures("m0", {{"f", i}}, {{"f", t}});
          (void)Scrape(port);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const std::string body = Scrape(port);
  EXPECT_EQ(Sample(body, R"(unlearning_erasure_requests_total{outcome="accepted"})"),
            kThreads * kIters);
  EXPECT_EQ(Sample(body, R"(unlearning_inference_latency_seconds_count{model="m0",rpc="Score"})"),
            kThreads / 2 * kIters);
}

// The exposition passes Prometheus' own linter.
TEST(MetricsTest, PassesPromtoolCheckMetrics) {
  if (access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool not installed";
  Metrics metrics;
  metrics.RecordErasureRequest(ErasureOutcome::kRejected, absl::StatusCode::kPermissionDenied);
  metrics.RecordJobStarted("ga");
  metrics.RecordJobFinished("ga", JobState::kFailed, 12);
  metrics.SetQueueDepth("m", 1);
  metrics.SetVerificationFigures("m", {{"rouge_l", 0.9}}, {{"rouge_l", 0.1}});
  metrics.SetModelVersion("m", 2, true);
  metrics.RecordInference("m", "Generate", absl::StatusCode::kOk, 0.5);
  metrics.AddGeneratedTokens("m", 10);
  UNL_ASSERT_OK_AND_ASSIGN(int port, metrics.Start("127.0.0.1", 0));
  const std::string body = Scrape(port);
  ASSERT_FALSE(body.empty());

  testing::TempDir dir;
  const std::string file = dir.Join("metrics.txt");
  {
    std::ofstream out(file);
    out << body;
  }
  FILE* pipe =
      popen(absl::StrCat("/usr/bin/promtool check metrics < ", file, " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[256];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  const int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "promtool said:\n"
                                                             << output << "\non:\n"
                                                             << body;
}

}  // namespace
}  // namespace unlearning::server
