// layers/ttt_generic.cpp — see ttt_generic.h.
//
// Per-token gradients in one grad() call: every token j of the segment gets its own copy W^(j) of
// the start weights (an expand along a new token dim), its loss ℓ_j is evaluated with that copy,
// and ∂(Σ_j ℓ_j)/∂W^(j) = ∇ℓ_j(W). Then, with G_j stacked along the token dim,
//   W_i   = W − tok_i · acc − Σ_j eta[i, j] G_j          (eta = tril(tok ⊗ lr), one matmul)
//   z_i   = f_res(XQ_i; W_i),   out_i = XQ_i + LN(z_i)
//   acc  += Σ_j lr_j G_j
//
// Note [The inner gradient and the outer graph]
// With the outer loop recording (grad mode on and some input requiring grad) the inner grad() runs
// with create_graph, so G — and through it the outputs — stay differentiable w.r.t. XK, XV, the LN
// parameters and W itself (TTT-MLP's gradient depends on W). Without it (evaluation, or the
// untaped first pass of a checkpoint) the inner loss is differentiated on detached copies and only
// values come out. When W itself needs no gradient (W0 = 0 in the first mini-batch) we still need a
// point to differentiate at: root() gives the copies a node with no inputs, instead of making a
// fresh leaf, so the result hangs off no leaf that autograd/checkpoint would not know about.
#include "layers/ttt_generic.h"

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ttt {

namespace {

// A tensor with w's values that requires grad through a node with no incoming edges.
Tensor root(const Tensor& w) {
  Tensor y = make_view(w, w.shape(), w.strides(), w.offset());
  record("ttt_generic_root", {w.detach()}, {y}, {}, [](BackwardCtx&, const tensor_list&) {
    return tensor_list{Tensor()};
  });
  return y;
}

bool any_requires_grad(const tensor_list& ts) {
  for (const Tensor& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// [B, nh, s...] -> [B, nh, n, s...] (a view, one copy per token).
Tensor per_token(const Tensor& w, int64_t n) {
  Shape s = w.shape();
  s.insert(2, n);
  return expand(unsqueeze(w, 2), s);
}

// [n] -> [n, 1, ..., 1] broadcasting against [B, nh, n, s...] of rank r.
Tensor token_column(const Tensor& tok, int r) {
  Shape s{tok.shape()[0]};
  for (int d = 3; d < r; ++d) s.push_back(1);
  return reshape(tok, s);
}

}  // namespace

Tensor generic_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                       const InnerNorm& n) {
  const int64_t len = s.size();
  if (acc.empty()) acc.resize(W.size());
  tensor_list all = W;
  for (const Tensor& t : {s.XQ, s.XK, s.XV, s.lr, s.tok, n.w, n.b}) all.push_back(t);
  for (const Tensor& a : acc) all.push_back(a);
  const bool outer = GradMode::is_enabled() && any_requires_grad(all);

  // 1. G_j = ∇ℓ_j(W), one row per token.
  tensor_list G;
  {
    GradModeGuard on(true);
    auto maybe_detach = [&](const Tensor& t) { return outer || !t.defined() ? t : t.detach(); };
    InnerNorm nn{maybe_detach(n.w), maybe_detach(n.b), n.eps, n.ln_residual};
    tensor_list copies, live;  // live: the defined copies (a model may lack some weights)
    for (const Tensor& w : W) {
      if (!w.defined()) {
        copies.push_back(Tensor());
        continue;
      }
      Tensor c = per_token(maybe_detach(w), len);
      copies.push_back(c.requires_grad() ? c : root(c));
      live.push_back(copies.back());
    }
    Tensor xk = unsqueeze(maybe_detach(s.XK), 3);  // [B, nh, n, 1, f]: token j is its own batch row
    Tensor target = inner_target(xk, unsqueeze(maybe_detach(s.XV), 3), nn);
    Tensor loss = sum(inner_loss(m.apply(copies, xk), target, nn));
    tensor_list g = grad({loss}, live, {}, /*retain_graph=*/outer, /*create_graph=*/outer);
    for (size_t k = 0, j = 0; k < W.size(); ++k) G.push_back(W[k].defined() ? g[j++] : Tensor());
  }

  // 2. Per-token weights and the new accumulators.
  Tensor eta = eta_matrix(s.tok, s.lr);  // [B, nh, n, n]
  Tensor lr_row = unsqueeze(s.lr, 2);    // [B, nh, 1, n]
  tensor_list rows;
  for (size_t k = 0; k < W.size(); ++k) {
    if (!W[k].defined()) {
      rows.push_back(Tensor());
      continue;
    }
    const Shape shape = G[k].shape();  // [B, nh, n, s...]
    Tensor flat = reshape(G[k], {shape[0], shape[1], len, -1});
    Tensor wk = sub(unsqueeze(W[k], 2), reshape(matmul(eta, flat), shape));
    if (acc[k].defined()) wk = sub(wk, mul(token_column(s.tok, shape.size()), unsqueeze(acc[k], 2)));
    rows.push_back(wk);
    acc[k] = add_maybe(acc[k], reshape(matmul(lr_row, flat), W[k].shape()));
  }
  Tensor z = squeeze(m.apply(rows, unsqueeze(s.XQ, 3)), 3);
  return inner_output(s.XQ, z, n);
}

}  // namespace ttt
