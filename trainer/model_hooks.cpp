// trainer/model_hooks.cpp — see model_hooks.h.
#include "trainer/model_hooks.h"

#include "layers/language_model.h"

namespace ttt {

void apply_ttt_base_lr_warmup(LanguageModel& model, int64_t step, int64_t warmup_steps) {
  // Filled in when the TTT mixers (layers/ttt_layer.h: TTTMixer::set_base_lr_multiplier) land.
  (void)model;
  (void)step;
  (void)warmup_steps;
}

}  // namespace ttt
