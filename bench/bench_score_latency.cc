// Score latency of a running unlearnd, over its real gRPC port: while idle, or while an erasure job
// trains on the same model (bench/serve_latency.sh drives it). Prints one JSON line:
//   {"phase": "idle"|"during_job", "calls": n, "median_ms", "p90_ms", "max_ms", "job_state",
//    "job_steps_per_s" (training steps the job made per second meanwhile)}
// With --during-job JOB, timing starts once the job reports its first training step, and a call
// counts only if the job was RUNNING before and after it, so every counted call overlapped
// training; the run stops early when the job leaves RUNNING.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "unlearning/v1/service.grpc.pb.h"

namespace {

namespace v1 = unlearning::v1;
using Clock = std::chrono::steady_clock;

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

bool JobRunning(v1::ErasureService::Stub& erasure, const std::string& job_id, v1::JobState* state,
                int64_t* step = nullptr) {
  grpc::ClientContext ctx;
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  const grpc::Status status = erasure.GetJob(&ctx, request, &job);
  if (!status.ok()) {
    std::cerr << "bench_score_latency: GetJob " << job_id << ": " << status.error_message() << "\n";
    *state = v1::JOB_STATE_UNSPECIFIED;
    return false;
  }
  *state = job.state();
  if (step != nullptr) *step = job.step();
  return job.state() == v1::JOB_STATE_RUNNING;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Score latency of a running unlearnd, idle or during an erasure job"};
  std::string server, model = "demo", job_id;
  std::string prompt = "Question: Where was the author born?\nAnswer:";
  std::string continuation = " The author was born in a small town by the sea.";
  int calls = 30;
  double max_wait_seconds = 600;
  double min_seconds = 0;
  app.add_option("--server", server, "HOST:PORT")->required();
  app.add_option("--model", model)->capture_default_str();
  app.add_option("--calls", calls, "Score calls to time")->check(CLI::Range(1, 100000));
  app.add_option("--during-job", job_id, "count only calls made while this job is RUNNING");
  app.add_option("--max-wait", max_wait_seconds, "seconds to wait for the job to start running")
      ->capture_default_str();
  app.add_option("--min-seconds", min_seconds,
                 "keep calling for at least this long (a longer window for job_steps_per_s)")
      ->capture_default_str();
  app.add_option("--prompt", prompt);
  app.add_option("--continuation", continuation);
  CLI11_PARSE(app, argc, argv);

  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto inference = v1::InferenceService::NewStub(channel);
  auto erasure = v1::ErasureService::NewStub(channel);

  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  if (!job_id.empty()) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(max_wait_seconds);
    // Training has started once the job reports a step (before that it computes the parent's
    // figures, which is inference, not training).
    int64_t step = 0;
    while (!JobRunning(*erasure, job_id, &state, &step) || step < 1) {
      if (state != v1::JOB_STATE_QUEUED && state != v1::JOB_STATE_UNSPECIFIED &&
          state != v1::JOB_STATE_RUNNING) {
        break;
      }
      if (Clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (state != v1::JOB_STATE_RUNNING) {
      std::cerr << "bench_score_latency: job " << job_id << " is " << v1::JobState_Name(state)
                << ", not RUNNING\n";
      return 1;
    }
  }

  v1::ScoreRequest request;
  request.set_model_id(model);
  request.set_prompt(prompt);
  request.set_continuation(continuation);
  std::vector<double> ms;
  int64_t first_step = 0, last_step = 0;
  const auto phase_start = Clock::now();
  if (!job_id.empty()) JobRunning(*erasure, job_id, &state, &first_step);
  const auto elapsed_s = [&] {
    return std::chrono::duration<double>(Clock::now() - phase_start).count();
  };
  for (int attempt = 0;
       (static_cast<int>(ms.size()) < calls || elapsed_s() < min_seconds) && attempt < calls * 100;
       ++attempt) {
    if (!job_id.empty() && !JobRunning(*erasure, job_id, &state)) break;
    grpc::ClientContext ctx;
    v1::ScoreResponse response;
    const auto start = Clock::now();
    const grpc::Status status = inference->Score(&ctx, request, &response);
    const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!status.ok()) {
      std::cerr << "bench_score_latency: Score: " << status.error_message() << "\n";
      return 1;
    }
    if (!job_id.empty() && !JobRunning(*erasure, job_id, &state, &last_step)) break;
    ms.push_back(elapsed);
  }
  if (ms.empty()) {
    std::cerr << "bench_score_latency: no call overlapped the job\n";
    return 1;
  }
  const double phase_seconds = std::chrono::duration<double>(Clock::now() - phase_start).count();
  const nlohmann::json out = {
      {"job_steps_per_s",
       job_id.empty() ? 0.0 : static_cast<double>(last_step - first_step) / phase_seconds},
      {"phase", job_id.empty() ? "idle" : "during_job"},
      {"calls", ms.size()},
      {"median_ms", Quantile(ms, 0.5)},
      {"p90_ms", Quantile(ms, 0.9)},
      {"max_ms", *std::max_element(ms.begin(), ms.end())},
      {"job_state", job_id.empty() ? "" : v1::JobState_Name(state)},
  };
  std::cout << out.dump() << std::endl;
  return 0;
}
