// autograd/ops/rms_norm_backward.cpp — RMSNorm's backward as a differentiable op: what rms_norm and
// add_rms_norm record under create_graph (and run in float64), so a taped backward through a norm is
// one node and one kernel instead of a dozen elementwise ones, and differentiating it again (the
// second-order gradients of TTT-E2E's inner step) is one fused kernel too.
//
//   {dx, dw} = rms_norm_backward(dy, x, w, eps), per row of C values:
//   r = 1 / sqrt(mean(x²) + eps),  x̂ = x r,  g = dy · w (dy without w)
//   dx = r (g − x̂ mean(g x̂)),   dw = Σ_rows dy · x̂
// Backward (the double backward; the formulas are in kernels/rms_norm_grad.h): the fused
// RmsNormGradBackward call with grad mode off, in every dtype (float64 computes in double and
// recomputes r from x, so it is exact); with create_graph (third derivatives), the formulas above from
// differentiable ops, recomputed and differentiated (recompute_gradients).
// Forward: the rms_norm_bwd kernel with the forward's rstd in float32 / bfloat16 (the same kernel
// and values as rms_norm's ordinary backward); the formulas, untaped, in float64 (the kernel's rstd
// is float32) or when no rstd is given.
// Saved: dy, x and w, contiguous; the third-order fallback attaches stand-ins of them to the inputs'
// edges (BackwardCtx::input_stand_in).
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/rms_norm_grad.h"

namespace ttt {

namespace {

const char* kOp = "rms_norm_backward";

// The two gradients from differentiable ops (undefined where not wanted).
tensor_list formulas(const Tensor& dy, const Tensor& x, const Tensor& w, double eps, bool want_dx, bool want_dw) {
  const Tensor r = rsqrt(add_scalar(mean(square(x), {-1}, true), eps));
  const Tensor xhat = mul(x, r);
  tensor_list out(2);
  if (want_dx) {
    const Tensor g = w.defined() ? mul(dy, w) : dy;
    out[0] = mul(r, sub(g, mul(xhat, mean(mul(g, xhat), {-1}, true))));
  }
  if (want_dw) out[1] = sum_to(mul(dy, xhat), w.shape());
  return out;
}

// The forward's values: the fused kernel (float32 / bfloat16 with an rstd) or the formulas.
tensor_list values(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, double eps, bool want_dx,
                   bool want_dw) {
  NoGradGuard ng;
  if (!rstd.defined() || x.dtype() == DType::f64) return formulas(dy, x, w, eps, want_dx, want_dw);
  const int64_t cols = x.shape().back(), rows = cols ? x.numel() / cols : 0;
  Tensor dx = want_dx ? empty(x.shape(), opts(x.dtype(), x.device())) : Tensor();
  Tensor dw = want_dw ? empty({cols}, opts(DType::f32, x.device())) : Tensor();
  if (rows > 0)
    backend(x.device()).rms_norm_bwd(dx.defined() ? dx.data_ptr() : nullptr, dw.defined() ? dw.data<float>() : nullptr,
                                     dy.data_ptr(), x.data_ptr(), rstd.data<float>(),
                                     w.defined() ? w.data_ptr() : nullptr, rows, cols, x.dtype());
  else if (dw.defined())
    dw.zero_();
  return {dx, dw.defined() ? dw.to(w.dtype()) : Tensor()};
}

// gdy, gx, gw from the upstream gradients Gx (of dx) and Gw (of dw), each possibly undefined.
tensor_list fused_double_backward(const BackwardCtx& c, const Tensor& Gx, const Tensor& Gw, double eps) {
  const Tensor &dy = c.saved[0], &x = c.saved[1], &w = c.saved[2];
  RmsNormGradBackward k;
  k.cols = x.shape().back();
  k.rows = k.cols ? x.numel() / k.cols : 0;
  k.dtype = x.dtype();
  k.eps = eps;
  const Tensor gdx = Gx.defined() ? kc::contiguous(to_dtype(Gx, x.dtype())) : Tensor();
  const Tensor gdw = Gw.defined() && w.defined() ? kc::contiguous(to_dtype(Gw, x.dtype())) : Tensor();
  tensor_list out(3);
  if (c.needs(0)) out[0] = empty(x.shape(), opts(x.dtype(), x.device()));
  if (c.needs(1)) out[1] = empty(x.shape(), opts(x.dtype(), x.device()));
  if (c.needs(2) && w.defined()) out[2] = empty(w.shape(), opts(x.dtype(), x.device()));
  if (!gdx.defined() && !gdw.defined()) {  // nothing flows back: zeros
    for (Tensor& t : out)
      if (t.defined()) t.zero_();
  } else if (k.rows > 0) {
    k.dy = dy.data_ptr();
    k.x = x.data_ptr();
    k.w = w.defined() ? w.data_ptr() : nullptr;
    k.gdx = gdx.defined() ? gdx.data_ptr() : nullptr;
    k.gdw = gdw.defined() ? gdw.data_ptr() : nullptr;
    k.gdy = out[0].defined() ? out[0].data_ptr() : nullptr;
    k.gx = out[1].defined() ? out[1].data_ptr() : nullptr;
    k.gw = out[2].defined() ? out[2].data_ptr() : nullptr;
    backend(x.device()).run(k);
  } else if (out[2].defined()) {
    out[2].zero_();
  }
  if (out[2].defined() && out[2].dtype() != w.dtype()) out[2] = out[2].to(w.dtype());
  return out;
}

}  // namespace

tensor_list rms_norm_backward(const Tensor& dy0, const Tensor& x0, const Tensor& w0, double eps, bool want_dx,
                              bool want_dw, const Tensor& rstd) {
  check_defined(kOp, dy0, "dy");
  check_defined(kOp, x0, "x");
  kc::check_floating(x0, kOp);
  check_same_device(kOp, dy0, x0);
  check_same_dtype(kOp, dy0, x0);
  if (dy0.shape() != x0.shape())
    throw std::invalid_argument(std::string(kOp) + ": dy " + dy0.shape().str() + " and x " + x0.shape().str() +
                                " must have the same shape");
  if (w0.defined() && (w0.dim() != 1 || w0.shape()[0] != x0.shape().back() || w0.dtype() != x0.dtype()))
    throw std::invalid_argument(std::string(kOp) + ": weight must be [" + std::to_string(x0.shape().back()) +
                                "] of x's dtype, got " + w0.shape().str());
  want_dw = want_dw && w0.defined();
  const Tensor dy = kc::contiguous(dy0), x = kc::contiguous(x0), w = w0.defined() ? kc::contiguous(w0) : Tensor();
  tensor_list out = values(dy, x, w, rstd, eps, want_dx, want_dw);
  const std::vector<bool> wanted = {want_dx, want_dw};
  const tensor_list recorded = kc::wanted_only(out, wanted);  // the outputs the node has: dx and/or dw
  if (!recorded.empty() && needs_grad({&dy0, &x0, &w0})) {
    // The node's inputs are the originals (their edges); it saves the contiguous copies.
    record(kOp, {dy0, x0, w0}, recorded, {dy, x, w}, [eps, wanted](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled()) {
        const tensor_list G = kc::spread_wanted(g, wanted);
        return fused_double_backward(c, G[0], G[1], eps);
      }
      const CheckpointFn composite = [eps, wanted](const tensor_list& in) {
        return kc::wanted_only(formulas(in[0], in[1], in[2], eps, wanted[0], wanted[1]), wanted);
      };
      return recompute_gradients(composite, c.stand_in_inputs(3), g, false, DType::f32);
    });
  }
  return out;
}

}  // namespace ttt
