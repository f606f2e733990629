// autograd/ops/ttt_mlp_decode.cpp — one TTT-MLP decode step in primal form as one kernel call
// (kernels/ttt_mlp_decode.h has the math). Not taped: decoding only; a step autograd must see
// through runs the composite primal form (layers/ttt_primal.cpp), which this equals.
//
//   out, next = ttt_mlp_decode_step(xq, xk, xv, lr, tok, W, acc, ln_w, ln_b)
//   xq, xk, xv [B, H, 1, f], lr [B, H, 1], tok [1]; W = {W1 [B, H, f, h], b1 [B, H, 1, h], W2 [B, H, h, f],
//   b2 [B, H, 1, f]} (biases both undefined: none); acc in the same shapes, or all undefined (zero);
//   ln_w, ln_b [H, f] or undefined (no LN + residual). next: the accumulators with this token, or
//   with `commit` the state after the mini-batch.
#include <stdexcept>
#include <string>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "autograd/ops/ttt_scan_tensors.h"
#include "kernels/ttt_mlp_decode.h"

namespace ttt {

namespace {

using namespace scan_tensors;

const char* kOp = "ttt_mlp_decode_step";

}  // namespace

std::string ttt_mlp_decode_step_unsupported(const Tensor& xq, int64_t head_dim, int64_t hidden) {
  TTTMLPDecodeShape s;
  s.head_dim = head_dim, s.hidden = hidden, s.dtype = xq.dtype();
  return ttt_mlp_decode_unsupported(xq.device(), s);
}

tensor_list ttt_mlp_decode_step(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr,
                                const Tensor& tok, const tensor_list& w, const tensor_list& acc, const Tensor& ln_w,
                                const Tensor& ln_b, double eps, bool commit) {
  const auto bad = [&](const std::string& what) {
    throw std::invalid_argument(std::string(kOp) + ": " + what + " (xq " + xq.shape().str() + ")");
  };
  if (w.size() != 4 || acc.size() != 4) bad("expected the state W1, b1, W2, b2 and four accumulators");
  for (const Tensor* t : {&xq, &xk, &xv, &lr, &tok, &w[0], &w[2]}) check_defined(kOp, *t);
  tensor_list all = {xq, xk, xv, lr, tok, ln_w, ln_b};
  all.insert(all.end(), w.begin(), w.end());
  all.insert(all.end(), acc.begin(), acc.end());
  kc::check_floating(xq, kOp);
  for (const Tensor& t : all)
    if (t.defined()) check_same_device(kOp, xq, t), check_same_dtype(kOp, xq, t);
  if (xq.dim() != 4 || xq.shape()[2] != 1 || xk.shape() != xq.shape() || xv.shape() != xq.shape())
    bad("expected xq, xk, xv [B, H, 1, f]: one token");
  const int64_t B = xq.shape()[0], H = xq.shape()[1], f = xq.shape()[3], hd = w[0].dim() == 4 ? w[0].shape()[3] : 0;
  if (lr.shape() != Shape{B, H, 1}) bad("expected lr [B, H, 1]");
  if (tok.numel() != 1) bad("expected tok of one element");
  const bool bias = w[1].defined();
  if (w[3].defined() != bias) bad("b1 and b2 go together");
  const Shape shapes[4] = {{B, H, f, hd}, {B, H, 1, hd}, {B, H, hd, f}, {B, H, 1, f}};
  const bool have_acc = acc[0].defined();
  for (int k = 0; k < 4; ++k) {
    const bool used = k % 2 == 0 || bias;
    if (used && w[k].shape() != shapes[k]) bad("expected W1 [B, H, f, h], b1 [B, H, 1, h], W2 [B, H, h, f], b2 [B, H, 1, f]");
    if (acc[k].defined() != (have_acc && used) || (acc[k].defined() && acc[k].shape() != shapes[k]))
      bad("expected the accumulators in the state's shapes, all or none");
  }
  if (ln_w.defined() != ln_b.defined()) bad("ln_w and ln_b go together");
  for (const Tensor* p : {&ln_w, &ln_b})
    if (p->defined() && p->shape() != Shape{H, f}) bad("expected ln_w, ln_b [H, f]");
  if (GradMode::is_enabled() && needs_grad(all))
    throw std::invalid_argument(std::string(kOp) + ": decoding only; it is not differentiable (use the primal form)");
  NoGradGuard ng;
  TTTMLPDecodeStep c;
  c.s.batch = B, c.s.heads = H, c.s.head_dim = f, c.s.hidden = hd;
  c.s.eps = eps, c.s.ln_residual = ln_w.defined(), c.s.bias = bias, c.s.commit = commit, c.s.dtype = xq.dtype();
  const std::string why = ttt_mlp_decode_unsupported(xq.device(), c.s);
  if (!why.empty()) throw std::invalid_argument(std::string(kOp) + ": no kernel on " + xq.device().str() + ": " + why);
  const Tensor q = unit_last(xq), k = unit_last(xk), v = unit_last(xv), t = kc::contiguous(tok);
  const Tensor lw = contiguous_or_none(ln_w), lb = contiguous_or_none(ln_b);
  const TensorOptions o = opts(xq.dtype(), xq.device());
  tensor_list wu(4), au(4), next(4);
  for (int i = 0; i < 4; ++i) {
    // The CUDA kernel reads W2's rows 16 bytes at a time.
    wu[i] = head_blocks_unit(w[i], /*aligned=*/i == 2), au[i] = head_blocks_unit(acc[i]);
    next[i] = empty_or_none(w[i], o);
    c.w[i] = head_blocks(wu[i]), c.acc[i] = head_blocks(au[i]), c.next[i] = ptr(next[i]);
  }
  Tensor out = empty_heads_last(xq.shape(), xq.dtype(), xq.device());  // merging the heads afterwards is a view
  c.xq = bht(q), c.xk = bht(k), c.xv = bht(v), c.lr = bht(lr);
  c.tok = t.data_ptr(), c.ln_w = ptr(lw), c.ln_b = ptr(lb);
  c.out = bht(out);
  if (out.numel()) backend(xq.device()).run(c);
  tensor_list r = {out};
  r.insert(r.end(), next.begin(), next.end());
  return r;
}

}  // namespace ttt
