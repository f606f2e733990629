// layers/swiglu.h — the SwiGLU MLP of Llama / Transformer++ (Shazeer 2020):
//
//   y = w2( silu(w1 x) ⊙ w3 x ),   w1, w3: d -> d_ff,  w2: d_ff -> d,  no biases.
//
// Names w1/w2/w3 and the formula follow the official JAX model (ttt-lm-jax ttt/models/model.py); every weight N(0, std).
#pragma once

#include <memory>

#include "layers/linear.h"

namespace ttt {

class SwiGLU : public Module {
 public:
  SwiGLU(int64_t d_model, int64_t d_ff, Generator& g, double std = 0.02);
  Tensor forward(const Tensor& x) const;  // [..., d] -> [..., d]

  std::shared_ptr<Linear> w1, w2, w3;
};

}  // namespace ttt
