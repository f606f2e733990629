// autograd/ops/causal_conv.cpp — the depthwise causal convolution (math in kernels/causal_conv.h)
// as one tape node over the fused kernels.
//
//   y = causal_conv1d(x [B, T, C], w [C, k], bias [C] or undefined):
//   y[b, t, c] = bias[c] + Σ_j w[c, j] · x[b, t − (k−1) + j, c]
// Saved: x, w, bias. Backward:
// - grad mode off: the fused backward kernel (dx, dw, dbias; deterministic sums);
// - create_graph: the composite formula below (shifted slices of the zero-padded x times the
//   weight columns) re-run taped and differentiated, so gradients of gradients are exact.
// Paths without a kernel (float64 on CUDA) run the composite directly.
// bf16 x may come with float32 weight and bias (an autocast model's bf16 activation and its float32
// parameters): the kernels read float32 parameters anyway; y and dx are bf16, dw and dbias float32.
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/causal_conv.h"

namespace ttt {

namespace {

const char* kOp = "causal_conv1d";

// t (optional) in x's dtype, differentiably (float32 parameters of bf16 data).
Tensor as_data_dtype(const Tensor& t, const Tensor& x) { return t.defined() ? to_dtype(t, x.dtype()) : t; }

// The composite formula: Σ_j narrow(pad(x), j, T) · w[:, j] + bias.
Tensor composite(const Tensor& x, const Tensor& w0, const Tensor& bias0) {
  const Tensor w = as_data_dtype(w0, x), bias = as_data_dtype(bias0, x);
  const int64_t B = x.shape()[0], T = x.shape()[1], C = x.shape()[2], k = w.shape()[1];
  const Tensor xp = k > 1 ? narrow_scatter(x, {B, T + k - 1, C}, 1, k - 1) : x;
  Tensor y;
  for (int64_t j = 0; j < k; ++j) {
    Tensor term = mul(narrow(xp, 1, j, T), reshape(narrow(w, 1, j, 1), {C}));
    y = y.defined() ? add(y, term) : term;
  }
  return bias.defined() ? add(y, bias) : y;
}

void check_inputs(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_defined(kOp, x);
  check_defined(kOp, w, "weight");
  kc::check_floating(x, kOp);
  const auto check_param = [&](const Tensor& p) {
    check_same_device(kOp, x, p);
    if (!(x.dtype() == DType::bf16 && p.dtype() == DType::f32)) check_same_dtype(kOp, x, p);
  };
  check_param(w);
  if (bias.defined()) check_param(bias);
  if (x.dim() != 3 || w.dim() != 2 || w.shape()[0] != x.shape()[2] || w.shape()[1] < 1 ||
      (bias.defined() && bias.shape() != Shape{x.shape()[2]}))
    throw std::invalid_argument(std::string(kOp) + ": expected x [B, T, C], weight [C, k], bias [C] (x " +
                                x.shape().str() + ", weight " + w.shape().str() +
                                (bias.defined() ? ", bias " + bias.shape().str() : std::string()) + ")");
}

bool has_kernel(const Tensor& x, int64_t width) {
  return x.device().is_cpu() || ((x.dtype() == DType::f32 || x.dtype() == DType::bf16) && width <= 8);
}

// The kernels take float32 weights for float32/bfloat16 data (float64 for float64).
DType param_dtype(DType dt) { return dt == DType::f64 ? DType::f64 : DType::f32; }
Tensor as_param(const Tensor& t, DType dt) {
  if (!t.defined()) return t;
  return kc::contiguous(t.dtype() == dt ? t.detach() : t.detach().to(dt));
}
Tensor channels_unit(const Tensor& t) { return t.strides()[2] == 1 ? t : kc::contiguous(t); }
BTCView btc(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[1]}; }

CausalConvShape shape_of(const Tensor& x, const Tensor& w) {
  CausalConvShape s;
  s.batch = x.shape()[0], s.len = x.shape()[1], s.channels = x.shape()[2], s.width = w.shape()[1];
  s.dtype = x.dtype();
  return s;
}

tensor_list fused_backward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& dy) {
  NoGradGuard ng;
  const CausalConvShape s = shape_of(x, w);
  const DType pd = param_dtype(s.dtype);
  const TensorOptions po = opts(pd, x.device());
  Tensor xc = channels_unit(x), dyc = channels_unit(dy), wp = as_param(w, pd);
  Tensor dx = empty(x.shape(), opts(x.dtype(), x.device()));
  Tensor dw = empty(w.shape(), po), db = bias.defined() ? empty(bias.shape(), po) : Tensor();
  CausalConvBackward c;
  c.s = s;
  c.x = btc(xc), c.dy = btc(dyc), c.dx = btc(dx);
  c.w = wp.data_ptr(), c.dw = dw.data_ptr(), c.dbias = db.defined() ? db.data_ptr() : nullptr;
  Tensor ws = empty({static_cast<int64_t>(c.workspace_bytes() / dtype_size(pd)) + 1}, po);
  c.workspace = ws.data_ptr();
  backend(x.device()).run(c);
  return {dx, dw.dtype() == w.dtype() ? dw : dw.to(w.dtype()),
          db.defined() && db.dtype() != bias.dtype() ? db.to(bias.dtype()) : db};
}

}  // namespace

Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_inputs(x, w, bias);
  if (!has_kernel(x, w.shape()[1])) return composite(x, w, bias);
  const CausalConvShape s = shape_of(x, w);
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  {
    NoGradGuard ng;
    const DType pd = param_dtype(s.dtype);
    Tensor xc = channels_unit(x), wp = as_param(w, pd), bp = as_param(bias, pd);
    CausalConvForward c;
    c.s = s;
    c.x = btc(xc), c.y = btc(y);
    c.w = wp.data_ptr(), c.bias = bp.defined() ? bp.data_ptr() : nullptr;
    if (y.numel()) backend(x.device()).run(c);
  }
  if (needs_grad({&x, &w, &bias})) {
    const bool amp = Autocast::enabled();
    const DType amp_dtype = Autocast::dtype();
    record(kOp, {x, w, bias}, {y}, {x, w, bias}, [amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled()) return fused_backward(c.saved[0], c.saved[1], c.saved[2], g[0]);
      const CheckpointFn fn = [](const tensor_list& in) { return tensor_list{composite(in[0], in[1], in[2])}; };
      return recompute_gradients(fn, c, g, amp, amp_dtype);
    });
  }
  return y;
}

// The conv over cat(history, x): its outputs past the first k−1 are those of x continuing after the
// history, each summed from the same k inputs in the same order as over the whole sequence, so a
// sequence decoded in chunks gives the forward's bits. The next history is a view of the
// concatenation when that is small (one token: a copy fewer), a copy after a long chunk (a view would
// keep the whole chunk alive).
tensor_list causal_conv1d_continue_composite(const Tensor& x, const Tensor& history, const Tensor& w, const Tensor& bias) {
  const int64_t k = w.shape()[1], T = x.shape()[1];
  const Tensor xp = cat({history, x}, 1);
  const Tensor next = T <= k ? narrow(xp, 1, T, k - 1) : contiguous(narrow(xp, 1, T, k - 1));
  return {narrow(causal_conv1d(xp, w, bias), 1, k - 1, T), next};
}

// Decoding (not taped): the kernel reads the history in place of the zeros before t = 0 and writes
// the next history; equal to causal_conv1d over cat(history, x), its last T outputs.
tensor_list causal_conv1d_continue(const Tensor& x, const Tensor& history, const Tensor& w, const Tensor& bias) {
  check_inputs(x, w, bias);
  check_defined(kOp, history, "history");
  const int64_t k = w.shape()[1];
  // A float32 history with bfloat16 x: a decoder's float32 tails through a bf16 prompt.
  const bool history_f32 = x.dtype() == DType::bf16 && history.dtype() == DType::f32;
  if (history.shape() != Shape{x.shape()[0], k - 1, x.shape()[2]} || (history.dtype() != x.dtype() && !history_f32))
    throw std::invalid_argument(std::string(kOp) + ": history must be " + dtype_name(x.dtype()) + " [" +
                                std::to_string(x.shape()[0]) + ", " + std::to_string(k - 1) + ", " +
                                std::to_string(x.shape()[2]) + "] (or float32 with bfloat16 x), got " + history.str());
  if (GradMode::is_enabled() && needs_grad({&x, &history, &w, &bias}))
    throw std::invalid_argument(std::string(kOp) + " (continue): decoding only; it is not differentiable");
  if (!has_kernel(x, k)) {
    if (!history_f32) return causal_conv1d_continue_composite(x, history, w, bias);
    tensor_list r = causal_conv1d_continue_composite(x, to_dtype(history, x.dtype()), w, bias);
    return {r[0], to_dtype(r[1], DType::f32)};
  }
  NoGradGuard ng;
  const CausalConvShape s = shape_of(x, w);
  const DType pd = param_dtype(s.dtype);
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  Tensor next = empty(history.shape(), opts(history.dtype(), x.device()));
  Tensor xc = channels_unit(x), hc = channels_unit(history), wp = as_param(w, pd), bp = as_param(bias, pd);
  CausalConvForward c;
  c.history_f32 = history_f32;
  c.s = s;
  c.x = btc(xc), c.y = btc(y), c.history = btc(hc), c.history_out = btc(next);
  c.w = wp.data_ptr(), c.bias = bp.defined() ? bp.data_ptr() : nullptr;
  if (y.numel()) backend(x.device()).run(c);
  return {y, next};
}

}  // namespace ttt
