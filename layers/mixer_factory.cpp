// layers/mixer_factory.cpp — see mixer_factory.h.
#include "layers/mixer_factory.h"

#include <stdexcept>

#include "layers/attention.h"
#include "layers/gated_deltanet.h"
#include "layers/linear_attention.h"
#include "layers/mamba.h"
#include "layers/mamba2.h"
#include "layers/ttt_kvb.h"
#include "layers/ttt_layer.h"

namespace ttt {

std::shared_ptr<SequenceMixer> make_mixer(const ModelConfig& cfg, Generator& g) {
  if (cfg.mixer == "attention") return std::make_shared<CausalSelfAttention>(cfg, g);
  if (cfg.mixer == "linear_attention") return std::make_shared<LinearAttention>(cfg, g);
  if (cfg.mixer == "ttt_linear" || cfg.mixer == "ttt_mlp") return make_ttt_mixer(cfg, g);
  if (cfg.mixer == "mamba") return std::make_shared<MambaMixer>(cfg, g);
  if (cfg.mixer == "mamba2") return std::make_shared<Mamba2Mixer>(cfg, g);
  if (cfg.mixer == "gated_deltanet") return std::make_shared<GatedDeltaNetMixer>(cfg, g);
  if (cfg.mixer == "ttt_kvb") return std::make_shared<TTTKVBMixer>(cfg, g);
  throw std::invalid_argument("model.mixer: expected one of attention, linear_attention, ttt_linear, ttt_mlp, " +
                              baseline_mixer_list() + "; got '" + cfg.mixer + "'");
}

}  // namespace ttt
