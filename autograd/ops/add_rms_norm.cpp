// autograd/ops/add_rms_norm.cpp — a residual add and the RMSNorm of its result, as one op with two
// outputs (the pre-norm block's `h = h + sublayer(...)` followed by the next `norm(h)`):
//
//   s = h + y,   rstd = 1 / sqrt(mean(s²) + eps),   ŝ = s · rstd,   n = ŝ · w      (w optional, [C])
// Backward, given ds and dn, with g = dn · w (g = dn without a weight), means over the last dim:
//   dh = dy = ds + rstd (g − ŝ mean(g ŝ))      (one tensor, handed to both inputs)
//   dw = Σ_rows dn · ŝ
// Saved: s (an output), w and the kernel's per-row rstd (float32).
//
// The results equal add(h, y) followed by rms_norm(·, w, eps) (kernels/add_rms_norm.h: the sum is
// rounded to the dtype before it is normalized and the norm's dx before the gradients are added,
// with the rms_norm kernels' arithmetic), in one pass over the rows instead of two kernels forward
// and three backward (the norm's dx, the add of the residual's gradient). The backward runs the
// fused kernel in float32 / bfloat16 with grad mode off; under create_graph, and in float64 always,
// ds plus the rms_norm_backward op (ops/rms_norm_backward.cpp), as rms_norm.cpp does (s is
// re-attached to this node when unpacked, so higher derivatives flow through the sum).
// h and y must have the same shape, dtype and device: no broadcasting, as a residual has none.
// Under bf16 autocast n's bf16 rounding is written too and recorded as n's cast
// (Autocast::remember_cast): the products that read n (the block's projections) read it without a
// cast of their own, in training and in prompts.
#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/add_rms_norm.h"

namespace ttt {

namespace {

// Differentiable: the norm's dx and dw as one rms_norm_backward node (x = s), plus ds.
tensor_list taped_backward(const BackwardCtx& c, const Tensor& ds, const Tensor& dn, const Tensor& s,
                           const Tensor& w, const Tensor& rstd, double eps) {
  const bool want_dsum = c.needs(0) || c.needs(1);
  const tensor_list norm = rms_norm_backward(dn, s, w, eps, want_dsum, c.needs(2), rstd);
  tensor_list out(3);
  if (want_dsum) out[0] = out[1] = add(ds, norm[0]);
  out[2] = norm[1];
  return out;
}

tensor_list fused_backward(const BackwardCtx& c, const Tensor& ds0, const Tensor& dn0, const Tensor& s,
                           const Tensor& w0, const Tensor& rstd) {
  Tensor ds = kc::contiguous(ds0), dn = kc::contiguous(dn0);
  Tensor w = w0.defined() ? kc::contiguous(w0) : Tensor();
  AddRmsNormBackward k;
  k.cols = s.shape().back();
  k.rows = k.cols ? s.numel() / k.cols : 0;
  k.dtype = s.dtype();
  Tensor dsum = c.needs(0) || c.needs(1) ? empty(s.shape(), opts(s.dtype(), s.device())) : Tensor();
  Tensor dw = c.needs(2) ? empty({k.cols}, opts(DType::f32, s.device())) : Tensor();
  k.ds = ds.data_ptr();
  k.dn = dn.data_ptr();
  k.s = s.data_ptr();
  k.rstd = rstd.data<float>();
  k.w = w.defined() ? w.data_ptr() : nullptr;
  k.dsum = dsum.defined() ? dsum.data_ptr() : nullptr;
  k.dw = dw.defined() ? dw.data<float>() : nullptr;
  if (k.rows > 0)
    backend(s.device()).run(k);
  else if (dw.defined())
    dw.zero_();
  return {dsum, dsum, dw.defined() ? dw.to(w0.dtype()) : Tensor()};
}

void check_inputs(const Tensor& h, const Tensor& y, const Tensor& weight) {
  kc::check_floating(h, "add_rms_norm");
  check_defined("add_rms_norm", y, "y");
  check_same_device("add_rms_norm", h, y);
  check_same_dtype("add_rms_norm", h, y);
  if (h.dim() == 0) throw std::invalid_argument("add_rms_norm: inputs must have at least one dim, got scalars");
  if (h.shape() != y.shape())
    throw std::invalid_argument("add_rms_norm: h " + h.shape().str() + " and y " + y.shape().str() +
                                " must have the same shape");
  if (weight.defined()) {
    check_same_device("add_rms_norm", h, weight);
    check_same_dtype("add_rms_norm", h, weight);
    if (weight.dim() != 1 || weight.shape()[0] != h.shape().back())
      throw std::invalid_argument("add_rms_norm: weight must have shape [" + std::to_string(h.shape().back()) +
                                  "] for inputs " + h.shape().str() + ", got " + weight.shape().str());
  }
}

}  // namespace

tensor_list add_rms_norm(const Tensor& h, const Tensor& y, const Tensor& weight, double eps) {
  check_inputs(h, y, weight);
  Tensor hc = kc::contiguous(h), yc = kc::contiguous(y);
  Tensor w = weight.defined() ? kc::contiguous(weight) : Tensor();
  AddRmsNormForward k;
  k.cols = h.shape().back();
  k.rows = k.cols ? h.numel() / k.cols : 0;
  k.dtype = h.dtype();
  k.eps = eps;
  Tensor s = empty(h.shape(), opts(h.dtype(), h.device()));
  Tensor n = empty(h.shape(), opts(h.dtype(), h.device()));
  Tensor rstd = empty({k.rows}, opts(DType::f32, h.device()));
  k.h = hc.data_ptr();
  k.y = yc.data_ptr();
  k.w = w.defined() ? w.data_ptr() : nullptr;
  k.s = s.data_ptr();
  k.n = n.data_ptr();
  k.rstd = rstd.data<float>();
  // Under bf16 autocast: n's bf16 copy in the same pass, handed to the products that read n
  // (Autocast::remember_cast) instead of a cast kernel of their own. In training they save it for
  // their backward as they would their own cast, so it costs no memory.
  Tensor n_low;
  if (Autocast::bf16_for(n) && s.numel()) {
    n_low = empty(h.shape(), opts(DType::bf16, h.device()));
    k.n_low = n_low.data_ptr();
  }
  if (s.numel()) backend(h.device()).run(k);
  if (n_low.defined()) Autocast::remember_cast(n, n_low);
  if (needs_grad({&h, &y, &weight})) {
    record("add_rms_norm", {h, y, weight}, {s, n}, {s, weight, rstd},
           [eps](BackwardCtx& c, const tensor_list& g) {
             const Tensor &ss = c.saved[0], &ws = c.saved[1];
             if (!GradMode::is_enabled() && ss.dtype() != DType::f64)
               return fused_backward(c, g[0], g[1], ss, ws, c.saved[2]);
             return taped_backward(c, g[0], g[1], ss, ws, c.saved[2], eps);
           });
  }
  return {s, n};
}

}  // namespace ttt
