// autograd/ops/ttt_mlp_scan.cpp — the fused TTT-MLP scan (kernels/ttt_mlp_scan.h, whose header has
// the math) as one tape node.
//
//   out, state_T, acc = ttt_mlp_scan(XQ, XK, XV, lr, tok, W1, b1, W2, b2, ln_w, ln_b)
//   XQ, XK, XV [B, H, T, f], lr [B, H, T], tok [K], W1 [H, f, h], b1 [H, h], W2 [H, h, f], b2 [H, f]
//   (b1, b2 both undefined: no inner biases), ln_w, ln_b [H, f] or undefined (no LN + residual).
//   Only `out` is differentiable; the final state and the accumulators of a partial last chunk
//   (W1, b1, W2, b2 flattened per (batch, head), kernels/ttt_mlp_scan.h) are for decoding.
// Saved: the inputs and the states the forward stored every checkpoint_group chunks.
// Backward:
// - grad mode off (an ordinary backward): the fused backward kernel, every input's gradient;
// - create_graph: the composite twin the caller passes (layers/ttt_dual.h dual_mlp_scan) is re-run
//   taped from the saved inputs and differentiated (autograd/checkpoint.h recompute_gradients), so
//   gradients of gradients are exact.
// Autocast: float32 inputs ask for bf16 products (the shape's low_precision, for a device kernel);
// the composite recomputation runs under the forward's autocast setting.
// bf16 storage: XQ, XK, XV may be bf16 while the other inputs are float32 (an autocast model's
// projections, model.ttt.bf16_io). The CUDA kernels read them, and dout, as bf16 and write `out`
// and the gradients of XQ, XK, XV as bf16 (TTTMLPScanShape::bf16_io): no float32 copies. Where no
// kernel reads bf16 (the CPU reference) the op hands it float32 copies made on the way in and casts
// `out` and the gradients back. The values are those of the float32 call on the bf16 values.
// Layout: `out` and the gradients of XQ/XK/XV are written as ttt_linear_scan's are
// (autograd/ops/ttt_scan_tensors.h).
#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "autograd/ops/ttt_scan_tensors.h"
#include "kernels/ttt_mlp_scan.h"

namespace ttt {

namespace {

using namespace scan_tensors;

const char* kOp = "ttt_mlp_scan";
constexpr size_t kInputs = 11;

// The call's shape and why no kernel of xq's device runs it (empty when one does). dtype: the other
// inputs' (the kernels' float32 or float64; XQ may be bf16 storage of float32). bf16 storage the
// device's kernel does not take is cast around (bf16_io off), which the reason then describes.
struct CheckedShape {
  TTTMLPScanShape s;
  std::string why;
};
CheckedShape make_shape(const Tensor& xq, DType dtype, int64_t mini_batch, int64_t hidden, bool bias, bool ln,
                        const TTTScanOptions& o) {
  TTTMLPScanShape s;
  s.batch = xq.shape()[0];
  s.heads = xq.shape()[1];
  s.len = xq.shape()[2];
  s.head_dim = xq.shape()[3];
  s.hidden = hidden;
  s.mini_batch = mini_batch;
  s.checkpoint_group = o.checkpoint_group > 0 ? o.checkpoint_group : 1;
  s.eps = o.eps;
  s.cluster = o.cluster;
  s.split_walk = o.split_walk;
  s.ln_residual = ln;
  s.bias = bias;
  s.dtype = dtype;
  s.bf16_io = xq.dtype() == DType::bf16 && s.dtype == DType::f32;
  s.low_precision = s.dtype == DType::f32 && (Autocast::enabled() || s.bf16_io);
  std::string why = ttt_mlp_scan_unsupported(xq.device(), s);
  if (s.bf16_io && !why.empty()) {  // cast around it
    s.bf16_io = false;
    why = ttt_mlp_scan_unsupported(xq.device(), s);
  }
  return {s, why};
}

void check_inputs(const tensor_list& in) {
  const Tensor &xq = in[0], &xk = in[1], &xv = in[2], &lr = in[3], &tok = in[4], &w1 = in[5], &b1 = in[6],
               &w2 = in[7], &b2 = in[8], &lw = in[9], &lb = in[10];
  const char* names[] = {"XQ", "XK", "XV", "lr", "tok", "W1", "b1", "W2"};
  for (int i : {0, 1, 2, 3, 4, 5, 7}) check_defined(kOp, in[i], names[i]);
  kc::check_floating(xq, kOp);
  for (size_t i = 1; i < in.size(); ++i) {
    if (!in[i].defined()) continue;
    check_same_device(kOp, xq, in[i]);
    check_same_dtype(kOp, i < 3 ? xq : lr, in[i]);
  }
  check_qkv_dtype(kOp, xq.dtype(), lr.dtype());
  if (lw.defined() != lb.defined()) throw std::invalid_argument("ttt_mlp_scan: ln_w and ln_b go together");
  if (b1.defined() != b2.defined()) throw std::invalid_argument("ttt_mlp_scan: b1 and b2 go together");
  const auto bad = [&](const std::string& what) {
    throw std::invalid_argument(std::string("ttt_mlp_scan: ") + what + " (XQ " + xq.shape().str() + ", XK " +
                                xk.shape().str() + ", XV " + xv.shape().str() + ", lr " + lr.shape().str() + ", tok " +
                                tok.shape().str() + ", W1 " + w1.shape().str() + ", W2 " + w2.shape().str() + ")");
  };
  if (xq.dim() != 4 || xk.shape() != xq.shape() || xv.shape() != xq.shape()) bad("expected XQ, XK, XV [B, H, T, f]");
  const int64_t B = xq.shape()[0], H = xq.shape()[1], T = xq.shape()[2], f = xq.shape()[3];
  if (T == 0 || f == 0) bad("empty sequence or head");
  if (lr.shape() != Shape{B, H, T}) bad("expected lr [B, H, T]");
  if (tok.dim() != 1 || tok.shape()[0] < 1) bad("expected tok [K], K >= 1");
  if (w1.dim() != 3 || w1.shape()[0] != H || w1.shape()[1] != f || w1.shape()[2] < 1) bad("expected W1 [H, f, h]");
  const int64_t h = w1.shape()[2];
  if (w2.shape() != Shape{H, h, f}) bad("expected W2 [H, h, f]");
  if (b1.defined() && b1.shape() != Shape{H, h}) bad("expected b1 [H, h]");
  for (const Tensor* p : {&b2, &lw, &lb})
    if (p->defined() && p->shape() != Shape{H, f}) bad("expected b2, ln_w, ln_b [H, f]");
}

// The kernel-facing copies of the parameter inputs (tok .. ln_b), contiguous.
tensor_list contiguous_params(const tensor_list& in) {
  tensor_list p;
  for (size_t i = 4; i < kInputs; ++i) p.push_back(contiguous_or_none(in[i]));
  return p;
}

tensor_list fused_backward(const tensor_list& in, const Tensor& states, const Tensor& dout, const TTTMLPScanShape& s) {
  NoGradGuard ng;
  // bf16 storage the kernel does not read: float32 copies for it, gradients cast back below.
  const DType dt = s.dtype, io = s.io_dtype();
  const Tensor xq = unit_last(as_dtype(in[0], io)), xk = unit_last(as_dtype(in[1], io)), xv = unit_last(as_dtype(in[2], io));
  const Tensor d = unit_last(as_dtype(dout, io));
  const tensor_list p = contiguous_params(in);  // tok, W1, b1, W2, b2, ln_w, ln_b
  const TensorOptions o = opts(dt, xq.device());
  Tensor dxq = grad_like(in[0], io), dxk = grad_like(in[1], io), dxv = grad_like(in[2], io), dlr = empty(in[3].shape(), o);
  tensor_list dp;
  for (const Tensor& t : p) dp.push_back(empty_or_none(t, o));
  TTTMLPScanBackward c;
  c.s = s;
  c.xq = bht(xq), c.xk = bht(xk), c.xv = bht(xv), c.lr = bht(in[3]);
  c.tok = ptr(p[0]), c.w1 = ptr(p[1]), c.b1 = ptr(p[2]), c.w2 = ptr(p[3]), c.b2 = ptr(p[4]);
  c.ln_w = ptr(p[5]), c.ln_b = ptr(p[6]);
  c.states = states.data_ptr();
  c.dout = bht(d);
  c.dxq = bht(dxq), c.dxk = bht(dxk), c.dxv = bht(dxv), c.dlr = bht(dlr);
  c.dtok = ptr(dp[0]), c.dw1 = ptr(dp[1]), c.db1 = ptr(dp[2]), c.dw2 = ptr(dp[3]), c.db2 = ptr(dp[4]);
  c.dln_w = ptr(dp[5]), c.dln_b = ptr(dp[6]);
  const size_t ws_elems = (c.workspace_bytes() + dtype_size(s.dtype) - 1) / dtype_size(s.dtype);
  Tensor ws = empty({static_cast<int64_t>(ws_elems)}, o);
  c.workspace = ws.data_ptr();
  backend(xq.device()).run(c);
  tensor_list grads = {as_dtype(dxq, in[0].dtype()), as_dtype(dxk, in[1].dtype()), as_dtype(dxv, in[2].dtype()), dlr};
  grads.insert(grads.end(), dp.begin(), dp.end());
  return grads;
}

// W1, b1, W2, b2 of a flat [B, H, state_size] tensor as [B, H, f, h], [B, H, h], [B, H, h, f], [B, H, f]:
// views of it (each head's block of each part is contiguous), not copies. Training drops them;
// a prompt's decoding keeps them as its state (the decode kernels read per-head blocks).
tensor_list split_state(const Tensor& flat, const TTTMLPScanShape& s) {
  const int64_t B = s.batch, H = s.heads, f = s.head_dim, h = s.hidden;
  const Shape shapes[] = {{B, H, f, h}, {B, H, h}, {B, H, h, f}, {B, H, f}};
  tensor_list parts;
  int64_t off = 0;
  for (const Shape& sh : shapes) {
    const int64_t n = sh.numel() / (B * H);
    parts.push_back(reshape(narrow(flat, 2, off, n), sh));
    off += n;
  }
  return parts;
}

}  // namespace

std::string ttt_mlp_scan_unsupported(const Tensor& xq, DType dtype, int64_t mini_batch, int64_t hidden, bool bias,
                                     bool ln, const TTTScanOptions& o) {
  if (xq.dim() != 4) return "expected XQ [B, H, T, f]";
  if (!qkv_dtype_fits(xq.dtype(), dtype)) return "XQ must have the other inputs' dtype, or be bf16 with float32 others";
  return make_shape(xq, dtype, mini_batch, hidden, bias, ln, o).why;
}

tensor_list ttt_mlp_scan(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& tok,
                         const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, const Tensor& ln_w,
                         const Tensor& ln_b, const TTTScanOptions& o, const TTTScanComposite& composite) {
  const tensor_list inputs = {xq, xk, xv, lr, tok, w1, b1, w2, b2, ln_w, ln_b};
  check_inputs(inputs);
  const auto [s, why] = make_shape(xq, lr.dtype(), tok.shape()[0], w1.shape()[2], b1.defined(), ln_w.defined(), o);
  if (!why.empty())
    throw std::invalid_argument(std::string("ttt_mlp_scan: no fused kernel for this call on ") + xq.device().str() +
                                ": " + why);
  const TensorOptions opt = opts(s.dtype, xq.device());
  Tensor out = empty_heads_last(xq.shape(), s.io_dtype(), xq.device());
  Tensor states = empty({s.state_elems()}, opt);
  Tensor final_state = empty({s.batch, s.heads, s.state_size()}, opt), acc = empty(final_state.shape(), opt);
  {
    NoGradGuard ng;
    const DType io = s.io_dtype();
    const Tensor q = unit_last(as_dtype(xq, io)), k = unit_last(as_dtype(xk, io)), v = unit_last(as_dtype(xv, io));
    const tensor_list p = contiguous_params(inputs);
    TTTMLPScanForward c;
    c.s = s;
    c.xq = bht(q), c.xk = bht(k), c.xv = bht(v), c.lr = bht(lr);
    c.tok = ptr(p[0]), c.w1 = ptr(p[1]), c.b1 = ptr(p[2]), c.w2 = ptr(p[3]), c.b2 = ptr(p[4]);
    c.ln_w = ptr(p[5]), c.ln_b = ptr(p[6]);
    c.out = bht(out);
    c.states = states.data_ptr();
    c.final_state = final_state.data_ptr(), c.acc = acc.data_ptr();
    backend(xq.device()).run(c);
    out = as_dtype(out, xq.dtype());  // bf16 storage cast around: out as bf16 too
  }
  if (needs_grad(inputs)) {
    if (!composite) throw std::invalid_argument("ttt_mlp_scan: a composite twin is required for autograd");
    tensor_list saved = inputs;
    saved.push_back(states);
    const bool amp = Autocast::enabled();
    const DType amp_dtype = Autocast::dtype();
    record(kOp, inputs, {out}, saved, [s, composite, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
      const tensor_list in(c.saved.begin(), c.saved.begin() + kInputs);
      if (!GradMode::is_enabled()) return fused_backward(in, c.saved[kInputs], g[0], s);
      BackwardCtx inputs_only{in, c.needs_input_grad};
      // The composite twin takes one dtype: bf16-stored XQ/XK/XV are cast to it, and out back.
      const CheckpointFn fn = [composite](const tensor_list& x) {
        if (x[0].dtype() == x[3].dtype()) return tensor_list{composite(x)};
        return with_qkv_as(x, x[3].dtype(), [&](const tensor_list& y) { return tensor_list{composite(y)}; });
      };
      return recompute_gradients(fn, inputs_only, g, amp, amp_dtype);
    });
  }
  NoGradGuard ng;
  tensor_list res = {out};
  for (const Tensor* flat : {&final_state, &acc})
    for (const Tensor& t : split_state(*flat, s)) res.push_back(t);
  return res;
}

}  // namespace ttt
