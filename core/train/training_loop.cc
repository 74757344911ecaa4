#include "core/train/training_loop.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "core/common/status_macros.h"
#include "core/common/torch_status.h"
#include "core/train/lr_schedule.h"

namespace unlearning::core {
namespace {

absl::Status ValidateOptions(const std::vector<torch::Tensor>& params,
                             const TrainingLoopOptions& options) {
  const OptimizerOptions& opt = options.optimizer;
  if (params.empty()) return absl::InvalidArgumentError("no parameters to train");
  for (const torch::Tensor& p : params) {
    if (!p.defined() || !p.requires_grad()) {
      return absl::InvalidArgumentError("every parameter must be defined and require grad");
    }
  }
  if (options.total_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("total_steps must be >= 1, got ", options.total_steps));
  }
  if (options.progress_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress_every must be >= 1, got ", options.progress_every));
  }
  if (!(opt.learning_rate >= 0.0) || !std::isfinite(opt.learning_rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning_rate must be finite and >= 0, got ", opt.learning_rate));
  }
  if (!(opt.weight_decay >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight_decay must be >= 0, got ", opt.weight_decay));
  }
  if (!(opt.max_grad_norm >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_grad_norm must be >= 0, got ", opt.max_grad_norm));
  }
  if (opt.warmup_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("warmup_steps must be >= 0, got ", opt.warmup_steps));
  }
  if (!(opt.adam_beta1 >= 0.0 && opt.adam_beta1 < 1.0) ||
      !(opt.adam_beta2 >= 0.0 && opt.adam_beta2 < 1.0)) {
    return absl::InvalidArgumentError("adam betas must be in [0, 1)");
  }
  if (!(opt.adam_eps > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("adam_eps must be > 0, got ", opt.adam_eps));
  }
  return absl::OkStatus();
}

// Mean of the last kWindow step durations (seconds): the ETA's step-time
// estimate.
class StepTimer {
 public:
  void Add(double seconds) {
    window_.push_back(seconds);
    sum_ += seconds;
    if (window_.size() > kWindow) {
      sum_ -= window_.front();
      window_.pop_front();
    }
  }
  double Mean() const { return window_.empty() ? 0.0 : sum_ / window_.size(); }

 private:
  static constexpr size_t kWindow = 32;
  std::deque<double> window_;
  double sum_ = 0.0;
};

}  // namespace

absl::StatusOr<TrainingLoopResult> RunTrainingLoop(
    const std::vector<torch::Tensor>& params, const TrainingLoopOptions& options,
    const std::function<absl::StatusOr<torch::Tensor>(int64_t step)>& step_fn,
    ProgressSink* progress, const CancellationToken* cancel) {
  UNL_RETURN_IF_ERROR(ValidateOptions(params, options));
  const OptimizerOptions& opt = options.optimizer;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  UNL_RETURN_IF_ERROR(TorchCall("creating AdamW", [&] {
    optimizer =
        std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(opt.learning_rate)
                                                          .betas({opt.adam_beta1, opt.adam_beta2})
                                                          .eps(opt.adam_eps)
                                                          .weight_decay(opt.weight_decay));
  }));

  TrainingLoopResult result;
  StepTimer timer;
  for (int64_t step = 0; step < options.total_steps; ++step) {
    if (cancel != nullptr && cancel->cancelled()) {
      return absl::CancelledError(absl::StrCat("training cancelled before step ", step));
    }
    const auto start = std::chrono::steady_clock::now();
    const double lr = LearningRateAt(opt, step, options.total_steps);
    for (auto& group : optimizer->param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    UNL_RETURN_IF_ERROR(TorchCall("zero_grad", [&] { optimizer->zero_grad(); }));

    // step_fn's own errors pass through unchanged; its exceptions become
    // kInternal.
    absl::StatusOr<torch::Tensor> loss_or = TorchCall(
        "training step", [&]() -> absl::StatusOr<torch::Tensor> { return step_fn(step); });
    if (!loss_or.ok()) return loss_or.status();
    const torch::Tensor loss = *std::move(loss_or);
    if (!loss.defined() || loss.numel() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", step, ": the loss must be a defined scalar tensor"));
    }
    if (!loss.requires_grad()) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", step, ": the loss is not connected to any trained parameter"));
    }
    double loss_value = 0.0;
    UNL_RETURN_IF_ERROR(TorchCall("reading the loss", [&] { loss_value = loss.item<double>(); }));
    if (!std::isfinite(loss_value)) {
      return absl::InternalError(absl::StrCat("loss is not finite at step ", step));
    }

    double grad_norm = 0.0;
    UNL_RETURN_IF_ERROR(TorchCall("backward/optimizer step", [&]() -> absl::Status {
      loss.backward();
      if (opt.max_grad_norm > 0.0) {
        grad_norm = torch::nn::utils::clip_grad_norm_(params, opt.max_grad_norm);
        if (!std::isfinite(grad_norm)) {
          return absl::InternalError(absl::StrCat("gradient norm is not finite at step ", step));
        }
      }
      optimizer->step();
      return absl::OkStatus();
    }));

    if (step == 0) result.first_loss = loss_value;
    result.last_loss = loss_value;
    result.steps = step + 1;
    timer.Add(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

    const bool last = step + 1 == options.total_steps;
    if (progress != nullptr && ((step + 1) % options.progress_every == 0 || last)) {
      ProgressUpdate update;
      update.step = step + 1;
      update.total_steps = options.total_steps;
      update.loss = loss_value;
      update.eta_seconds = timer.Mean() * static_cast<double>(options.total_steps - step - 1);
      update.phase = "training";
      progress->OnProgress(update);
    }
    if (options.stop_check && options.stop_check_every > 0 && !last &&
        (step + 1) % options.stop_check_every == 0) {
      absl::StatusOr<bool> stop = options.stop_check(step + 1);
      if (!stop.ok()) return stop.status();
      if (*stop) {
        result.stopped_early = true;
        if (progress != nullptr) {
          ProgressUpdate update;
          update.step = step + 1;
          update.total_steps = step + 1;
          update.loss = loss_value;
          update.phase = "training";
          progress->OnProgress(update);
        }
        break;
      }
    }
  }
  return result;
}

}  // namespace unlearning::core
