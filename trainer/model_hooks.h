// trainer/model_hooks.h — per-step settings the trainer pushes into the model.
#pragma once

#include <cstdint>

namespace ttt {

class LanguageModel;

// TTT inner learning-rate warmup (paper App. C; ttt-lm-jax train.py make_get_ttt_lr_mult): sets
// every TTT mixer's base-lr multiplier for the update with 0-based index `step` of a run with
// `warmup_steps` outer warmup steps. A no-op for models without TTT layers. For TTT-E2E models, sets
// the inner learning rate of the same update (layers/e2e_config.h e2e_inner_lr).
void apply_ttt_base_lr_warmup(LanguageModel& model, int64_t step, int64_t warmup_steps);

}  // namespace ttt
