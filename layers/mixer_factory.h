// layers/mixer_factory.h — builds the sequence mixer named by cfg.mixer:
//   attention        -> CausalSelfAttention (RoPE, full or sliding window cfg.window)
//   linear_attention -> LinearAttention (Table 1 row 1)
//   ttt_linear, ttt_mlp -> make_ttt_mixer (layers/ttt_layer.h), which also reads cfg.backbone
//   mamba -> MambaMixer (mamba.h), mamba2 -> Mamba2Mixer (mamba2.h),
//   gated_deltanet -> GatedDeltaNetMixer (gated_deltanet.h), ttt_kvb -> TTTKVBMixer (ttt_kvb.h)
// A language model picks the mixer of each block with block_config (baseline_config.h: model.pattern).
// The mixer draws its initial weights from g.
#pragma once

#include <memory>

#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

std::shared_ptr<SequenceMixer> make_mixer(const ModelConfig& cfg, Generator& g);

}  // namespace ttt
