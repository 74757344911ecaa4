#include "server/event_hub.h"

#include <vector>

namespace unlearning::server {

int64_t EventHub::Subscribe(const std::string& job_id, Listener listener) {
  absl::MutexLock lock(&mu_);
  const int64_t id = next_id_++;
  listeners_[job_id][id] = std::move(listener);
  return id;
}

void EventHub::Unsubscribe(const std::string& job_id, int64_t subscription) {
  absl::MutexLock lock(&mu_);
  auto it = listeners_.find(job_id);
  if (it == listeners_.end()) return;
  it->second.erase(subscription);
  if (it->second.empty()) listeners_.erase(it);
}

void EventHub::Publish(const v1::ErasureEvent& event) {
  std::vector<Listener> targets;
  {
    absl::MutexLock lock(&mu_);
    auto it = listeners_.find(event.job_id());
    if (it == listeners_.end()) return;
    for (const auto& [id, listener] : it->second) targets.push_back(listener);
  }
  for (const auto& listener : targets) listener(event);
}

}  // namespace unlearning::server
