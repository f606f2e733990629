// autograd/ops/rms_norm.cpp — RMSNorm over the last dim, optional weight ([C]).
//
//   rstd = 1 / sqrt(mean(x^2) + eps),  xhat = x * rstd,  y = xhat * w
// Backward, with g = dy * w (g = dy without a weight) and means over the last dim:
//   dx = rstd * (g - xhat * mean(g * xhat))
//   dw = sum over rows of dy * xhat
// Saved: x, w, and the kernel's per-row rstd (float32).
//
// Forward runs the fused kernel (rows = all leading dims, made contiguous; exact in float64).
// Backward: the rms_norm_backward op (ops/rms_norm_backward.cpp): the fused rms_norm_bwd kernel in
// float32 / bfloat16, the formulas in float64 (the kernel's saved rstd is float32); under
// create_graph it is one differentiable node whose own backward is a fused kernel.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  kc::check_floating(x, "rms_norm");
  if (x.dim() == 0) throw std::invalid_argument("rms_norm: input must have at least one dim, got a scalar");
  if (weight.defined()) {
    check_same_device("rms_norm", x, weight);
    check_same_dtype("rms_norm", x, weight);
    if (weight.dim() != 1 || weight.shape()[0] != x.shape().back())
      throw std::invalid_argument("rms_norm: weight must have shape [" + std::to_string(x.shape().back()) +
                                  "] for input " + x.shape().str() + ", got " + weight.shape().str());
  }
  const int64_t cols = x.shape().back(), rows = cols ? x.numel() / cols : 0;
  Tensor xc = kc::contiguous(x);
  Tensor w = weight.defined() ? kc::contiguous(weight) : Tensor();
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  Tensor rstd_t = empty({rows}, opts(DType::f32, x.device()));
  if (y.numel())
    backend(x.device()).rms_norm_fwd(y.data_ptr(), rstd_t.data<float>(), xc.data_ptr(),
                                     w.defined() ? w.data_ptr() : nullptr, rows, cols, eps, x.dtype());
  if (needs_grad({&x, &weight})) {
    record("rms_norm", {x, weight}, {y}, {x, weight, rstd_t}, [eps](BackwardCtx& c, const tensor_list& g) {
      // One op for both: with grad mode off it only computes (no node).
      return rms_norm_backward(g[0], c.saved[0], c.saved[1], eps, c.needs(0), c.needs(1), c.saved[2]);
    });
  }
  return y;
}

}  // namespace ttt
