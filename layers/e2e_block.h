// layers/e2e_block.h — the block of TTT-E2E (official test-time-training/e2e ttt/model/
// transformer.py `Block`, attention.py `SWA`):
//
//   h += Npost(SWA(Npre(h)))                          every block
//   h += N'post(MLP'(N'pre(h); W))                    suffix blocks only: W are the fast weights
//   h += N''post(MLP(N''pre(h)))                      every block
//
// All norms are RMSNorm (eps model.norm_eps, weight 1); the post norms exist when
// model.e2e.post_norm. MLP and MLP' are SwiGLU w2(silu(w1 x) ⊙ w3 x) of width model.d_ff, no
// biases. SWA: q, k, v, o are d×d, split into heads of d_h = d/H; q and k get a per-head RMSNorm
// (one [d_h] weight shared by the heads, model.e2e.qk_norm), then RoPE (θ model.rope_theta,
// adjacent pairs) at their absolute positions; scale 1/√d_h; key j is visible to query i iff
// i − w < j ≤ i (w = model.window; 0 = full causal attention).
//
// MLP' with model.e2e.fast_heads = h > 1 is h independent SwiGLUs on the h slices of d/h features
// (a block-diagonal MLP of width d_ff/h per head): the "multi-head" variant of the paper's Table 1,
// as we read it (the official code has only h = 1).
//
// The computation is a free function of an E2EBlockWeights (plain tensors), so the inner loop and
// autograd/checkpoint can run it on the parameters or on the copies a recomputation hands in.
// Differences from the official code, none changing values: the key cache holds keys already
// rotated at their absolute positions (the official caches them before RoPE and rotates by
// positions local to the window; RoPE scores depend only on position differences), and keeps
// w − 1 keys (the official keeps w, one of which the mask always hides).
#pragma once

#include <memory>

#include "layers/linear.h"
#include "layers/model_config.h"
#include "layers/norm.h"
#include "layers/swiglu.h"

namespace ttt {

// The weights of one block (post norms and q/k norms undefined when switched off; the MLP'
// norms only in suffix blocks).
struct E2EBlockWeights {
  Tensor seq_norm, wq, wk, wv, wo, q_norm, k_norm, seq_post_norm;
  Tensor prime_norm, prime_post_norm;
  Tensor ffn_norm, w1, w2, w3, ffn_post_norm;

  tensor_list list() const;  // the defined ones, in the order above
  // The same layout with tensors taken from xs[at], xs[at+1], ... (at advances).
  E2EBlockWeights with(const tensor_list& xs, size_t& at) const;
};

// MLP' weights: w1, w3 [h, F, d/h], w2 [h, d/h, F] (F = d_ff / h); with a leading batch dim, one
// set per sequence ([B, h, ...]). Undefined w1 = no MLP'.
struct FastWeights {
  Tensor w1, w2, w3;
  tensor_list list() const { return {w1, w2, w3}; }
};

// Rotated keys and values [B, H, T, d_h] of consecutive positions.
struct KV {
  Tensor k, v;
};

struct E2EBlockShape {
  int64_t d_model = 0, n_heads = 0, head_dim = 0, window = 0, fast_heads = 1;
  double rope_theta = 5e5, eps = 1e-6;
  explicit E2EBlockShape(const ModelConfig& cfg);
};

// One block on h [B, T, D] whose first token is at absolute position `start`. `past`: the keys and
// values of the tokens right before (any number; undefined k = none); `own`, when given, receives
// this call's keys and values. `fast`: the MLP' weights (suffix blocks), or null.
Tensor e2e_block_apply(const E2EBlockShape& s, const E2EBlockWeights& w, const FastWeights* fast, const Tensor& h,
                       int64_t start, const KV& past, KV* own);
// MLP' alone: x [B, T, D] -> [B, T, D] (W shared [h, ...] or per sequence [B, h, ...]).
Tensor e2e_fast_mlp(const FastWeights& W, const Tensor& x, int64_t heads);
// y = x Wᵀ over the last dim (W [out, in]), as layers/linear.h.
Tensor e2e_linear(const Tensor& x, const Tensor& W);

// The per-head q/k norms and projections of the block's attention ("blocks.i.attn.*").
class E2EAttention : public Module {
 public:
  E2EAttention(const ModelConfig& cfg, Generator& g);
  std::shared_ptr<Linear> wq, wk, wv, wo;
  std::shared_ptr<RMSNorm> q_norm, k_norm;  // null when !qk_norm
};

// MLP' as parameters: the initial fast weights W0 ("blocks.i.prime.w1" ...).
class FastMLP : public Module {
 public:
  FastMLP(const ModelConfig& cfg, Generator& g);
  FastWeights weights() const { return {w1, w2, w3}; }
  Tensor w1, w2, w3;
};

class E2EBlock : public Module {
 public:
  E2EBlock(const ModelConfig& cfg, bool suffix, Generator& g);
  E2EBlockWeights weights() const;
  bool is_suffix() const { return prime != nullptr; }

  E2EBlockShape shape;
  std::shared_ptr<RMSNorm> seq_norm, seq_post_norm, prime_norm, prime_post_norm, ffn_norm, ffn_post_norm;
  std::shared_ptr<E2EAttention> attn;
  std::shared_ptr<FastMLP> prime;  // suffix blocks only
  std::shared_ptr<SwiGLU> mlp;
};

}  // namespace ttt
