// trainer/schedule.cpp — see schedule.h for the formulas and their source.
#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ttt {

double LRSchedule::at(int64_t step) const {
  if (step < 0) throw std::invalid_argument("LRSchedule: negative step " + std::to_string(step));
  if (step < warmup_steps) return peak * static_cast<double>(step) / static_cast<double>(warmup_steps);
  const int64_t decay = total_steps - warmup_steps;
  if (decay <= 0) return min_lr;
  const double t = static_cast<double>(std::min(step - warmup_steps, decay)) / static_cast<double>(decay);
  return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
}

int64_t warmup_steps_for(int64_t total_steps, double warmup_frac, int64_t warmup_steps) {
  if (warmup_steps >= 0) return std::min(warmup_steps, total_steps);
  return static_cast<int64_t>(std::llround(warmup_frac * static_cast<double>(total_steps)));
}

}  // namespace ttt
