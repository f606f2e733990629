// layers/ttt_dual.cpp — see ttt_dual.h.
//
// Per batch element and head, for a segment of n tokens (rows) starting at in-mini-batch index i0,
// with eta = tril(tok ⊗ lr) (n × n), A = XQ XK^T, and the Linear model (W, b):
//   Z  = XK W + b;  G = ∂ℓ/∂Z (ttt_inner: inner_loss_grad)         — all gradients at the start W
//   Z̄  = XQ W + b − (eta ∘ A) G − eta G − tok ∘ (XQ accW + accb)      — row i uses W_i (see below)
//   accW += (lr ∘ XK)^T G,   accb += Σ_j lr_j G_j
// because W_i = W − tok_i (accW + Σ_{j≤i} lr_j XK_j^T G_j) and XQ_i XK_j^T G_j = A_ij G_j
// (paper Eq. 7, App. A Fact 1). The official code has no accW term (forward passes start every
// mini-batch at i0 = 0); it appears here so decoding can resume mid-mini-batch (ttt_inner.h).
//
// TTT-MLP (App. A for K = 2 layers; ttt.py TTTMLP.compute_mini_batch):
//   Z1 = XK W1 + b1, X2 = gelu(Z1), Z2 = X2 W2 + b2
//   G2 = ∂ℓ/∂Z2,  G1 = (G2 W2^T) ∘ gelu'(Z1)        (gelu' = gelu_tanh_grad, a differentiable op)
//   Z̄1 = XQ W1 + b1 − (eta ∘ XQ XK^T) G1 − eta G1 − tok ∘ (XQ accW1 + accb1);   X̄2 = gelu(Z̄1)
//   Z̄2 = X̄2 W2 + b2 − (eta ∘ X̄2 X2^T) G2 − eta G2 − tok ∘ (X̄2 accW2 + accb2)
//   the second "attention" compares X̄2 (test path) with X2 (training path).
// The output is XQ + LN(Z̄) (or Z̄ without LN + residual).
#include "layers/ttt_dual.h"

#include <stdexcept>
#include <utility>

#include "autograd/ops.h"
#include "layers/ttt_scan.h"

namespace ttt {

namespace {

// One layer of the dual form: the rows of (X̄ W + b) with the in-segment updates applied.
//   Xbar [B,nh,n,a] test-path input, X [B,nh,n,a] training-path input, G [B,nh,n,c] = ∂ℓ/∂(XW+b),
//   eta [B,nh,n,n], tok_col [n,1], acc {accW [B,nh,a,c], accb [B,nh,1,c]} (undefined = zero).
// b undefined = a layer without bias. The bias's in-segment updates add eta G to the rows:
// (eta ∘ A) G + eta G is computed as (eta ∘ (A + 1)) G, one matmul instead of two.
Tensor dual_layer(const Tensor& Xbar, const Tensor& X, const Tensor& W, const Tensor& b, const Tensor& G,
                  const Tensor& eta, const Tensor& tok_col, const Tensor& accW, const Tensor& accb) {
  Tensor A = matmul(Xbar, transpose(X, -2, -1));
  Tensor coef = mul(eta, b.defined() ? add_scalar(A, 1.0) : A);
  Tensor z = sub(add_bias(matmul(Xbar, W), b), matmul(coef, G));
  if (accW.defined()) z = sub(z, mul(tok_col, add_bias(matmul(Xbar, accW), accb)));
  return z;
}

// acc += Σ_j lr_j ∂ℓ_j/∂(W, b) for one layer: ((lr ∘ X)^T G, Σ_j lr_j G_j); no bias: W only.
void accumulate(Tensor& accW, Tensor& accb, bool bias, const Tensor& X, const Tensor& G, const Tensor& lr_col) {
  accW = add_maybe(accW, matmul(transpose(mul(lr_col, X), -2, -1), G));
  if (bias) accb = add_maybe(accb, sum(mul(lr_col, G), {2}, true));
}

}  // namespace

Tensor dual_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                    const InnerNorm& n) {
  const std::string kind = m.kind();
  if (kind != "linear" && kind != "mlp")
    throw std::invalid_argument("TTT dual form: no closed form for inner model '" + kind +
                                "'; use model.ttt.impl=generic");
  const int64_t len = s.size();
  Tensor eta = eta_matrix(s.tok, s.lr);           // [B, nh, n, n]
  Tensor tok_col = reshape(s.tok, {len, 1});      // [n, 1]
  Tensor lr_col = unsqueeze(s.lr, -1);            // [B, nh, n, 1]
  Tensor target = inner_target(s.XK, s.XV, n);
  if (acc.empty()) acc.resize(W.size());

  if (kind == "linear") {
    Tensor Z1 = add_bias(matmul(s.XK, W[0]), W[1]);
    Tensor G1 = inner_loss_grad(Z1, target, n);
    Tensor z = dual_layer(s.XQ, s.XK, W[0], W[1], G1, eta, tok_col, acc[0], acc[1]);
    accumulate(acc[0], acc[1], W[1].defined(), s.XK, G1, lr_col);
    return inner_output(s.XQ, z, n);
  }
  // TTT-MLP: forward on the training view, hand-derived backward, then the test path.
  Tensor Z1 = add_bias(matmul(s.XK, W[0]), W[1]);
  Tensor X2 = gelu(Z1, true);
  Tensor Z2 = add_bias(matmul(X2, W[2]), W[3]);
  Tensor G2 = inner_loss_grad(Z2, target, n);
  Tensor G1 = mul(matmul(G2, transpose(W[2], -2, -1)), gelu_tanh_grad(Z1));
  Tensor z1 = dual_layer(s.XQ, s.XK, W[0], W[1], G1, eta, tok_col, acc[0], acc[1]);
  Tensor x2bar = gelu(z1, true);
  Tensor z2 = dual_layer(x2bar, X2, W[2], W[3], G2, eta, tok_col, acc[2], acc[3]);
  accumulate(acc[0], acc[1], W[1].defined(), s.XK, G1, lr_col);
  accumulate(acc[2], acc[3], W[3].defined(), X2, G2, lr_col);
  return inner_output(s.XQ, z2, n);
}

namespace {
// The inner model the scan needs for dual_segment: only its kind matters (W comes from the inputs).
struct KindOnly final : InnerModel {
  explicit KindOnly(std::string k) : k_(std::move(k)) {}
  tensor_list initial() const override { return {}; }
  Tensor apply(const tensor_list&, const Tensor&) const override {
    throw std::logic_error("dual scan: the kind-only inner model has no weights");
  }
  std::string kind() const override { return k_; }
  std::string k_;
};

// W [nh, a, c] as the batch's state [B, nh, a, c]; b [nh, c] as [B, nh, 1, c] (undefined stays so).
Tensor batch_weight(const Tensor& W, int64_t B) {
  Shape s = W.shape();
  s.insert(0, B);
  return expand(unsqueeze(W, 0), s);
}
Tensor batch_bias(const Tensor& b, int64_t B) {
  if (!b.defined()) return Tensor();
  const int64_t nh = b.shape()[0], c = b.shape()[1];
  return expand(reshape(b, {1, nh, 1, c}), {B, nh, 1, c});
}

// The whole scan from state W over the inputs x (XQ, XK, XV, lr, tok first), dual form throughout.
Tensor dual_scan(const InnerModel& m, tensor_list W, const tensor_list& x, const Tensor& ln_w, const Tensor& ln_b,
                 double eps) {
  ScanState st;
  st.W = std::move(W);
  ScanOptions o;
  o.mini_batch = x[4].shape()[0];
  o.full = o.partial = dual_segment;
  return ttt_scan(m, st, {x[0], x[1], x[2], x[3]}, x[4], 0, InnerNorm{ln_w, ln_b, eps, ln_w.defined()}, o);
}
}  // namespace

Tensor dual_linear_scan(const tensor_list& x, double eps) {
  static const KindOnly linear("linear");
  const int64_t B = x[0].shape()[0];
  return dual_scan(linear, {batch_weight(x[5], B), batch_bias(x[6], B)}, x, x[7], x[8], eps);
}

Tensor dual_mlp_scan(const tensor_list& x, double eps) {
  static const KindOnly mlp("mlp");
  const int64_t B = x[0].shape()[0];
  return dual_scan(mlp, {batch_weight(x[5], B), batch_bias(x[6], B), batch_weight(x[7], B), batch_bias(x[8], B)}, x,
                   x[9], x[10], eps);
}

}  // namespace ttt
