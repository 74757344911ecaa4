#include "server/scheduler.h"

#include "absl/strings/str_cat.h"

namespace unlearning::server {

Scheduler::Scheduler(int workers, int queue_capacity, RunFn run)
    : queue_capacity_(queue_capacity), run_(std::move(run)) {
  for (int i = 0; i < std::max(1, workers); ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

Scheduler::~Scheduler() { Shutdown(absl::ZeroDuration()); }

absl::Status Scheduler::CheckCapacity(const std::string& model_id) const {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down; retry on restart");
  auto it = queues_.find(model_id);
  const int64_t depth = it == queues_.end() ? 0 : static_cast<int64_t>(it->second.size());
  if (depth >= queue_capacity_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue of model '", model_id, "' is full (", depth,
                     " jobs, --queue-capacity ", queue_capacity_, "); retry later"));
  }
  return absl::OkStatus();
}

void Scheduler::Enqueue(const std::string& model_id, const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto& q = queues_[model_id];
  for (const auto& id : q) {
    if (id == job_id) return;
  }
  if (running_.count(job_id) != 0) return;
  q.push_back(job_id);
}

bool Scheduler::RemoveQueued(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  for (auto& [model, q] : queues_) {
    for (auto it = q.begin(); it != q.end(); ++it) {
      if (*it == job_id) {
        q.erase(it);
        return true;
      }
    }
  }
  return false;
}

bool Scheduler::CancelRunning(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(job_id);
  if (it == running_.end()) return false;
  it->second->Cancel();
  return true;
}

int64_t Scheduler::QueueDepth(const std::string& model_id) const {
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(model_id);
  return it == queues_.end() ? 0 : static_cast<int64_t>(it->second.size());
}

int64_t Scheduler::TotalQueued() const {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [model, q] : queues_) n += static_cast<int64_t>(q.size());
  return n;
}

int64_t Scheduler::Running() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(running_.size());
}

bool Scheduler::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

std::string Scheduler::PickModel() const {
  for (const auto& [model, q] : queues_) {
    if (!q.empty() && running_models_.count(model) == 0) return model;
  }
  return "";
}

void Scheduler::WorkerLoop() {
  while (true) {
    std::string model, job;
    std::shared_ptr<core::CancellationToken> token;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !PickModel().empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      model = PickModel();
      job = queues_[model].front();
      queues_[model].pop_front();
      token = std::make_shared<core::CancellationToken>();
      running_[job] = token;
      running_models_[model] = job;
    }
    run_(job, model, token.get());
    absl::MutexLock lock(&mu_);
    running_.erase(job);
    running_models_.erase(model);
  }
}

void Scheduler::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&idle), grace);
    for (auto& [job, token] : running_) token->Cancel();
  }
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
}

}  // namespace unlearning::server
