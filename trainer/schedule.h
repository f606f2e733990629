// trainer/schedule.h — learning-rate schedule: linear warmup from 0, then cosine decay to min_lr.
//
// Follows optax.warmup_cosine_decay_schedule(init 0, peak, warmup, decay_steps = total, end) as
// the official JAX trainer uses it (ttt-lm-jax infra/optimizers.py). `step` is the number of
// optimizer updates already taken (0 for the first update), so:
//   step < warmup:  lr = peak * step / warmup
//   otherwise:      lr = min + (peak - min) * 0.5 * (1 + cos(pi * min(step - warmup, D) / D)),
//                   D = total - warmup
#pragma once

#include <cstdint>

namespace ttt {

struct LRSchedule {
  double peak = 0;
  double min_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double at(int64_t step) const;
};

// The warmup length from the config: explicit steps if >= 0, else round(frac * total).
int64_t warmup_steps_for(int64_t total_steps, double warmup_frac, int64_t warmup_steps);

}  // namespace ttt
