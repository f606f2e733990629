// layers/mixer_factory.cpp — see mixer_factory.h.
#include "layers/mixer_factory.h"

#include <stdexcept>

#include "layers/attention.h"
#include "layers/linear_attention.h"
#include "layers/ttt_layer.h"

namespace ttt {

std::shared_ptr<SequenceMixer> make_mixer(const ModelConfig& cfg, Generator& g) {
  if (cfg.mixer == "attention") return std::make_shared<CausalSelfAttention>(cfg, g);
  if (cfg.mixer == "linear_attention") return std::make_shared<LinearAttention>(cfg, g);
  if (cfg.mixer == "ttt_linear" || cfg.mixer == "ttt_mlp") return make_ttt_mixer(cfg, g);
  throw std::invalid_argument("model.mixer: expected one of attention, linear_attention, ttt_linear, ttt_mlp; got '" +
                              cfg.mixer + "'");
}

}  // namespace ttt
