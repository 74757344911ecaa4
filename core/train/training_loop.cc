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

absl::Status ValidateOptimizer(const std::vector<torch::Tensor>& params,
                               const OptimizerOptions& opt) {
  if (params.empty()) return absl::InvalidArgumentError("no parameters to train");
  for (const torch::Tensor& p : params) {
    if (!p.defined() || !p.requires_grad()) {
      return absl::InvalidArgumentError("every parameter must be defined and require grad");
    }
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
  if (!(opt.clip_grad_value >= 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_grad_value must be >= 0, got ", opt.clip_grad_value));
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

absl::Status ValidateLoop(const TrainingLoopOptions& options) {
  if (options.total_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("total_steps must be >= 1, got ", options.total_steps));
  }
  if (options.progress_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("progress_every must be >= 1, got ", options.progress_every));
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
  std::vector<TrainingPhase> phases(1);
  phases[0].params = params;
  phases[0].optimizer = options.optimizer;
  phases[0].loss_fn = step_fn;
  return RunAlternatingTrainingLoop(std::move(phases), options, progress, cancel);
}

absl::StatusOr<TrainingLoopResult> RunAlternatingTrainingLoop(std::vector<TrainingPhase> phases,
                                                              const TrainingLoopOptions& options,
                                                              ProgressSink* progress,
                                                              const CancellationToken* cancel) {
  if (phases.empty()) return absl::InvalidArgumentError("no training phases");
  UNL_RETURN_IF_ERROR(ValidateLoop(options));
  std::vector<std::unique_ptr<torch::optim::AdamW>> optimizers;
  for (const TrainingPhase& phase : phases) {
    absl::Status valid = ValidateOptimizer(phase.params, phase.optimizer);
    if (!valid.ok()) {
      if (phase.name.empty()) return valid;
      return absl::Status(valid.code(), absl::StrCat("phase ", phase.name, ": ", valid.message()));
    }
    const OptimizerOptions& opt = phase.optimizer;
    UNL_RETURN_IF_ERROR(TorchCall("creating AdamW", [&] {
      optimizers.push_back(std::make_unique<torch::optim::AdamW>(
          phase.params, torch::optim::AdamWOptions(opt.learning_rate)
                            .betas({opt.adam_beta1, opt.adam_beta2})
                            .eps(opt.adam_eps)
                            .weight_decay(opt.weight_decay)));
    }));
  }

  TrainingLoopResult result;
  result.phase_first_loss.assign(phases.size(), 0.0);
  result.phase_last_loss.assign(phases.size(), 0.0);
  StepTimer timer;
  double loss_value = 0.0;
  for (int64_t step = 0; step < options.total_steps; ++step) {
    if (cancel != nullptr && cancel->cancelled()) {
      return absl::CancelledError(absl::StrCat("training cancelled before step ", step));
    }
    const auto start = std::chrono::steady_clock::now();
    for (size_t k = 0; k < phases.size(); ++k) {
      const TrainingPhase& phase = phases[k];
      const OptimizerOptions& opt = phase.optimizer;
      torch::optim::AdamW& optimizer = *optimizers[k];
      // "step 3" for a single unnamed phase, "step 3, phase generator" otherwise.
      const std::string where = phase.name.empty()
                                    ? absl::StrCat("step ", step)
                                    : absl::StrCat("step ", step, ", phase ", phase.name);
      const double lr = LearningRateAt(opt, step, options.total_steps);
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      UNL_RETURN_IF_ERROR(TorchCall("zero_grad", [&] { optimizer.zero_grad(); }));

      // loss_fn's own errors pass through unchanged; its exceptions become kInternal.
      absl::StatusOr<torch::Tensor> loss_or = TorchCall(
          "training step", [&]() -> absl::StatusOr<torch::Tensor> { return phase.loss_fn(step); });
      if (!loss_or.ok()) return loss_or.status();
      const torch::Tensor loss = *std::move(loss_or);
      if (!loss.defined() || loss.numel() != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": the loss must be a defined scalar tensor"));
      }
      if (!loss.requires_grad()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": the loss is not connected to any trained parameter"));
      }
      UNL_RETURN_IF_ERROR(TorchCall("reading the loss", [&] { loss_value = loss.item<double>(); }));
      if (!std::isfinite(loss_value)) {
        return absl::InternalError(absl::StrCat("loss is not finite at ", where));
      }

      UNL_RETURN_IF_ERROR(TorchCall("backward/optimizer step", [&]() -> absl::Status {
        loss.backward();
        if (opt.clip_grad_value > 0.0) {
          torch::nn::utils::clip_grad_value_(phase.params, opt.clip_grad_value);
        }
        if (opt.max_grad_norm > 0.0) {
          const double grad_norm =
              torch::nn::utils::clip_grad_norm_(phase.params, opt.max_grad_norm);
          if (!std::isfinite(grad_norm)) {
            return absl::InternalError(absl::StrCat("gradient norm is not finite at ", where));
          }
        }
        optimizer.step();
        return absl::OkStatus();
      }));
      if (phase.after_step) {
        UNL_RETURN_IF_ERROR(TorchCall("after the optimizer step", [&] {
          torch::NoGradGuard no_grad;
          phase.after_step(step);
        }));
      }
      if (step == 0) result.phase_first_loss[k] = loss_value;
      result.phase_last_loss[k] = loss_value;
    }

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
