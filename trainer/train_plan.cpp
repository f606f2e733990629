// trainer/train_plan.cpp — see train_plan.h.
#include "trainer/train_plan.h"

#include <stdexcept>

#include "trainer/schedule.h"

namespace ttt {

int64_t accumulation_steps(const RunConfig& cfg, int64_t world) {
  const int64_t batch_tokens = cfg.train.batch_tokens, micro_batch = cfg.train.micro_batch, seq_len = cfg.seq_len();
  const int64_t per_micro = micro_batch * seq_len * world;
  if (per_micro <= 0 || batch_tokens % per_micro != 0)
    throw std::invalid_argument(
        "train.batch_tokens (" + std::to_string(batch_tokens) + ") must be a multiple of train.micro_batch x "
        "train.seq_len x world size = " + std::to_string(micro_batch) + " x " + std::to_string(seq_len) +
        " x " + std::to_string(world) + " = " + std::to_string(per_micro) + " (gradient accumulation steps)");
  return batch_tokens / per_micro;
}

TrainPlan plan_training(const RunConfig& cfg, int64_t num_params, int64_t world) {
  TrainPlan p;
  p.params = num_params;
  p.seq_len = cfg.seq_len();
  p.micro_batch = cfg.train.micro_batch;
  p.world = world;
  p.batch_tokens = cfg.train.batch_tokens;
  p.accumulation = accumulation_steps(cfg, world);
  const int64_t tokens = cfg.train.tokens > 0 ? cfg.train.tokens : 20 * num_params;
  if (cfg.train.steps > 0) {
    p.total_steps = cfg.train.steps;
  } else {
    p.total_steps = tokens / p.batch_tokens;
    if (p.total_steps < 1)
      throw std::invalid_argument("train.tokens (" + std::to_string(tokens) + (cfg.train.tokens > 0 ? "" : " = 20 x parameters") +
                                  ") is less than one batch (train.batch_tokens = " + std::to_string(p.batch_tokens) +
                                  "); lower the batch or set train.steps");
  }
  p.total_tokens = p.total_steps * p.batch_tokens;
  p.warmup_steps = warmup_steps_for(p.total_steps, cfg.train.warmup_frac, cfg.train.warmup_steps);
  return p;
}

std::string TrainPlan::summary() const {
  return std::to_string(params) + " parameters; " + std::to_string(total_steps) + " steps x " +
         std::to_string(batch_tokens) + " tokens (" + std::to_string(micro_batch) + " seq x " + std::to_string(seq_len) +
         " tokens x " + std::to_string(accumulation) + " accumulation x " + std::to_string(world) + " ranks) = " +
         std::to_string(total_tokens) + " tokens; warmup " + std::to_string(warmup_steps) + " steps";
}

}  // namespace ttt
