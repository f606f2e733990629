// autograd/ops/rms_norm.cpp — RMSNorm over the last dim, optional weight ([C]).
//
//   rstd = 1 / sqrt(mean(x^2) + eps),  xhat = x * rstd,  y = xhat * w
// Backward, with g = dy * w (g = dy without a weight) and means over the last dim:
//   dx = rstd * (g - xhat * mean(g * xhat))
//   dw = sum over rows of dy * xhat
// Saved: x, w, and the kernel's per-row rstd (float32).
//
// Forward runs the fused kernel (rows = all leading dims, made contiguous; exact in float64).
// Backward: the fused rms_norm_bwd kernel under ordinary backward in float32 / bfloat16; under
// create_graph, and in float64 always (the kernel's saved rstd is float32), the rms_norm_backward
// op (ops/rms_norm_backward.cpp): the same values as one differentiable node whose own backward is
// a fused kernel, rstd recomputed from x in float64.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

tensor_list fused_backward(const BackwardCtx& c, const Tensor& dy0, const Tensor& x0, const Tensor& w0,
                           const Tensor& rstd_t) {
  Tensor dy = kc::contiguous(dy0), x = kc::contiguous(x0);
  Tensor w = w0.defined() ? kc::contiguous(w0) : Tensor();
  const int64_t cols = x.shape().back(), rows = cols ? x.numel() / cols : 0;
  Tensor dx = c.needs(0) ? empty(x.shape(), opts(x.dtype(), x.device())) : Tensor();
  Tensor dw = c.needs(1) ? empty({cols}, opts(DType::f32, x.device())) : Tensor();
  if (rows > 0)
    backend(x.device()).rms_norm_bwd(dx.defined() ? dx.data_ptr() : nullptr, dw.defined() ? dw.data<float>() : nullptr,
                                     dy.data_ptr(), x.data_ptr(), rstd_t.data<float>(),
                                     w.defined() ? w.data_ptr() : nullptr, rows, cols, x.dtype());
  else if (dw.defined())
    dw.zero_();
  return {dx, dw.defined() ? dw.to(w0.dtype()) : Tensor()};
}

}  // namespace

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
      const Tensor &xs = c.saved[0], &ws = c.saved[1];
      if (!GradMode::is_enabled() && xs.dtype() != DType::f64) return fused_backward(c, g[0], xs, ws, c.saved[2]);
      return rms_norm_backward(g[0], xs, ws, eps, c.needs(0), c.needs(1), c.saved[2]);
    });
  }
  return y;
}

}  // namespace ttt
