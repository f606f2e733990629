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
  const int64_t B = x.shape()[0], T = x.shape()[1];
  if (!tail.defined() || tail.shape() != Shape{B, width - 1, channels})
    throw std::invalid_argument("CausalConv1d::step: tail must be [" + std::to_string(B) + ", " +
                                std::to_string(width - 1) + ", " + std::to_string(channels) + "], got " +
                                (tail.defined() ? tail.shape().str() : std::string("undefined")));
  if (width == 1) return causal_conv1d(x, weight, bias);
  if (!GradMode::is_enabled() && tail.dtype() == x.dtype()) {  // decoding: one kernel reads the tail, writes the next
    tensor_list y_and_tail = causal_conv1d_continue(x, tail, weight, bias);
    tail = y_and_tail[1];
    return y_and_tail[0];
  }
  // The fused conv over (tail, x): its outputs past the first k−1 are those of x continuing after
  // the tail, each summed from the same k inputs in the same order as forward() sums them, so a
  // prompt decoded in chunks gives forward()'s bits.
  const Tensor xp = cat({tail, x}, 1);
  // A view when xp is small (decoding a token: one copy fewer per step), a copy after a long chunk
  // (a view would keep the whole chunk alive).
  tail = T <= width ? narrow(xp, 1, T, width - 1) : contiguous(narrow(xp, 1, T, width - 1));
  return narrow(causal_conv1d(xp, weight, bias), 1, width - 1, T);
}

}  // namespace ttt
