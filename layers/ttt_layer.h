// layers/ttt_layer.h — the TTT sequence mixers (TTT-Linear, TTT-MLP). See layers/ttt_*.cpp.
#pragma once

#include <memory>

#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

// cfg.mixer is "ttt_linear" or "ttt_mlp"; cfg.backbone selects the Mamba-backbone extras inside the
// layer (shared Q/K projection + causal convs, output gate). Draws its initial weights from g.
std::shared_ptr<SequenceMixer> make_ttt_mixer(const ModelConfig& cfg, Generator& g);

}  // namespace ttt
