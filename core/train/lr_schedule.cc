#include "core/train/lr_schedule.h"

#include <algorithm>

namespace unlearning::core {

double LearningRateAt(const OptimizerOptions& options, int64_t step, int64_t total_steps) {
  total_steps = std::max<int64_t>(total_steps, 1);
  step = std::clamp<int64_t>(step, 0, total_steps - 1);
  const double lr = options.learning_rate;
  if (step < options.warmup_steps) {
    return lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps);
  }
  if (!options.linear_decay) return lr;
  const int64_t decay_steps = total_steps - std::max<int64_t>(options.warmup_steps, 0);
  if (decay_steps <= 0) return lr;
  return lr * static_cast<double>(total_steps - step) / static_cast<double>(decay_steps);
}

}  // namespace unlearning::core
