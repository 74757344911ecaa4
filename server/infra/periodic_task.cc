#include "server/infra/periodic_task.h"

#include <utility>

namespace unlearning::server {

PeriodicTask::PeriodicTask(absl::Duration period, std::function<void()> fn)
    : period_(period), fn_(std::move(fn)) {
  thread_ = std::thread([this] { Loop(); });
}

PeriodicTask::~PeriodicTask() { Stop(); }

void PeriodicTask::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void PeriodicTask::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    cv_.WaitWithTimeout(&mu_, period_);
    if (stop_) break;
    mu_.Unlock();
    fn_();
    mu_.Lock();
  }
}

}  // namespace unlearning::server
