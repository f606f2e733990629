// layers/swiglu.cpp — see swiglu.h.
#include "layers/swiglu.h"

#include "autograd/ops.h"

namespace ttt {

SwiGLU::SwiGLU(int64_t d_model, int64_t d_ff, Generator& g, double std, bool bf16_hidden) : bf16_hidden(bf16_hidden) {
  // Draw order (w1, w2, w3) = registration order, so names and values stay in step.
  w1 = register_module("w1", std::make_shared<Linear>(d_model, d_ff, g, std));
  w2 = register_module("w2", std::make_shared<Linear>(d_ff, d_model, g, std));
  w3 = register_module("w3", std::make_shared<Linear>(d_model, d_ff, g, std));
}

Tensor SwiGLU::forward(const Tensor& x) const {
  // silu(w1 x) ⊙ w3 x, one fused op; low: bf16 under autocast (outside it, linear as usual).
  const bool low = bf16_hidden && x.dtype() == DType::f32;
  return w2->forward(swiglu(w1->forward(x, low), w3->forward(x, low)));
}

}  // namespace ttt
