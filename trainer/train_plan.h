// trainer/train_plan.h — the numbers a run derives from its config: gradient accumulation,
// total steps and tokens, warmup (paper Table 2 / §3 recipe, Chinchilla token budget).
//
//   global batch tokens = micro_batch x seq_len x accumulation x world   (must divide exactly)
//   total tokens        = train.tokens, or 20 x parameters when 0
//   total steps         = train.steps, or total tokens / batch tokens (at least 1)
#pragma once

#include <cstdint>
#include <string>

#include "trainer/config.h"

namespace ttt {

struct TrainPlan {
  int64_t params = 0;
  int64_t seq_len = 0;
  int64_t micro_batch = 0;   // sequences per forward/backward per rank
  int64_t accumulation = 0;  // micro-batches per optimizer step per rank
  int64_t world = 1;
  int64_t batch_tokens = 0;  // tokens per optimizer step, all ranks
  int64_t total_steps = 0;
  int64_t total_tokens = 0;  // total_steps x batch_tokens
  int64_t warmup_steps = 0;
  std::string summary() const;  // one line for logs
};

// Micro-batches per optimizer step on each rank: train.batch_tokens / (micro_batch x seq_len x world).
// Throws std::invalid_argument naming the keys when the batch does not divide. It depends on the
// config and the world size alone, so every rank of a job gets the same answer (or the same error).
int64_t accumulation_steps(const RunConfig& cfg, int64_t world);

// Throws std::invalid_argument naming the keys when the batch does not divide.
TrainPlan plan_training(const RunConfig& cfg, int64_t num_params, int64_t world = 1);

}  // namespace ttt
