#include "core/train/training_loop.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include "core/train/lr_schedule.h"
#include "tests/testing/status_matchers.h"

namespace unlearning::core {
namespace {

using ::testing::HasSubstr;
using ::unlearning::testing::StatusIs;

class RecordingSink : public ProgressSink {
 public:
  void OnProgress(const ProgressUpdate& update) override { updates.push_back(update); }
  std::vector<ProgressUpdate> updates;
};

TrainingLoopOptions Options(int64_t steps, double lr) {
  TrainingLoopOptions options;
  options.total_steps = steps;
  options.optimizer.learning_rate = lr;
  options.optimizer.weight_decay = 0.0;
  options.optimizer.max_grad_norm = 0.0;
  return options;
}

TEST(TrainingLoopTest, LossDecreasesOnTinyRegression) {
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({64, 3});                      // [N, 3]
  const torch::Tensor y = x.matmul(torch::tensor({1.5, -2.0, 0.5}));  // [N]
  torch::Tensor w = torch::zeros({3}, torch::requires_grad());
  auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    return (x.matmul(w) - y).pow(2).mean();
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop({w}, Options(300, 0.05), step_fn, nullptr, nullptr);
  UNL_ASSERT_OK(result);
  EXPECT_EQ(result->steps, 300);
  EXPECT_GT(result->first_loss, 1.0);
  EXPECT_LT(result->last_loss, 1e-3 * result->first_loss);
  EXPECT_NEAR(w[1].item<double>(), -2.0, 0.05);
}

TEST(TrainingLoopTest, CancellationReturnsCancelledBeforeNextStep) {
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  CancellationToken cancel;
  constexpr int64_t kCancelAfter = 3;
  int64_t calls = 0;
  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    ++calls;
    if (step == kCancelAfter - 1) cancel.Cancel();
    return w.pow(2).sum();
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunTrainingLoop({w}, Options(10, 0.1), step_fn, nullptr, &cancel);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled, HasSubstr("before step 3")));
  EXPECT_EQ(calls, kCancelAfter);
}

TEST(TrainingLoopTest, AlreadyCancelledRunsNoStep) {
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  CancellationToken cancel;
  cancel.Cancel();
  int64_t calls = 0;
  auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    ++calls;
    return w.sum();
  };
  EXPECT_THAT(RunTrainingLoop({w}, Options(5, 0.1), step_fn, nullptr, &cancel),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("before step 0")));
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(torch::equal(w, torch::ones({2})));
}

TEST(TrainingLoopTest, NonFiniteLossIsInternalAndDoesNotStep) {
  for (double bad :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    torch::Tensor w = torch::ones({2}, torch::requires_grad());
    torch::Tensor w_before_bad_step;
    auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
      if (step == 2) {
        w_before_bad_step = w.detach().clone();
        return w.sum() * bad;
      }
      return w.pow(2).sum();
    };
    EXPECT_THAT(RunTrainingLoop({w}, Options(5, 0.1), step_fn, nullptr, nullptr),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("not finite at step 2")));
    ASSERT_TRUE(w_before_bad_step.defined());
    EXPECT_TRUE(torch::equal(w.detach(), w_before_bad_step));
  }
}

TEST(TrainingLoopTest, StepFunctionErrorPassesThrough) {
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  auto step_fn = [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
    if (step == 1) return absl::FailedPreconditionError("no batch");
    return w.sum();
  };
  EXPECT_THAT(RunTrainingLoop({w}, Options(3, 0.1), step_fn, nullptr, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no batch"));
}

TEST(TrainingLoopTest, LibTorchExceptionBecomesInternal) {
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    return w.matmul(torch::ones({3, 3})).sum();  // shape mismatch: throws c10::Error
  };
  EXPECT_THAT(RunTrainingLoop({w}, Options(3, 0.1), step_fn, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("training step")));
}

TEST(TrainingLoopTest, RejectsInvalidOptionsAndLosses) {
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  auto sum = [&](int64_t) -> absl::StatusOr<torch::Tensor> { return w.sum(); };
  EXPECT_THAT(RunTrainingLoop({w}, Options(0, 0.1), sum, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("total_steps")));
  EXPECT_THAT(RunTrainingLoop({}, Options(1, 0.1), sum, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no parameters")));
  TrainingLoopOptions bad_lr = Options(1, -1.0);
  EXPECT_THAT(RunTrainingLoop({w}, bad_lr, sum, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("learning_rate")));
  auto vector_loss = [&](int64_t) -> absl::StatusOr<torch::Tensor> { return w * 2; };
  EXPECT_THAT(RunTrainingLoop({w}, Options(1, 0.1), vector_loss, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scalar")));
  auto detached = [&](int64_t) -> absl::StatusOr<torch::Tensor> { return w.detach().sum(); };
  EXPECT_THAT(RunTrainingLoop({w}, Options(1, 0.1), detached, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not connected")));
}

TEST(LearningRateTest, WarmupThenLinearDecay) {
  OptimizerOptions opt;
  opt.learning_rate = 1.0;
  opt.warmup_steps = 4;
  opt.linear_decay = true;
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 0, 10), 0.25);
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 1, 10), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 3, 10), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 4, 10), 1.0);  // (10 - 4) / (10 - 4)
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 7, 10), 0.5);  // (10 - 7) / 6
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 9, 10), 1.0 / 6.0);
  opt.linear_decay = false;
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 9, 10), 1.0);
  opt.warmup_steps = 0;
  opt.linear_decay = true;
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 0, 4), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(opt, 3, 4), 0.25);
}

// With a constant gradient, each AdamW step (no weight decay) moves a parameter
// by the step's learning rate (m_hat / sqrt(v_hat) = 1), so the applied
// schedule is observable.
TEST(LearningRateTest, LoopAppliesTheSchedule) {
  torch::Tensor w = torch::zeros({1}, torch::dtype(torch::kFloat64).requires_grad(true));
  TrainingLoopOptions options = Options(10, 0.01);
  options.optimizer.warmup_steps = 3;
  options.optimizer.linear_decay = true;
  options.optimizer.adam_eps = 1e-12;
  std::vector<double> seen;
  auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    seen.push_back(w.item<double>());
    return -w.sum();  // gradient -1: w increases by lr each step
  };
  UNL_ASSERT_OK(RunTrainingLoop({w}, options, step_fn, nullptr, nullptr));
  seen.push_back(w.item<double>());
  ASSERT_EQ(seen.size(), 11u);
  for (int64_t step = 0; step < 10; ++step) {
    EXPECT_NEAR(seen[step + 1] - seen[step], LearningRateAt(options.optimizer, step, 10), 1e-9)
        << "step " << step;
  }
}

TEST(TrainingLoopTest, ClippingBoundsTheGradientNorm) {
  for (double max_norm : {0.0, 1.0}) {
    torch::Tensor w = torch::ones({10}, torch::requires_grad());
    TrainingLoopOptions options = Options(1, 0.01);
    options.optimizer.max_grad_norm = max_norm;
    auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
      return 1000.0 * w.pow(2).sum();  // gradient 2000 per element, norm ~6325
    };
    UNL_ASSERT_OK(RunTrainingLoop({w}, options, step_fn, nullptr, nullptr));
    ASSERT_TRUE(w.grad().defined());  // the last step's (clipped) gradient is left in place
    const double norm = w.grad().norm().item<double>();
    if (max_norm > 0) {
      EXPECT_LE(norm, max_norm * (1 + 1e-4));
      EXPECT_GT(norm, 0.99 * max_norm);
    } else {
      EXPECT_NEAR(norm, 2000.0 * std::sqrt(10.0), 1.0);  // clipping disabled
    }
  }
}

TEST(TrainingLoopTest, ReportsProgressEveryNStepsAndAtTheEnd) {
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  TrainingLoopOptions options = Options(10, 0.1);
  options.progress_every = 3;
  RecordingSink sink;
  auto step_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> { return w.pow(2).sum(); };
  UNL_ASSERT_OK(RunTrainingLoop({w}, options, step_fn, &sink, nullptr));
  ASSERT_EQ(sink.updates.size(), 4u);
  EXPECT_EQ(sink.updates[0].step, 3);
  EXPECT_EQ(sink.updates[2].step, 9);
  EXPECT_EQ(sink.updates[3].step, 10);
  for (const ProgressUpdate& u : sink.updates) {
    EXPECT_EQ(u.total_steps, 10);
    EXPECT_EQ(u.phase, "training");
    EXPECT_GE(u.eta_seconds, 0.0);
    EXPECT_GT(u.loss, 0.0);
  }
  EXPECT_EQ(sink.updates[3].eta_seconds, 0.0);
  EXPECT_GT(sink.updates[0].loss, sink.updates[3].loss);
}

// Two phases, two optimisers: the first fits u to a target through a loss that also touches v
// (whose gradient the second phase discards by zeroing first); the second fits v with u detached.
// Each phase's AdamW moves only its own parameters; after_step runs after every phase step.
TEST(TrainingLoopTest, AlternatingPhasesStepTheirOwnParametersInOrder) {
  torch::Tensor u = torch::zeros({2}, torch::requires_grad());
  torch::Tensor v = torch::zeros({2}, torch::requires_grad());
  const torch::Tensor target_u = torch::tensor({1.0, -1.0});
  const torch::Tensor target_v = torch::tensor({3.0, 2.0});
  std::vector<std::string> order;
  std::vector<TrainingPhase> phases(2);
  phases[0].name = "first";
  phases[0].params = {u};
  phases[0].optimizer = Options(1, 0.05).optimizer;
  phases[0].loss_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    order.push_back("first");
    return (u - target_u).pow(2).sum() + (u * v).sum();
  };
  phases[0].after_step = [&](int64_t) { order.push_back("after first"); };
  phases[1].name = "second";
  phases[1].params = {v};
  phases[1].optimizer = Options(1, 0.05).optimizer;
  phases[1].loss_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    order.push_back("second");
    return (v - target_v).pow(2).sum() + (u.detach() * v).sum() * 0.0;
  };
  absl::StatusOr<TrainingLoopResult> result =
      RunAlternatingTrainingLoop(std::move(phases), Options(400, 0.05), nullptr, nullptr);
  UNL_ASSERT_OK(result);
  ASSERT_EQ(result->phase_first_loss.size(), 2u);
  EXPECT_GT(result->phase_first_loss[1], 10.0);
  EXPECT_LT(result->phase_last_loss[1], 1e-3);
  EXPECT_DOUBLE_EQ(result->last_loss, result->phase_last_loss[1]);
  EXPECT_TRUE(torch::allclose(v, target_v, 0.0, 0.05)) << v;
  // u minimises |u - t|^2 + u·v with v ≈ target_v: u = t - v/2.
  EXPECT_TRUE(torch::allclose(u, target_u - target_v / 2.0, 0.0, 0.1)) << u;
  ASSERT_GE(order.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(order.begin(), order.begin() + 6),
            (std::vector<std::string>{"first", "after first", "second", "first", "after first",
                                      "second"}));
}

TEST(TrainingLoopTest, AlternatingErrorsNameThePhase) {
  torch::Tensor u = torch::zeros({2}, torch::requires_grad());
  torch::Tensor v = torch::zeros({2}, torch::requires_grad());
  std::vector<TrainingPhase> phases(2);
  phases[0] = {"first",
               {u},
               Options(1, 0.1).optimizer,
               [&](int64_t) -> absl::StatusOr<torch::Tensor> { return u.sum(); },
               nullptr};
  phases[1] = {"second",
               {v},
               Options(1, 0.1).optimizer,
               [&](int64_t step) -> absl::StatusOr<torch::Tensor> {
                 return step == 2 ? v.sum() * std::numeric_limits<double>::infinity() : v.sum();
               },
               nullptr};
  EXPECT_THAT(RunAlternatingTrainingLoop(std::move(phases), Options(5, 0.1), nullptr, nullptr),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("at step 2, phase second")));
  std::vector<TrainingPhase> bad(1);
  bad[0] = {"empty", {}, Options(1, 0.1).optimizer, nullptr, nullptr};
  EXPECT_THAT(RunAlternatingTrainingLoop(std::move(bad), Options(5, 0.1), nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("phase empty")));
  EXPECT_THAT(RunAlternatingTrainingLoop({}, Options(5, 0.1), nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

// Clipping by value bounds every gradient element (SiD/SFD), unlike clipping by norm: with a
// gradient of (100, 0.5) and SGD-like first steps, the clipped update moves both coordinates.
TEST(TrainingLoopTest, ClipGradValueClampsEachElementBeforeTheStep) {
  torch::Tensor w = torch::zeros({2}, torch::requires_grad());
  torch::Tensor seen;
  TrainingLoopOptions options = Options(1, 0.1);
  options.optimizer.clip_grad_value = 1.0;
  std::vector<TrainingPhase> phases(1);
  phases[0].params = {w};
  phases[0].optimizer = options.optimizer;
  phases[0].loss_fn = [&](int64_t) -> absl::StatusOr<torch::Tensor> {
    return (w * torch::tensor({100.0, 0.5})).sum();
  };
  phases[0].after_step = [&](int64_t) { seen = w.grad().clone(); };
  UNL_ASSERT_OK(RunAlternatingTrainingLoop(std::move(phases), options, nullptr, nullptr));
  EXPECT_TRUE(torch::equal(seen, torch::tensor({1.0f, 0.5f}))) << seen;
  options.optimizer.clip_grad_value = -1.0;
  EXPECT_THAT(RunTrainingLoop(
                  {w}, options, [&](int64_t) -> absl::StatusOr<torch::Tensor> { return w.sum(); },
                  nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clip_grad_value")));
}

}  // namespace
}  // namespace unlearning::core
