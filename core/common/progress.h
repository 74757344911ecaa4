#pragma once

#include <cstdint>
#include <string>

namespace unlearning::core {

// One progress report of a long-running job.
struct ProgressUpdate {
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0.0;
  double eta_seconds = 0.0;
  std::string phase = "training";  // "training", "verifying", "publishing"
};

// Receives progress from a method or verification. Implementations must be cheap (called every
// step) and thread-safe if shared across jobs.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void OnProgress(const ProgressUpdate& update) = 0;
};

// A sink that drops everything.
class NullProgressSink : public ProgressSink {
 public:
  void OnProgress(const ProgressUpdate&) override {}
};

}  // namespace unlearning::core
