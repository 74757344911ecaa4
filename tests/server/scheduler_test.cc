#include "server/scheduler.h"

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "tests/testing/status_matchers.h"

namespace unlearning::server {
namespace {

// Records the order jobs start and the peak number of concurrent jobs per model and overall.
struct Recorder {
  absl::Mutex mu;
  std::vector<std::string> order;
  std::map<std::string, int> running_per_model;
  int running = 0;
  int peak = 0;
  int peak_per_model = 0;

  void Run(const std::string& job, const std::string& model, absl::Duration hold) {
    {
      absl::MutexLock lock(&mu);
      order.push_back(job);
      ++running;
      peak = std::max(peak, running);
      peak_per_model = std::max(peak_per_model, ++running_per_model[model]);
    }
    absl::SleepFor(hold);
    absl::MutexLock lock(&mu);
    --running;
    --running_per_model[model];
  }
};

TEST(SchedulerTest, OneJobPerModelInFifoOrderAndModelsInParallel) {
  Recorder rec;
  absl::Notification done;
  std::atomic<int> finished{0};
  Scheduler scheduler(
      2, 10, [&](const std::string& job, const std::string& model, const core::CancellationToken*) {
        rec.Run(job, model, absl::Milliseconds(30));
        if (++finished == 6) done.Notify();
      });
  for (int i = 0; i < 3; ++i) {
    scheduler.Enqueue("a", "a" + std::to_string(i));
    scheduler.Enqueue("b", "b" + std::to_string(i));
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  absl::MutexLock lock(&rec.mu);
  EXPECT_EQ(rec.peak_per_model, 1);
  EXPECT_EQ(rec.peak, 2);
  std::vector<std::string> a_order, b_order;
  for (const auto& j : rec.order) (j[0] == 'a' ? a_order : b_order).push_back(j);
  EXPECT_EQ(a_order, (std::vector<std::string>{"a0", "a1", "a2"}));
  EXPECT_EQ(b_order, (std::vector<std::string>{"b0", "b1", "b2"}));
}

TEST(SchedulerTest, BoundedQueueCancelAndShutdown) {
  absl::Notification started, release;
  std::atomic<bool> saw_cancel{false};
  Scheduler scheduler(
      1, 2, [&](const std::string& job, const std::string&, const core::CancellationToken* cancel) {
        if (job != "run") return;
        started.Notify();
        while (!cancel->cancelled() && !release.HasBeenNotified())
          absl::SleepFor(absl::Milliseconds(5));
        saw_cancel = cancel->cancelled();
      });
  scheduler.Enqueue("m", "run");
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  UNL_EXPECT_OK(scheduler.CheckCapacity("m"));
  scheduler.Enqueue("m", "q1");
  scheduler.Enqueue("m", "q2");
  EXPECT_EQ(scheduler.QueueDepth("m"), 2);
  EXPECT_THAT(scheduler.CheckCapacity("m"),
              ::unlearning::testing::StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  UNL_EXPECT_OK(scheduler.CheckCapacity("other"));
  EXPECT_TRUE(scheduler.RemoveQueued("q1"));
  EXPECT_FALSE(scheduler.RemoveQueued("q1"));
  EXPECT_EQ(scheduler.QueueDepth("m"), 1);
  EXPECT_EQ(scheduler.Running(), 1);
  EXPECT_TRUE(scheduler.CancelRunning("run"));
  EXPECT_FALSE(scheduler.CancelRunning("q2"));
  scheduler.Shutdown(absl::Seconds(5));
  EXPECT_TRUE(saw_cancel.load());
  EXPECT_TRUE(scheduler.shutting_down());
  EXPECT_THAT(scheduler.CheckCapacity("m"),
              ::unlearning::testing::StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

}  // namespace
}  // namespace unlearning::server
