// layers/causal_conv.cpp — see causal_conv.h.
#include "layers/causal_conv.h"

#include <cmath>
#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

CausalConv1d::CausalConv1d(int64_t c, int64_t k, Generator& g, bool with_bias) : channels(c), width(k) {
  if (c <= 0 || k <= 0)
    throw std::invalid_argument("CausalConv1d: channels and width must be positive, got " + std::to_string(c) +
                                ", " + std::to_string(k));
  const double bound = 1.0 / std::sqrt(static_cast<double>(k));
  weight = register_parameter("weight", init_uniform({c, k}, g, bound));
  if (with_bias) bias = register_parameter("bias", init_uniform({c}, g, bound));
}

void CausalConv1d::check_input(const Tensor& x) const {
  check_defined("CausalConv1d", x);
  if (x.dim() != 3 || x.shape()[2] != channels)
    throw std::invalid_argument("CausalConv1d: expected input [B, T, " + std::to_string(channels) + "], got " +
                                x.shape().str());
}

// One fused op (autograd/ops.h causal_conv1d).
Tensor CausalConv1d::forward(const Tensor& x) const {
  check_input(x);
  return causal_conv1d(x, weight, bias);
}

Tensor CausalConv1d::init_tail(int64_t batch, DType dtype, Device device) const {
  return zeros({batch, width - 1, channels}, opts(dtype, device));
}

Tensor CausalConv1d::step(const Tensor& x, Tensor& tail) const {
  check_input(x);
  const int64_t B = x.shape()[0];
  if (!tail.defined() || tail.shape() != Shape{B, width - 1, channels})
    throw std::invalid_argument("CausalConv1d::step: tail must be [" + std::to_string(B) + ", " +
                                std::to_string(width - 1) + ", " + std::to_string(channels) + "], got " +
                                (tail.defined() ? tail.shape().str() : std::string("undefined")));
  if (width == 1) return causal_conv1d(x, weight, bias);
  // Decoding: one kernel reads the tail and writes the next (also a float32 tail through bf16 x);
  // autograd sees through the composite, on the tail cast to x's dtype and the new one cast back.
  const bool f32_tail = tail.dtype() == DType::f32 && x.dtype() == DType::bf16;
  if (!GradMode::is_enabled() && (tail.dtype() == x.dtype() || f32_tail)) {
    tensor_list y_and_tail = causal_conv1d_continue(x, tail, weight, bias);
    tail = y_and_tail[1];
    return y_and_tail[0];
  }
  tensor_list y_and_tail = causal_conv1d_continue_composite(x, to_dtype(tail, x.dtype()), weight, bias);
  tail = to_dtype(y_and_tail[1], tail.dtype());
  return y_and_tail[0];
}

}  // namespace ttt
