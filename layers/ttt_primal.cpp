// layers/ttt_primal.cpp — see ttt_primal.h.
//
// For token i of the segment (row vectors; all gradients at the mini-batch's start W):
//   Linear:  Z = XK_i W + b,  G = ∂ℓ_i/∂Z
//            accW += lr_i XK_i^T G,  accb += lr_i G
//            z_i = XQ_i (W − tok_i accW) + (b − tok_i accb)
//   MLP:     Z1 = XK_i W1 + b1, X2 = gelu(Z1), Z2 = X2 W2 + b2,
//            G2 = ∂ℓ_i/∂Z2, G1 = (G2 W2^T) ∘ gelu'(Z1)
//            acc1 += lr_i (XK_i^T G1, G1),  acc2 += lr_i (X2^T G2, G2)
//            z_i = gelu(XQ_i W̄1 + b̄1) W̄2 + b̄2   with W̄ = W − tok_i acc
//   out_i = XQ_i + LN(z_i)   (or z_i without LN + residual)
// The per-token weights W̄ are materialized ([B, nh, f, f] per token): the cost the dual form avoids.
#include "layers/ttt_primal.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

namespace {

// acc_k += lr · (X^T G) and lr · G for one layer; X [B,nh,1,a], G [B,nh,1,c], lr [B,nh,1,1].
void accumulate_token(Tensor& accW, Tensor& accb, bool bias, const Tensor& X, const Tensor& G, const Tensor& lr) {
  accW = add_maybe(accW, mul(lr, matmul(transpose(X, -2, -1), G)));
  if (bias) accb = add_maybe(accb, mul(lr, G));
}

// W − tok · acc (acc undefined = no update yet; W undefined = no bias).
Tensor updated(const Tensor& W, const Tensor& acc, const Tensor& tok) {
  return W.defined() && acc.defined() ? sub(W, mul(tok, acc)) : W;
}

}  // namespace

Tensor primal_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                      const InnerNorm& n) {
  const std::string kind = m.kind();
  if (kind != "linear" && kind != "mlp")
    throw std::invalid_argument("TTT primal form: no closed form for inner model '" + kind +
                                "'; use model.ttt.impl=generic");
  if (acc.empty()) acc.resize(W.size());
  const bool mlp = kind == "mlp";
  tensor_list outs;
  for (int64_t i = 0; i < s.size(); ++i) {
    Tensor xq = narrow(s.XQ, 2, i, 1), xk = narrow(s.XK, 2, i, 1), xv = narrow(s.XV, 2, i, 1);
    Tensor lr = unsqueeze(narrow(s.lr, 2, i, 1), -1);  // [B, nh, 1, 1]
    Tensor tok = narrow(s.tok, 0, i, 1);               // [1], broadcasts
    Tensor target = inner_target(xk, xv, n);
    Tensor z;
    if (!mlp) {
      Tensor G = inner_loss_grad(add_bias(matmul(xk, W[0]), W[1]), target, n);
      accumulate_token(acc[0], acc[1], W[1].defined(), xk, G, lr);
      z = add_bias(matmul(xq, updated(W[0], acc[0], tok)), updated(W[1], acc[1], tok));
    } else {
      Tensor Z1 = add_bias(matmul(xk, W[0]), W[1]);
      Tensor X2 = gelu(Z1, true);
      Tensor G2 = inner_loss_grad(add_bias(matmul(X2, W[2]), W[3]), target, n);
      Tensor G1 = mul(matmul(G2, transpose(W[2], -2, -1)), gelu_tanh_grad(Z1));
      accumulate_token(acc[0], acc[1], W[1].defined(), xk, G1, lr);
      accumulate_token(acc[2], acc[3], W[3].defined(), X2, G2, lr);
      Tensor h = gelu(add_bias(matmul(xq, updated(W[0], acc[0], tok)), updated(W[1], acc[1], tok)), true);
      z = add_bias(matmul(h, updated(W[2], acc[2], tok)), updated(W[3], acc[3], tok));
    }
    outs.push_back(inner_output(xq, z, n));
  }
  return outs.size() == 1 ? outs[0] : cat(outs, 2);
}

}  // namespace ttt
