// layers/ttt_stub.cpp — placeholder until the TTT layers land (delete this file then).
#include <stdexcept>

#include "layers/ttt_layer.h"

namespace ttt {
std::shared_ptr<SequenceMixer> make_ttt_mixer(const ModelConfig&, Generator&) {
  throw std::runtime_error("TTT layers are not implemented yet");
}
}  // namespace ttt
