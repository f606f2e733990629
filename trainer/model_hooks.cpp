// trainer/model_hooks.cpp — see model_hooks.h.
#include "trainer/model_hooks.h"

#include "layers/e2e_config.h"
#include "layers/e2e_model.h"
#include "layers/language_model.h"
#include "layers/ttt_layer.h"

namespace ttt {

namespace {
void set_multiplier(Module& m, double mult) {
  if (auto* t = dynamic_cast<TTTMixer*>(&m)) t->set_base_lr_multiplier(mult);
  for (auto& [name, child] : m.named_children()) set_multiplier(*child, mult);
}
}  // namespace

void apply_ttt_base_lr_warmup(LanguageModel& model, int64_t step, int64_t warmup_steps) {
  // ttt-lm-jax counts steps from 1 (train.py start_step = 1); `step` here is 0-based.
  set_multiplier(model, ttt_base_lr_multiplier(model.config(), step + 1, warmup_steps));
  // TTT-E2E: the inner learning rate ramps over the same warmup (official ilr_warmup_steps = 10%).
  if (E2EModel* e = model.e2e()) e->set_inner_lr(e2e_inner_lr(model.config(), step + 1, warmup_steps));
}

}  // namespace ttt
