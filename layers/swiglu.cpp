// layers/swiglu.cpp — see swiglu.h.
#include "layers/swiglu.h"

#include <stdexcept>
#include <string>

#include "autograd/ops.h"

namespace ttt {

SwiGLU::SwiGLU(int64_t d_model, int64_t d_ff, Generator& g, double std, bool bf16_hidden) : bf16_hidden(bf16_hidden) {
  // Draw order (w1, w2, w3) = registration order, so names and values stay in step.
  w1 = register_module("w1", std::make_shared<Linear>(d_model, d_ff, g, std));
  w2 = register_module("w2", std::make_shared<Linear>(d_ff, d_model, g, std));
  w3 = register_module("w3", std::make_shared<Linear>(d_model, d_ff, g, std));
}

Tensor SwiGLU::forward(const Tensor& x) const {
  // silu(w1 x) ⊙ w3 x, one fused op; low: bf16 under autocast (outside it, linear as usual). w1 x
  // and w3 x are one multi_linear: the values of the two linears, with x's gradient summed inside
  // the GEMMs instead of by an add of two [rows, d] float32 gradients.
  check_defined("SwiGLU", x);
  if (x.dim() < 1 || x.shape().back() != w1->in_features)
    throw std::invalid_argument("SwiGLU: expected input [..., " + std::to_string(w1->in_features) + "], got " +
                                x.shape().str());
  const bool low = bf16_hidden && x.dtype() == DType::f32;
  const tensor_list h = multi_linear(x, {w1->weight, w3->weight}, {w1->bias, w3->bias}, {low, low});
  return w2->forward(swiglu(h[0], h[1]));
}

}  // namespace ttt
