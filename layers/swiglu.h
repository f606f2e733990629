// layers/swiglu.h — the SwiGLU MLP of Llama / Transformer++ (Shazeer 2020):
//
//   y = w2( silu(w1 x) ⊙ w3 x ),   w1, w3: d -> d_ff,  w2: d_ff -> d,  no biases.
//
// Names w1/w2/w3 and the formula follow the official JAX model (ttt-lm-jax ttt/models/model.py); every weight N(0, std).
#pragma once

#include <memory>

#include "layers/linear.h"

namespace ttt {

// bf16_hidden (model.bf16_activations): under bf16 autocast w1 x and w3 x are written as bf16 and
// the fused silu-product reads, keeps and writes bf16, which w2 multiplies as it is: the hidden
// layer (2 · d_ff per token stored for the backward, the largest activation of a block) takes half
// the bytes and no cast runs. The products are bf16 either way; the output is float32.
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t d_model, int64_t d_ff, Generator& g, double std = 0.02, bool bf16_hidden = false);
  Tensor forward(const Tensor& x) const;  // [..., d] -> [..., d]

  std::shared_ptr<Linear> w1, w2, w3;
  bool bf16_hidden;
};

}  // namespace ttt
