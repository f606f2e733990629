// layers/e2e_block.cpp — see e2e_block.h.
#include "layers/e2e_block.h"

#include <cmath>
#include <stdexcept>

#include "autograd/ops.h"
#include "layers/rope.h"

namespace ttt {

namespace {

Tensor maybe_norm(const Tensor& x, const Tensor& w, double eps) { return w.defined() ? rms_norm(x, w, eps) : x; }

// The attention sublayer on a = Npre(h): projections, q/k norms, RoPE at start.., attention over
// past keys followed by this call's keys, output projection.
Tensor attention(const E2EBlockShape& s, const E2EBlockWeights& w, const Tensor& a, int64_t start, const KV& past,
                 KV* own) {
  const int64_t B = a.shape()[0], T = a.shape()[1];
  const Shape heads = {B, T, s.n_heads, s.head_dim};
  const Tensor pos = rope_positions(start, T);
  auto rotated = [&](const Tensor& W, const Tensor& norm) {
    Tensor x = maybe_norm(reshape(e2e_linear(a, W), heads), norm, s.eps);  // per-head RMSNorm over d_h
    return apply_rope(transpose(x, 1, 2), pos, s.rope_theta);             // [B, H, T, d_h]
  };
  Tensor q = rotated(w.wq, w.q_norm), k = rotated(w.wk, w.k_norm);
  Tensor v = transpose(reshape(e2e_linear(a, w.wv), heads), 1, 2);
  if (own) *own = {k, v};
  if (past.k.defined() && past.k.shape()[2] > 0) {
    k = cat({past.k, k}, 2);
    v = cat({past.v, v}, 2);
  }
  // The queries are the last T positions of the keys, as the fused op expects.
  Tensor o = scaled_dot_product_attention(q, k, v, true, s.window, 1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  return e2e_linear(reshape(transpose(o, 1, 2), {B, T, s.d_model}), w.wo);
}

}  // namespace

E2EBlockShape::E2EBlockShape(const ModelConfig& cfg)
    : d_model(cfg.d_model), n_heads(cfg.n_heads), head_dim(cfg.head_dim()), window(cfg.window),
      fast_heads(cfg.e2e.fast_heads), rope_theta(cfg.rope_theta), eps(cfg.norm_eps) {}

tensor_list E2EBlockWeights::list() const {
  tensor_list out;
  for (const Tensor* t : {&seq_norm, &wq, &wk, &wv, &wo, &q_norm, &k_norm, &seq_post_norm, &prime_norm,
                          &prime_post_norm, &ffn_norm, &w1, &w2, &w3, &ffn_post_norm})
    if (t->defined()) out.push_back(*t);
  return out;
}

E2EBlockWeights E2EBlockWeights::with(const tensor_list& xs, size_t& at) const {
  E2EBlockWeights r = *this;
  for (Tensor* t : {&r.seq_norm, &r.wq, &r.wk, &r.wv, &r.wo, &r.q_norm, &r.k_norm, &r.seq_post_norm, &r.prime_norm,
                    &r.prime_post_norm, &r.ffn_norm, &r.w1, &r.w2, &r.w3, &r.ffn_post_norm})
    if (t->defined()) {
      if (at >= xs.size()) throw std::logic_error("E2EBlockWeights::with: too few tensors");
      *t = xs[at++];
    }
  return r;
}

Tensor e2e_linear(const Tensor& x, const Tensor& W) {
  Shape out = x.shape();
  out[out.size() - 1] = W.shape()[0];
  return reshape(matmul(reshape(x, {-1, W.shape()[1]}), transpose(W, 0, 1)), out);
}

Tensor e2e_fast_mlp(const FastWeights& W, const Tensor& x, int64_t heads) {
  const int64_t B = x.shape()[0], T = x.shape()[1], D = x.shape()[2];
  // [B, T, D] -> [B, h, T, D/h]: head j multiplies its own slice by its own weights; a batch of
  // weights [B, h, ...] multiplies each sequence by its own set.
  Tensor xh = transpose(reshape(x, {B, T, heads, D / heads}), 1, 2);
  Tensor z1 = matmul(xh, transpose(W.w1, -2, -1));
  Tensor z3 = matmul(xh, transpose(W.w3, -2, -1));
  Tensor y = matmul(swiglu(z1, z3), transpose(W.w2, -2, -1));  // [B, h, T, D/h]
  return reshape(transpose(y, 1, 2), {B, T, D});
}

Tensor e2e_block_apply(const E2EBlockShape& s, const E2EBlockWeights& w, const FastWeights* fast, const Tensor& h0,
                       int64_t start, const KV& past, KV* own) {
  check_defined("e2e block", h0);
  if (h0.dim() != 3 || h0.shape()[2] != s.d_model)
    throw std::invalid_argument("e2e block: expected input [B, T, " + std::to_string(s.d_model) + "], got " +
                                h0.shape().str());
  // Each residual add inside the block runs fused with the norm that reads the sum (add_rms_norm).
  const bool prime = fast && fast->w1.defined();
  Tensor y = maybe_norm(attention(s, w, rms_norm(h0, w.seq_norm, s.eps), start, past, own), w.seq_post_norm, s.eps);
  tensor_list h_a = add_rms_norm(h0, y, prime ? w.prime_norm : w.ffn_norm, s.eps);
  if (prime) {
    y = maybe_norm(e2e_fast_mlp(*fast, h_a[1], s.fast_heads), w.prime_post_norm, s.eps);
    h_a = add_rms_norm(h_a[0], y, w.ffn_norm, s.eps);
  }
  const Tensor &h = h_a[0], &a = h_a[1];
  y = e2e_linear(swiglu(e2e_linear(a, w.w1), e2e_linear(a, w.w3)), w.w2);
  return add(h, maybe_norm(y, w.ffn_post_norm, s.eps));
}

E2EAttention::E2EAttention(const ModelConfig& cfg, Generator& g) {
  const int64_t D = cfg.d_model;
  wq = register_module("wq", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wk = register_module("wk", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wv = register_module("wv", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wo = register_module("wo", std::make_shared<Linear>(D, D, g, cfg.init_std));
  if (cfg.e2e.qk_norm) {
    q_norm = register_module("q_norm", std::make_shared<RMSNorm>(cfg.head_dim(), cfg.norm_eps));
    k_norm = register_module("k_norm", std::make_shared<RMSNorm>(cfg.head_dim(), cfg.norm_eps));
  }
}

FastMLP::FastMLP(const ModelConfig& cfg, Generator& g) {
  const int64_t h = cfg.e2e.fast_heads, F = cfg.d_ff / h, Dh = cfg.d_model / h;
  // Draw order w1, w2, w3 as SwiGLU's.
  w1 = register_parameter("w1", init_normal({h, F, Dh}, g, cfg.init_std));
  w2 = register_parameter("w2", init_normal({h, Dh, F}, g, cfg.init_std));
  w3 = register_parameter("w3", init_normal({h, F, Dh}, g, cfg.init_std));
}

E2EBlock::E2EBlock(const ModelConfig& cfg, bool suffix, Generator& g) : shape(cfg) {
  const int64_t D = cfg.d_model;
  const bool post = cfg.e2e.post_norm;
  auto norm = [&](const char* name) { return register_module(name, std::make_shared<RMSNorm>(D, cfg.norm_eps)); };
  // Registration order = draw order = the order of the computation.
  seq_norm = norm("seq_norm");
  attn = register_module("attn", std::make_shared<E2EAttention>(cfg, g));
  if (post) seq_post_norm = norm("seq_post_norm");
  if (suffix) {
    prime_norm = norm("prime_norm");
    prime = register_module("prime", std::make_shared<FastMLP>(cfg, g));
    if (post) prime_post_norm = norm("prime_post_norm");
  }
  ffn_norm = norm("ffn_norm");
  mlp = register_module("mlp", std::make_shared<SwiGLU>(D, cfg.d_ff, g, cfg.init_std));
  if (post) ffn_post_norm = norm("ffn_post_norm");
}

E2EBlockWeights E2EBlock::weights() const {
  auto w = [](const std::shared_ptr<RMSNorm>& n) { return n ? n->weight : Tensor(); };
  E2EBlockWeights r;
  r.seq_norm = w(seq_norm);
  r.wq = attn->wq->weight;
  r.wk = attn->wk->weight;
  r.wv = attn->wv->weight;
  r.wo = attn->wo->weight;
  r.q_norm = w(attn->q_norm);
  r.k_norm = w(attn->k_norm);
  r.seq_post_norm = w(seq_post_norm);
  r.prime_norm = w(prime_norm);
  r.prime_post_norm = w(prime_post_norm);
  r.ffn_norm = w(ffn_norm);
  r.w1 = mlp->w1->weight;
  r.w2 = mlp->w2->weight;
  r.w3 = mlp->w3->weight;
  r.ffn_post_norm = w(ffn_post_norm);
  return r;
}

}  // namespace ttt
