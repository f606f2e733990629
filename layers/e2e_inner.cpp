// layers/e2e_inner.cpp — see e2e_inner.h.
//
// Note [Two branches]
// e2e_chunk decides once per call whether the outer loop is recording: grad mode on and some fast
// weight requiring grad (W0 is a parameter, and every later W derives from it). Recording: the
// chunk runs taped and the inner gradient is grad(create_graph = true), retaining the forward
// graph for the outer backward. Not recording: the chunk runs on detached copies under a local
// tape (grad mode switched on just for it) whose only leaves are the copies of W, the inner
// gradient is a plain grad(), and the outputs are detached, so nothing outlives the call. Both
// branches compute the same values; with float64 on the CPU bit for bit the same (every op takes
// its composite backward there), elsewhere up to rounding (fused backward kernels vs their
// composite formulas), which is also what a recomputing checkpoint sees.
#include "layers/e2e_inner.h"

#include <optional>

#include <stdexcept>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/engine.h"
#include "autograd/ops.h"

namespace ttt {

namespace {

tensor_list flat_fast(const std::vector<FastWeights>& W) {
  tensor_list out;
  for (const FastWeights& w : W)
    for (const Tensor& t : w.list()) out.push_back(t);
  return out;
}

std::vector<FastWeights> unflat_fast(const tensor_list& xs, size_t& at, size_t blocks) {
  std::vector<FastWeights> W(blocks);
  for (FastWeights& w : W) {
    w.w1 = xs.at(at++);
    w.w2 = xs.at(at++);
    w.w3 = xs.at(at++);
  }
  return W;
}

// Per-sequence inner loss Σ_b ℓ_i(b): token weights are 1/(scored tokens of b), 0 where ignored.
Tensor inner_loss(const Tensor& losses, const Tensor& weights) { return sum(mul(losses, weights)); }

// W − η c(b) g(b), c(b) = clip / max(‖g(b)‖, clip) over all fast tensors of sequence b.
std::vector<FastWeights> sgd_step(const tensor_list& W, const tensor_list& g, double lr, double clip,
                                  size_t blocks) {
  const int64_t B = g[0].shape()[0];
  const TensorOptions o = opts(g[0].dtype(), g[0].device());
  Tensor coef = full({B}, -lr, o);
  if (clip > 0) {
    Tensor sq;
    for (const Tensor& gk : g) {
      std::vector<int64_t> dims;
      for (int64_t d = 1; d < gk.dim(); ++d) dims.push_back(d);
      Tensor s = sum(square(gk), dims);
      sq = sq.defined() ? add(sq, s) : s;
    }
    // The floor keeps sqrt's derivative finite for an all-zero gradient (every target ignored);
    // for any norm above 1e-15 it changes nothing, and below the clip the norm is not used.
    Tensor norm = sqrt(maximum(sq, full({B}, 1e-30, o)));
    coef = mul(rdiv_scalar(maximum(norm, full({B}, clip, o)), clip), coef);
  }
  tensor_list out;
  for (size_t k = 0; k < W.size(); ++k) {
    Shape s = {B};
    while (s.size() < g[k].dim()) s.push_back(1);
    out.push_back(add(W[k], mul(reshape(coef, s), g[k])));
  }
  size_t at = 0;
  return unflat_fast(out, at, blocks);
}

// [B, ...] copies of W for the per-sequence gradient (W0 is shared: expand it, a view).
tensor_list per_sequence(const tensor_list& W, int64_t B) {
  tensor_list out;
  for (const Tensor& w : W) {
    if (w.dim() == 4) {
      out.push_back(w);
      continue;
    }
    Shape s = w.shape();
    s.insert(0, B);
    out.push_back(expand(unsqueeze(w, 0), s));
  }
  return out;
}

bool any_requires_grad(const tensor_list& ts) {
  for (const Tensor& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::vector<KV> windows(const ChunkCarry& c, int64_t window) {
  std::vector<KV> out;
  for (const auto& pieces : c.past) out.push_back(e2e_window_of(pieces, window));
  return out;
}

ChunkResult forward_only(const ChunkSpec& spec, const SuffixWeights& P, const std::vector<FastWeights>& W,
                         const std::vector<KV>& past, const Tensor& h, const Tensor& targets) {
  ChunkResult r;
  r.own.resize(P.blocks.size());
  Tensor logits = e2e_suffix_logits(spec.shape, P, W, past, h, spec.start, &r.own);
  r.losses = cross_entropy(logits, targets, spec.ignore_index, "none");
  if (spec.want_logits) r.logits = logits;
  r.W = W;
  return r;
}

}  // namespace

tensor_list SuffixWeights::list() const {
  tensor_list out;
  for (const E2EBlockWeights& b : blocks)
    for (const Tensor& t : b.list()) out.push_back(t);
  out.push_back(final_norm);
  out.push_back(head);
  return out;
}

SuffixWeights SuffixWeights::with(const tensor_list& xs, size_t& at) const {
  SuffixWeights r;
  for (const E2EBlockWeights& b : blocks) r.blocks.push_back(b.with(xs, at));
  r.final_norm = xs.at(at++);
  r.head = xs.at(at++);
  return r;
}

KV e2e_window_of(const std::vector<KV>& pieces, int64_t window) {
  if (pieces.empty()) return {};
  KV kv;
  if (pieces.size() == 1) {
    kv = pieces[0];
  } else {
    tensor_list ks, vs;
    for (const KV& p : pieces) {
      ks.push_back(p.k);
      vs.push_back(p.v);
    }
    kv = {cat(ks, 2), cat(vs, 2)};
  }
  const int64_t len = kv.k.shape()[2], keep = window > 0 ? std::min(len, window - 1) : len;
  if (keep < len) kv = {narrow(kv.k, 2, len - keep, keep), narrow(kv.v, 2, len - keep, keep)};
  return kv;
}

Tensor e2e_suffix_logits(const E2EBlockShape& s, const SuffixWeights& P, const std::vector<FastWeights>& W,
                         const std::vector<KV>& past, const Tensor& h0, int64_t start, std::vector<KV>* own) {
  Tensor h = h0;
  for (size_t i = 0; i < P.blocks.size(); ++i)
    h = e2e_block_apply(s, P.blocks[i], &W.at(i), h, start, past.at(i), own ? &own->at(i) : nullptr);
  return e2e_linear(rms_norm(h, P.final_norm, s.eps), P.head);
}

ChunkResult e2e_chunk(const ChunkSpec& spec, const SuffixWeights& P, const ChunkCarry& carry, const Tensor& h,
                      const Tensor& targets, const Tensor& weights) {
  const size_t S = P.blocks.size();
  if (carry.W.size() != S || carry.past.size() != S)
    throw std::logic_error("e2e_chunk: fast weights / caches do not match the suffix blocks");
  const std::vector<KV> past = windows(carry, spec.shape.window);
  const int64_t B = h.shape()[0];
  const tensor_list W = per_sequence(flat_fast(carry.W), B);
  size_t at = 0;
  std::vector<FastWeights> Wb = unflat_fast(W, at, S);
  if (!spec.update) return forward_only(spec, P, Wb, past, h, targets);

  if (GradMode::is_enabled() && any_requires_grad(W)) {  // the outer loop records: second order
    ChunkResult r;
    {
      // The inner gradient below is taken with create_graph: under autocast its products multiply
      // the float32 operands, kept for it, rather than upcasts of autocast's bf16 casts; or, with
      // model.e2e.second_order = autocast, they are autocast products themselves (bf16 operands).
      std::optional<KeepFloat32Operands> keep;
      std::optional<AutocastCreateGraph> at_autocast;
      if (spec.second_order_at_autocast)
        at_autocast.emplace();
      else
        keep.emplace();
      r = forward_only(spec, P, Wb, past, h, targets);
    }
    tensor_list g = grad({inner_loss(r.losses, weights)}, W, {}, /*retain_graph=*/true, /*create_graph=*/true);
    r.W = sgd_step(W, g, spec.inner_lr, spec.inner_clip, S);
    return r;
  }
  if (GradMode::is_enabled() && (any_requires_grad(P.list()) || h.requires_grad()))
    throw std::logic_error("e2e: the outer loop records but the fast weights W0 do not require grad");
  // Values only (Note [Two branches]).
  ChunkResult r;
  tensor_list g;
  {
    GradModeGuard on(true);
    tensor_list Wd;
    for (const Tensor& w : W) Wd.push_back(w.detach().set_requires_grad(true));
    std::vector<KV> past_d;
    for (const KV& kv : past) past_d.push_back({kv.k.defined() ? kv.k.detach() : kv.k, kv.v.defined() ? kv.v.detach() : kv.v});
    tensor_list Pd_list;
    for (const Tensor& t : P.list()) Pd_list.push_back(t.detach());
    size_t a = 0, b = 0;
    r = forward_only(spec, P.with(Pd_list, a), unflat_fast(Wd, b, S), past_d, h.detach(), targets);
    g = grad({inner_loss(r.losses, weights)}, Wd);
  }
  NoGradGuard ng;
  tensor_list Wv;
  for (const Tensor& w : W) Wv.push_back(w.detach());
  r.W = sgd_step(Wv, g, spec.inner_lr, spec.inner_clip, S);
  r.losses = r.losses.detach();
  if (r.logits.defined()) r.logits = r.logits.detach();
  for (KV& kv : r.own) kv = {kv.k.detach(), kv.v.detach()};
  return r;
}

ChunkResult e2e_chunk_remat(const ChunkSpec& spec, const SuffixWeights& P, const ChunkCarry& carry, const Tensor& h,
                            const Tensor& targets, const Tensor& weights) {
  const size_t S = P.blocks.size();
  // Inputs: W (3 per block), h, the past pieces (k, v per piece, per block), the suffix weights.
  tensor_list inputs = flat_fast(carry.W);
  inputs.push_back(h);
  std::vector<size_t> pieces;
  for (const auto& ps : carry.past) {
    pieces.push_back(ps.size());
    for (const KV& kv : ps) {
      inputs.push_back(kv.k);
      inputs.push_back(kv.v);
    }
  }
  for (const Tensor& t : P.list()) inputs.push_back(t);
  // The closure outlives this call (the backward re-runs it): everything by value.
  auto fn = [spec, P, S, pieces, targets, weights](const tensor_list& x) {
    size_t at = 0;
    ChunkCarry c;
    c.W = unflat_fast(x, at, S);
    const Tensor hh = x.at(at++);
    for (size_t n : pieces) {
      std::vector<KV> ps;
      for (size_t j = 0; j < n; ++j, at += 2) ps.push_back({x.at(at), x.at(at + 1)});
      c.past.push_back(ps);
    }
    ChunkResult r = e2e_chunk(spec, P.with(x, at), c, hh, targets, weights);
    tensor_list out;
    if (spec.update) out = flat_fast(r.W);
    out.push_back(r.losses);
    for (const KV& kv : r.own) {
      out.push_back(kv.k);
      out.push_back(kv.v);
    }
    if (spec.want_logits) out.push_back(r.logits);
    return out;
  };
  const tensor_list out = checkpoint(fn, inputs);
  ChunkResult r;
  size_t at = 0;
  r.W = spec.update ? unflat_fast(out, at, S) : carry.W;
  r.losses = out.at(at++);
  for (size_t i = 0; i < S; ++i, at += 2) r.own.push_back({out.at(at), out.at(at + 1)});
  if (spec.want_logits) r.logits = out.at(at++);
  return r;
}

}  // namespace ttt
