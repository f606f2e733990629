// autograd/ops/ttt_linear_decode.cpp — one TTT-Linear decode step in primal form as one kernel call
// (kernels/ttt_linear_decode.h has the math). Not taped: decoding only; a step autograd must see
// through runs the composite primal form (layers/ttt_primal.cpp), which this equals.
//
//   out, next_W, next_b = ttt_linear_decode_step(xq, xk, xv, lr, tok, W, b, accW, accb, ln_w, ln_b)
//   xq, xk, xv [B, H, 1, f], lr [B, H, 1], tok [1], W [B, H, f, f], b [B, H, 1, f] or undefined (no
//   inner bias), accW / accb in W / b's shapes or undefined (zero: the mini-batch's first token),
//   ln_w, ln_b [H, f] or undefined (no LN + residual). next_* are the accumulators with this token,
//   or with `commit` the state after the mini-batch.
#include <stdexcept>
#include <string>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "autograd/ops/ttt_scan_tensors.h"
#include "kernels/ttt_linear_decode.h"

namespace ttt {

namespace {

using namespace scan_tensors;

const char* kOp = "ttt_linear_decode_step";

void check_inputs(const tensor_list& in) {
  const char* names[] = {"xq", "xk", "xv", "lr", "tok", "W", "b", "accW", "accb", "ln_w", "ln_b"};
  for (int i : {0, 1, 2, 3, 4, 5}) check_defined(kOp, in[i], names[i]);
  const Tensor& xq = in[0];
  kc::check_floating(xq, kOp);
  for (size_t i = 1; i < in.size(); ++i) {
    if (!in[i].defined()) continue;
    check_same_device(kOp, xq, in[i]);
    check_same_dtype(kOp, xq, in[i]);
  }
  const auto bad = [&](const std::string& what) {
    throw std::invalid_argument(std::string(kOp) + ": " + what + " (xq " + xq.shape().str() + ", lr " +
                                in[3].shape().str() + ", W " + in[5].shape().str() + ")");
  };
  if (xq.dim() != 4 || xq.shape()[2] != 1) bad("expected xq [B, H, 1, f]: one token");
  const int64_t B = xq.shape()[0], H = xq.shape()[1], f = xq.shape()[3];
  if (in[1].shape() != xq.shape() || in[2].shape() != xq.shape()) bad("expected xk, xv as xq");
  if (in[3].shape() != Shape{B, H, 1}) bad("expected lr [B, H, 1]");
  if (in[4].numel() != 1) bad("expected tok of one element");
  if (in[5].shape() != Shape{B, H, f, f}) bad("expected W [B, H, f, f]");
  if (in[7].defined() && in[7].shape() != in[5].shape()) bad("expected accW as W");
  const Shape row{B, H, 1, f};
  for (int i : {6, 8})
    if (in[i].defined() && in[i].shape() != row) bad(std::string("expected ") + names[i] + " [B, H, 1, f]");
  if (in[8].defined() && !in[6].defined()) bad("accb without b");
  if (in[9].defined() != in[10].defined()) bad("ln_w and ln_b go together");
  for (int i : {9, 10})
    if (in[i].defined() && in[i].shape() != Shape{H, f}) bad("expected ln_w, ln_b [H, f]");
}

}  // namespace

std::string ttt_linear_decode_step_unsupported(const Tensor& xq, int64_t head_dim) {
  TTTLinearDecodeShape s;
  s.head_dim = head_dim;
  s.dtype = xq.dtype();
  return ttt_linear_decode_unsupported(xq.device(), s);
}

tensor_list ttt_linear_decode_step(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr,
                                   const Tensor& tok, const Tensor& w, const Tensor& b, const Tensor& acc_w,
                                   const Tensor& acc_b, const Tensor& ln_w, const Tensor& ln_b, double eps, bool commit) {
  const tensor_list in = {xq, xk, xv, lr, tok, w, b, acc_w, acc_b, ln_w, ln_b};
  check_inputs(in);
  if (GradMode::is_enabled() && needs_grad(in))
    throw std::invalid_argument(std::string(kOp) + ": decoding only; it is not differentiable (use the primal form)");
  NoGradGuard ng;
  TTTLinearDecodeStep c;
  c.s.batch = xq.shape()[0];
  c.s.heads = xq.shape()[1];
  c.s.head_dim = xq.shape()[3];
  c.s.eps = eps;
  c.s.ln_residual = ln_w.defined();
  c.s.bias = b.defined();
  c.s.commit = commit;
  c.s.dtype = xq.dtype();
  const std::string why = ttt_linear_decode_unsupported(xq.device(), c.s);
  if (!why.empty()) throw std::invalid_argument(std::string(kOp) + ": no kernel on " + xq.device().str() + ": " + why);
  const Tensor q = unit_last(xq), k = unit_last(xk), v = unit_last(xv);
  const Tensor W = head_blocks_unit(w), bb = head_blocks_unit(b), aw = head_blocks_unit(acc_w), ab = head_blocks_unit(acc_b);
  const Tensor t = kc::contiguous(tok), lw = contiguous_or_none(ln_w), lb = contiguous_or_none(ln_b);
  const TensorOptions o = opts(xq.dtype(), xq.device());
  Tensor out = empty_heads_last(xq.shape(), xq.dtype(), xq.device());  // merging the heads afterwards is a view
  Tensor next_w = empty(w.shape(), o), next_b = empty_or_none(b, o);
  c.xq = bht(q), c.xk = bht(k), c.xv = bht(v), c.lr = bht(lr);
  c.tok = t.data_ptr();
  c.w = head_blocks(W), c.b = head_blocks(bb), c.acc_w = head_blocks(aw), c.acc_b = head_blocks(ab);
  c.ln_w = ptr(lw), c.ln_b = ptr(lb);
  c.out = bht(out);
  c.next_w = next_w.data_ptr(), c.next_b = ptr(next_b);
  if (out.numel()) backend(xq.device()).run(c);
  return {out, next_w, next_b};
}

}  // namespace ttt
