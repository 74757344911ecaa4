// Per-model FIFO scheduling of erasure jobs: at most one running job per model (jobs mutate it),
// different models in parallel up to `workers`, bounded queues, cooperative cancellation.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "core/common/cancellation.h"

namespace unlearning::server {

// Thread-safe.
class Scheduler {
 public:
  // Runs one job to its end. `cancel` fires on CancelJob or at shutdown (then `shutting_down()` is
  // true and the runner leaves the job for the next start instead of ending it).
  using RunFn = std::function<void(const std::string& job_id, const std::string& model_id,
                                   const core::CancellationToken* cancel)>;

  Scheduler(int workers, int queue_capacity, RunFn run);
  ~Scheduler();  // Shutdown(absl::ZeroDuration()) if not done yet.

  // kResourceExhausted if `model_id` already has queue_capacity queued jobs.
  absl::Status CheckCapacity(const std::string& model_id) const;
  // Queues a job (no capacity check: recovery after restart must never drop a job).
  void Enqueue(const std::string& model_id, const std::string& job_id);
  // Removes a queued job. True if it was queued.
  bool RemoveQueued(const std::string& job_id);
  // Fires the cancellation token of a running job. True if it was running.
  bool CancelRunning(const std::string& job_id);

  int64_t QueueDepth(const std::string& model_id) const;
  int64_t TotalQueued() const;
  int64_t Running() const;
  bool shutting_down() const;

  // Stops starting jobs, waits up to `grace` for running jobs, then fires their tokens and waits
  // for the workers to return. Queued jobs stay in the journal for the next start.
  void Shutdown(absl::Duration grace);

 private:
  void WorkerLoop();
  // A model with queued work and no running job, or "" if none.
  std::string PickModel() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int queue_capacity_;
  const RunFn run_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::deque<std::string>> queues_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<core::CancellationToken>> running_
      ABSL_GUARDED_BY(mu_);                                                 // job id -> token
  std::map<std::string, std::string> running_models_ ABSL_GUARDED_BY(mu_);  // model -> job
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace unlearning::server
