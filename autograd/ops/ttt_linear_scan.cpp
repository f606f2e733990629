// autograd/ops/ttt_linear_scan.cpp — the fused TTT-Linear scan (kernels/ttt_linear_scan.h, whose
// header has the math) as one tape node.
//
//   out, (W_T, b_T, accW, accb) = ttt_linear_scan(XQ, XK, XV, lr, tok, W0, b0, ln_w, ln_b)
//   XQ, XK, XV [B, H, T, f], lr [B, H, T], tok [K], W0 [H, f, f], b0 [H, f] or undefined (no inner
//   bias), ln_w, ln_b [H, f] or undefined (no LN + residual). W0 [B, H, f, f] with b0 [B, H, f]: a
//   state per sequence (decoding from a mini-batch boundary), forward only (no input may need grad). Only `out` is differentiable; the final
//   state and the accumulators of a partial last chunk are for decoding.
// Saved: the inputs and the states the forward stored every checkpoint_group chunks.
// Backward:
// - grad mode off (an ordinary backward): the fused backward kernel, every input's gradient;
// - create_graph: the composite twin the caller passes (the same function written with
//   differentiable ops, e.g. the dual form of layers/ttt_dual.cpp) is re-run taped from the saved
//   inputs and differentiated (autograd/checkpoint.h recompute_gradients), so gradients of
//   gradients are exact — never a silent wrong answer.
// Autocast: float32 inputs run with bf16 products and float32 accumulation (the kernels'
// low_precision mode), as autocast's matmuls do; the composite recomputation runs under the
// forward's autocast setting so it differentiates the same function.
// bf16 storage: XQ, XK, XV may be bf16 while the other inputs are float32 (an autocast model's
// projections, no cast): the kernels read them as bf16, compute in float32 with bf16 products,
// and write `out` (and the gradients of XQ, XK, XV) as bf16. Where the device has no such kernel
// (the CPU reference) they are cast to float32 around the float32 call, differentiably.
// Layout: `out` (and the gradients of XQ/XK/XV when the inputs are dense permuted views such as the
// heads of a [B, T, H·f] projection) are written in [B, T, H, f] memory order, so merging the heads
// afterwards is a free view.
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "autograd/ops/ttt_scan_tensors.h"
#include "kernels/ttt_linear_scan.h"

namespace ttt {

namespace {

using namespace scan_tensors;

const char* kOp = "ttt_linear_scan";

TTTLinearScanShape make_shape(const Tensor& xq, const Tensor& tok, const Tensor& w0, const Tensor& b0,
                              const Tensor& ln_w, const TTTScanOptions& o) {
  TTTLinearScanShape s;
  s.batch = xq.shape()[0];
  s.heads = xq.shape()[1];
  s.len = xq.shape()[2];
  s.head_dim = xq.shape()[3];
  s.mini_batch = tok.shape()[0];
  s.checkpoint_group = o.checkpoint_group > 0 ? o.checkpoint_group : 1;
  s.eps = o.eps;
  s.ln_residual = ln_w.defined();
  s.bias = b0.defined();
  s.dtype = tok.dtype();
  s.bf16_io = xq.dtype() == DType::bf16 && s.dtype == DType::f32;
  s.per_sequence_init = w0.defined() && w0.dim() == 4;
  s.low_precision = s.dtype == DType::f32 && (Autocast::enabled() || s.bf16_io);
  return s;
}

void check_inputs(const tensor_list& in) {
  const Tensor &xq = in[0], &xk = in[1], &xv = in[2], &lr = in[3], &tok = in[4], &w0 = in[5], &b0 = in[6],
               &lw = in[7], &lb = in[8];
  const char* names[] = {"XQ", "XK", "XV", "lr", "tok", "W0", "b0", "ln_w", "ln_b"};
  for (int i : {0, 1, 2, 3, 4, 5}) check_defined(kOp, in[i], names[i]);
  kc::check_floating(xq, kOp);
  kc::check_floating(lr, kOp);
  for (size_t i = 1; i < in.size(); ++i) {
    if (!in[i].defined()) continue;
    check_same_device(kOp, xq, in[i]);
    check_same_dtype(kOp, i < 3 ? xq : lr, in[i]);
  }
  check_qkv_dtype(kOp, xq.dtype(), lr.dtype());
  if (lw.defined() != lb.defined()) throw std::invalid_argument("ttt_linear_scan: ln_w and ln_b go together");
  const auto bad = [&](const std::string& what) {
    throw std::invalid_argument(std::string("ttt_linear_scan: ") + what + " (XQ " + xq.shape().str() + ", XK " +
                                xk.shape().str() + ", XV " + xv.shape().str() + ", lr " + lr.shape().str() + ", tok " +
                                tok.shape().str() + ", W0 " + w0.shape().str() + ")");
  };
  if (xq.dim() != 4 || xk.shape() != xq.shape() || xv.shape() != xq.shape()) bad("expected XQ, XK, XV [B, H, T, f]");
  const int64_t B = xq.shape()[0], H = xq.shape()[1], T = xq.shape()[2], f = xq.shape()[3];
  if (T == 0 || f == 0) bad("empty sequence or head");
  if (lr.shape() != Shape{B, H, T}) bad("expected lr [B, H, T]");
  if (tok.dim() != 1 || tok.shape()[0] < 1) bad("expected tok [K], K >= 1");
  const bool per_sequence = w0.dim() == 4;
  if (w0.shape() != Shape{H, f, f} && w0.shape() != Shape{B, H, f, f}) bad("expected W0 [H, f, f] or [B, H, f, f]");
  if (b0.defined() && b0.shape() != (per_sequence ? Shape{B, H, f} : Shape{H, f}))
    bad(per_sequence ? "expected b0 [B, H, f] with W0 [B, H, f, f]" : "expected b0 [H, f]");
  for (const Tensor* p : {&lw, &lb})
    if (p->defined() && p->shape() != Shape{H, f}) bad("expected ln_w, ln_b [H, f]");
}

tensor_list fused_backward(const tensor_list& in, const Tensor& states, const Tensor& dout,
                           const TTTLinearScanShape& s) {
  NoGradGuard ng;
  const Tensor xq = unit_last(in[0]), xk = unit_last(in[1]), xv = unit_last(in[2]);
  const Tensor d = unit_last(dout.dtype() == in[0].dtype() ? dout : dout.to(in[0].dtype()));
  Tensor tok = kc::contiguous(in[4]), w0 = kc::contiguous(in[5]);
  Tensor b0 = in[6].defined() ? kc::contiguous(in[6]) : Tensor();
  Tensor lw = in[7].defined() ? kc::contiguous(in[7]) : Tensor(), lb = in[8].defined() ? kc::contiguous(in[8]) : Tensor();
  const Device dev = xq.device();
  const TensorOptions o = opts(s.dtype, dev);
  Tensor dxq = grad_like(in[0]), dxk = grad_like(in[1]), dxv = grad_like(in[2]);
  Tensor dlr = empty(in[3].shape(), o), dtok = empty(tok.shape(), o), dw0 = empty(w0.shape(), o);
  Tensor db0 = b0.defined() ? empty(b0.shape(), o) : Tensor();
  Tensor dlw = lw.defined() ? empty(lw.shape(), o) : Tensor(), dlb = lb.defined() ? empty(lb.shape(), o) : Tensor();
  TTTLinearScanBackward c;
  c.s = s;
  c.xq = bht(xq), c.xk = bht(xk), c.xv = bht(xv), c.lr = bht(in[3]);
  c.tok = tok.data_ptr(), c.w0 = w0.data_ptr(), c.b0 = ptr(b0), c.ln_w = ptr(lw), c.ln_b = ptr(lb);
  c.states = states.data_ptr();
  c.dout = bht(d);
  c.dxq = bht(dxq), c.dxk = bht(dxk), c.dxv = bht(dxv), c.dlr = bht(dlr);
  c.dtok = dtok.data_ptr(), c.dw0 = dw0.data_ptr(), c.db0 = ptr(db0), c.dln_w = ptr(dlw), c.dln_b = ptr(dlb);
  const size_t ws_elems = (c.workspace_bytes(dev) + dtype_size(s.dtype) - 1) / dtype_size(s.dtype);
  Tensor ws = ws_elems ? empty({static_cast<int64_t>(ws_elems)}, o) : Tensor();
  c.workspace = ws.defined() ? ws.data_ptr() : nullptr;
  backend(dev).run(c);
  return {dxq, dxk, dxv, dlr, dtok, dw0, db0, dlw, dlb};
}

// bf16 XQ/XK/XV where the device has no bf16-storage kernel: the float32 call, cast around.
bool cast_around(const Tensor& xq, const TTTLinearScanShape& s) {
  return s.bf16_io && !ttt_linear_scan_unsupported(xq.device(), s).empty();
}
TTTLinearScanShape float_storage(TTTLinearScanShape s) {
  s.bf16_io = false;
  return s;
}

// A forward call ready to run: its outputs {out, W_T, b_T, accW, accb, states} allocated and the
// operands it reads (contiguous copies where needed) kept alive until it has been enqueued.
struct PreparedForward {
  TTTLinearScanForward call;
  tensor_list outputs, operands;
};

PreparedForward prepare_forward(const tensor_list& in, const TTTLinearScanShape& s) {
  NoGradGuard ng;
  const Tensor& xq = in[0];
  const int64_t B = s.batch, H = s.heads, f = s.head_dim;
  const TensorOptions opt = opts(s.dtype, xq.device());
  PreparedForward r;
  r.outputs = {empty_heads_last(xq.shape(), s.io_dtype(), xq.device()), empty({B, H, f, f}, opt), empty({B, H, f}, opt),
               empty({B, H, f, f}, opt), empty({B, H, f}, opt), empty({s.state_elems()}, opt)};
  const auto maybe = [](const Tensor& t) { return t.defined() ? kc::contiguous(t) : Tensor(); };
  // XQ, XK, XV, lr, tok, W0, b0, ln_w, ln_b as the kernels read them
  r.operands = {unit_last(in[0]), unit_last(in[1]), unit_last(in[2]), in[3], kc::contiguous(in[4]),
                kc::contiguous(in[5]), maybe(in[6]), maybe(in[7]), maybe(in[8])};
  const tensor_list& x = r.operands;
  TTTLinearScanForward& c = r.call;
  c.s = s;
  c.xq = bht(x[0]), c.xk = bht(x[1]), c.xv = bht(x[2]), c.lr = bht(x[3]);
  c.tok = x[4].data_ptr(), c.w0 = x[5].data_ptr(), c.b0 = ptr(x[6]), c.ln_w = ptr(x[7]), c.ln_b = ptr(x[8]);
  const tensor_list& o = r.outputs;
  c.out = bht(o[0]);
  c.w_final = o[1].data_ptr(), c.b_final = o[2].data_ptr();
  c.acc_w = o[3].data_ptr(), c.acc_b = o[4].data_ptr();
  c.states = o[5].data_ptr();
  return r;
}

}  // namespace

std::string ttt_linear_scan_unsupported(const Tensor& xq, const Tensor& tok, const Tensor& b0, const Tensor& ln_w,
                                        const TTTScanOptions& o) {
  if (xq.dim() != 4 || tok.dim() != 1) return "expected XQ [B, H, T, f] and tok [K]";
  const TTTLinearScanShape s = make_shape(xq, tok, Tensor(), b0, ln_w, o);  // the initial state's layout does not matter
  return ttt_linear_scan_unsupported(xq.device(), cast_around(xq, s) ? float_storage(s) : s);
}

tensor_list ttt_linear_scan(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& tok,
                            const Tensor& w0, const Tensor& b0, const Tensor& ln_w, const Tensor& ln_b,
                            const TTTScanOptions& o, const TTTScanComposite& composite) {
  const tensor_list inputs = {xq, xk, xv, lr, tok, w0, b0, ln_w, ln_b};
  check_inputs(inputs);
  const TTTLinearScanShape s = make_shape(xq, tok, w0, b0, ln_w, o);
  if (cast_around(xq, s))
    return with_qkv_as(inputs, tok.dtype(), [&](const tensor_list& y) {
      return ttt_linear_scan(y[0], y[1], y[2], lr, tok, w0, b0, ln_w, ln_b, o, composite);
    });
  if (s.per_sequence_init && needs_grad(inputs))
    throw std::invalid_argument("ttt_linear_scan: a per-sequence initial state W0 [B, H, f, f] is forward-only (decoding); "
                                "no input may require grad");
  const std::string why = ttt_linear_scan_unsupported(xq.device(), s);
  if (!why.empty())
    throw std::invalid_argument(std::string("ttt_linear_scan: no fused kernel for this call on ") + xq.device().str() +
                                ": " + why);
  PreparedForward fwd = prepare_forward(inputs, s);
  backend(xq.device()).run(fwd.call);
  const Tensor& out = fwd.outputs[0];
  const Tensor& states = fwd.outputs[5];
  if (needs_grad(inputs)) {
    if (!composite) throw std::invalid_argument("ttt_linear_scan: a composite twin is required for autograd");
    tensor_list saved = inputs;
    saved.push_back(states);
    const bool amp = Autocast::enabled();
    const DType amp_dtype = Autocast::dtype();
    record(kOp, inputs, {out}, saved, [s, composite, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
      const tensor_list in(c.saved.begin(), c.saved.begin() + 9);
      if (!GradMode::is_enabled()) return fused_backward(in, c.saved[9], g[0], s);
      BackwardCtx inputs_only{in, c.needs_input_grad};
      // The composite twin takes one dtype: bf16-stored XQ/XK/XV are cast to it, and out back.
      const CheckpointFn fn = [composite](const tensor_list& x) {
        if (x[0].dtype() == x[4].dtype()) return tensor_list{composite(x)};
        return with_qkv_as(x, x[4].dtype(), [&](const tensor_list& y) { return tensor_list{composite(y)}; });
      };
      return recompute_gradients(fn, inputs_only, g, amp, amp_dtype);
    });
  }
  return {out, fwd.outputs[1], fwd.outputs[2], fwd.outputs[3], fwd.outputs[4]};
}

std::vector<tensor_list> ttt_linear_scan_group(const std::vector<tensor_list>& calls,
                                               const std::vector<TTTScanOptions>& options) {
  if (GradMode::is_enabled())
    throw std::invalid_argument("ttt_linear_scan_group: forward only (run it under NoGradGuard)");
  if (options.size() != calls.size())
    throw std::invalid_argument("ttt_linear_scan_group: " + std::to_string(calls.size()) + " calls but " +
                                std::to_string(options.size()) + " options");
  if (calls.empty()) return {};
  std::vector<PreparedForward> fwd;
  std::vector<tensor_list> results;
  for (size_t i = 0; i < calls.size(); ++i) {
    const tensor_list& in = calls[i];
    const TTTScanOptions& o = options[i];
    if (in.size() != 9) throw std::invalid_argument("ttt_linear_scan_group: every call takes ttt_linear_scan's 9 inputs");
    check_inputs(in);
    check_same_device("ttt_linear_scan_group", calls[0][0], in[0]);
    const TTTLinearScanShape s = make_shape(in[0], in[4], in[5], in[6], in[7], o);
    if (cast_around(in[0], s)) {  // the CPU: bf16 storage cast around a float32 call, alone
      results.push_back(ttt_linear_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], o, nullptr));
      continue;
    }
    const std::string why = ttt_linear_scan_unsupported(in[0].device(), s);
    if (!why.empty())
      throw std::invalid_argument("ttt_linear_scan_group: no fused kernel for a call on " + in[0].device().str() + ": " +
                                  why);
    fwd.push_back(prepare_forward(in, s));
    results.emplace_back();  // filled below
  }
  TTTLinearScanForwardGroup group;
  for (PreparedForward& f : fwd) group.calls.push_back(&f.call);
  if (!group.calls.empty()) backend(calls[0][0].device()).run(group);
  size_t next = 0;
  for (tensor_list& r : results)
    if (r.empty()) {
      const tensor_list& out = fwd[next++].outputs;
      r = {out[0], out[1], out[2], out[3], out[4]};
    }
  return results;
}

}  // namespace ttt
