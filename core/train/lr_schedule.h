// The learning-rate schedule of RunTrainingLoop (training_loop.h), exposed for
// tests and for methods that report the current rate.
#pragma once

#include <cstdint>

#include "core/train/training_loop.h"

namespace unlearning::core {

// Learning rate used by the optimizer step with 0-based index `step` out of
// `total_steps`:
//   - warm-up (step < warmup_steps): learning_rate * (step + 1) / warmup_steps,
//   so the first step
//     already moves and step warmup_steps - 1 runs at the full rate;
//   - afterwards, constant learning_rate, or with linear_decay
//     learning_rate * (total_steps - step) / (total_steps - warmup_steps): the
//     full rate at the first post-warm-up step, falling linearly so that it
//     would reach 0 at step total_steps (one past the last step, so no step is
//     wasted at rate 0); with cosine_decay (which wins over linear_decay)
//     learning_rate * 0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))),
//     which likewise starts at the full rate and would reach 0 at step total_steps.
// Steps outside [0, total_steps) are clamped into it.
double LearningRateAt(const OptimizerOptions& options, int64_t step, int64_t total_steps);

}  // namespace unlearning::core
