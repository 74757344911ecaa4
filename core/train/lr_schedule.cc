#include "core/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace unlearning::core {

double LearningRateAt(const OptimizerOptions& options, int64_t step, int64_t total_steps) {
  total_steps = std::max<int64_t>(total_steps, 1);
  step = std::clamp<int64_t>(step, 0, total_steps - 1);
  const double lr = options.learning_rate;
  if (step < options.warmup_steps) {
    return lr * static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps);
  }
  if (!options.linear_decay && !options.cosine_decay) return lr;
  const int64_t decay_steps = total_steps - std::max<int64_t>(options.warmup_steps, 0);
  if (decay_steps <= 0) return lr;
  if (options.cosine_decay) {
    // 0.5 * (1 + cos(pi * progress)), progress = (step - warmup) / decay_steps in [0, 1).
    const double progress = static_cast<double>(step - std::max<int64_t>(options.warmup_steps, 0)) /
                            static_cast<double>(decay_steps);
    return lr * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  return lr * static_cast<double>(total_steps - step) / static_cast<double>(decay_steps);
}

}  // namespace unlearning::core
