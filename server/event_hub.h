// Fan-out of erasure events to the streams following a job. Listeners must not block (they queue
// the event for their stream's writer).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "unlearning/v1/erasure.pb.h"

namespace unlearning::server {

// Thread-safe.
class EventHub {
 public:
  using Listener = std::function<void(const v1::ErasureEvent&)>;

  // Returns a subscription id for Unsubscribe.
  int64_t Subscribe(const std::string& job_id, Listener listener);
  void Unsubscribe(const std::string& job_id, int64_t subscription);
  // Delivers `event` to every listener of event.job_id().
  void Publish(const v1::ErasureEvent& event);

 private:
  absl::Mutex mu_;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::map<int64_t, Listener>> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace unlearning::server
