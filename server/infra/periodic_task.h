// PeriodicTask: runs a function every `period` on a thread of its own until stopped (the
// retention sweep, the TLS certificate watch). Stop() wakes the thread at once and joins it.
#pragma once

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace unlearning::server {

class PeriodicTask {
 public:
  // Starts the thread; `fn` first runs one `period` from now.
  PeriodicTask(absl::Duration period, std::function<void()> fn);
  ~PeriodicTask();  // Stop()
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Returns once the thread has ended (a run in progress finishes first). Idempotent.
  void Stop();

 private:
  void Loop();

  const absl::Duration period_;
  const std::function<void()> fn_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace unlearning::server
