// The shared optimisation loop used by fine-tuning and by every gradient-based
// unlearning method: AdamW, linear warm-up then linear decay, gradient
// clipping, progress with ETA, cancellation. One optimiser per loop, or several
// updated in turn within each step (RunAlternatingTrainingLoop: SFD's fake-score and
// generator updates).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/types.h>

#include "core/common/cancellation.h"
#include "core/common/progress.h"

namespace unlearning::core {

struct OptimizerOptions {
  double learning_rate = 1e-4;
  double weight_decay = 0.01;
  double max_grad_norm = 1.0;  // 0 disables clipping
  // Clamps every gradient element to [-clip_grad_value, clip_grad_value] before the norm clip
  // (torch.nn.utils.clip_grad_value_; SiD/SFD clip by value). 0 disables.
  double clip_grad_value = 0.0;
  int64_t warmup_steps = 0;   // linear warm-up from 0 to learning_rate
  bool linear_decay = false;  // after warm-up, decay linearly to 0 at the last step
  bool cosine_decay = false;  // after warm-up, half-cosine decay to 0 (wins over linear_decay)
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
};

struct TrainingLoopOptions {
  int64_t total_steps = 1;
  OptimizerOptions optimizer;
  // Progress is reported every `progress_every` steps and at the last step.
  int64_t progress_every = 1;
  // Optional stopping rule: after every `stop_check_every` steps (> 0), `stop_check(steps_done)`
  // is called outside autograd; true ends training there (the learning-rate schedule is not
  // shortened: total_steps is the cap). Errors abort the loop.
  std::function<absl::StatusOr<bool>(int64_t steps_done)> stop_check;
  int64_t stop_check_every = 0;
};

struct TrainingLoopResult {
  int64_t steps = 0;
  double first_loss = 0.0;     // of the last phase (the only one for RunTrainingLoop)
  double last_loss = 0.0;      // of the last phase
  bool stopped_early = false;  // the stopping rule ended training before total_steps
  // Per phase (RunAlternatingTrainingLoop), in phase order: the loss at the first and last step.
  std::vector<double> phase_first_loss;
  std::vector<double> phase_last_loss;
};

// One optimiser's share of every step of an alternating loop: its own parameters, optimiser
// settings and loss. Phases run in order within a step; each zeroes its gradients, computes its
// loss, back-propagates, clips, steps its own AdamW and then calls `after_step` (e.g. an EMA
// update). A phase's loss must connect to its own parameters; gradients that reach other phases'
// parameters are discarded (each phase zeroes its gradients first).
struct TrainingPhase {
  std::string name;  // for messages and progress, e.g. "fake_score"
  std::vector<torch::Tensor> params;
  OptimizerOptions optimizer;
  std::function<absl::StatusOr<torch::Tensor>(int64_t step)> loss_fn;
  std::function<void(int64_t step)> after_step;  // may be null; runs outside autograd
};

// Runs `options.total_steps` steps over `params` (tensors with requires_grad).
// Each step calls `step_fn(step)` (0-based) which must return a scalar float32
// loss tensor connected to `params`; the loop zeroes gradients,
// back-propagates, clips, steps AdamW and updates the learning rate. Checks
// `cancel` before every step: kCancelled if it fired. A non-finite loss is
// kInternal
// ("loss is not finite at step N"). Errors from step_fn are returned as is;
// exceptions from LibTorch become kInternal.
absl::StatusOr<TrainingLoopResult> RunTrainingLoop(
    const std::vector<torch::Tensor>& params, const TrainingLoopOptions& options,
    const std::function<absl::StatusOr<torch::Tensor>(int64_t step)>& step_fn,
    ProgressSink* progress, const CancellationToken* cancel);

// The same loop over several phases per step (options.optimizer is not used: each phase has its
// own). Errors name the phase ("step 3, phase generator: ..."). Progress reports the last phase's
// loss. REQUIRES: at least one phase.
absl::StatusOr<TrainingLoopResult> RunAlternatingTrainingLoop(std::vector<TrainingPhase> phases,
                                                              const TrainingLoopOptions& options,
                                                              ProgressSink* progress,
                                                              const CancellationToken* cancel);

}  // namespace unlearning::core
