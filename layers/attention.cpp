// layers/attention.cpp — see attention.h.
#include "layers/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "layers/rope.h"

namespace ttt {

// KV cache: rotated keys and values of past tokens, entry e at absolute position
// (position − len + e). Buffers [B, H, capacity, d_h]; only [0, len) is valid.
// With `fused`, one-token steps run attention_decode_step, which reads the position and the length
// from `counters` (int64 [2] on the cache's device, kept equal to position and len) and writes the
// cache in place: the step is then the same at every position until the cache must grow, so it is
// graphable (a recording per capacity). A step that grows the cache runs eagerly: recorded, it
// would allocate the new cache in the graph's own memory, and it happens once per capacity.
struct KVCache : MixerState {
  Tensor k, v, counters;
  int64_t len = 0;
  bool fused = false;

  bool graphable() const override { return fused && len + 1 <= k.shape()[2]; }
  void for_each_tensor(const std::function<void(Tensor&)>& f) override {
    f(k);
    f(v);
    f(counters);
  }
  void for_each_in_place_tensor(const std::function<void(Tensor&)>& f) override { for_each_tensor(f); }
  std::unique_ptr<MixerState> clone() const override { return std::make_unique<KVCache>(*this); }
  void rebase(const MixerState& now, const MixerState& pre) override {
    MixerState::rebase(now, pre);
    len = dynamic_cast<const KVCache&>(now).len + (len - dynamic_cast<const KVCache&>(pre).len);
  }
};

Tensor attention_mask(int64_t Tq, int64_t Tk, int64_t q_start, int64_t k_start, int64_t window, DType dtype,
                      Device device) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  std::vector<double> m(static_cast<size_t>(Tq * Tk));
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = 0; j < Tk; ++j) {
      const int64_t qi = q_start + i, kj = k_start + j;
      const bool ok = kj <= qi && (window <= 0 || qi - kj < window);
      m[i * Tk + j] = ok ? 0.0 : neg_inf;
    }
  return from_vector(m, {Tq, Tk}, opts(dtype)).to(device);
}

CausalSelfAttention::CausalSelfAttention(const ModelConfig& cfg, Generator& g)
    : d_model_(cfg.d_model), n_heads_(cfg.n_heads), head_dim_(cfg.head_dim()), window_(cfg.window),
      rope_theta_(cfg.rope_theta), bf16_activations_(cfg.bf16_activations) {
  if (cfg.n_heads <= 0 || cfg.d_model % cfg.n_heads != 0 || cfg.head_dim() % 2 != 0)
    throw std::invalid_argument("attention: model.d_model (" + std::to_string(cfg.d_model) +
                                ") must split into model.n_heads (" + std::to_string(cfg.n_heads) +
                                ") heads of even size (RoPE rotates pairs)");
  if (cfg.window < 0) throw std::invalid_argument("attention: model.window must be >= 0 (0 = full causal)");
  const int64_t D = cfg.d_model;
  wq = register_module("wq", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wk = register_module("wk", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wv = register_module("wv", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wo = register_module("wo", std::make_shared<Linear>(D, D, g, cfg.init_std));
}

void CausalSelfAttention::project(const Tensor& x, int64_t start, Tensor& q, Tensor& k, Tensor& v, bool low) const {
  check_defined("attention", x);
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw std::invalid_argument("attention: expected input [B, T, " + std::to_string(d_model_) + "], got " +
                                x.shape().str());
  const int64_t B = x.shape()[0], T = x.shape()[1];
  const Tensor pos = rope_positions(start, T);
  // One product for q, k and v (the three weights stacked, [3D, D]): its output [B, T, 3, H, d_h]
  // holds them side by side, and each is a slot of it seen as [B, H, T, d_h]. The fused RoPE writes
  // q and k densely in that [B, T, H, d_h] order, and the attention kernels read all three where
  // they lie (and write the output and the gradients the same way), so splitting and merging
  // heads copy nothing. Backward: one product for the input's gradient (no sum of three), and the
  // split's gradient, one concatenation, is the product's incoming gradient.
  const Tensor w = cat({wq->weight, wk->weight, wv->weight}, 0);
  const Tensor y = reshape(linear(x, w, Tensor(), low), {B, T, 3, n_heads_, head_dim_});
  const tensor_list parts = split(y, {1, 1, 1}, 2);
  const auto heads = [](const Tensor& p) { return transpose(squeeze(p, 2), 1, 2); };
  q = apply_rope(heads(parts[0]), pos, rope_theta_, -2, /*keep_layout=*/true);
  k = apply_rope(heads(parts[1]), pos, rope_theta_, -2, /*keep_layout=*/true);
  v = heads(parts[2]);
}

Tensor CausalSelfAttention::attend(const Tensor& q, const Tensor& k, const Tensor& v, int64_t q_start,
                                   int64_t k_start) const {
  const int64_t B = q.shape()[0], Tq = q.shape()[2], Tk = k.shape()[2];
  // The fused op places the queries at the last Tq key positions: true for forward (both start
  // at 0) and for decode (the cache ends with the new tokens).
  if (q_start - k_start != Tk - Tq)
    throw std::logic_error("attention: queries must be the last positions of the keys");
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  Tensor o = scaled_dot_product_attention(q, k, v, true, window_, scale);  // [B, H, Tq, d_h]
  return wo->forward(reshape(transpose(o, 1, 2), {B, Tq, d_model_}));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  Tensor q, k, v;
  const bool low = bf16_activations_ && Autocast::bf16_for(x);
  project(x, 0, q, k, v, low);
  return attend(q, k, v, 0, 0);
}

std::unique_ptr<MixerState> CausalSelfAttention::init_state(int64_t batch) {
  auto st = std::make_unique<KVCache>();
  const TensorOptions o = opts(wq->weight.dtype(), wq->weight.device());
  st->k = zeros({batch, n_heads_, 0, head_dim_}, o);
  st->v = zeros({batch, n_heads_, 0, head_dim_}, o);
  st->fused = attention_decode_step_unsupported(o.device, head_dim_, o.dtype).empty();
  if (st->fused) st->counters = zeros({2}, opts(DType::i64, o.device));
  return st;
}

// Room for T more entries: with a window keep only the w − 1 newest entries; grow geometrically.
// The device's length follows (a fill of a value that depends only on the capacity and the window,
// so a recorded step that makes room replays right).
void CausalSelfAttention::make_room(KVCache& st, int64_t T) const {
  const int64_t cap = st.k.shape()[2];
  if (st.len + T <= cap) return;
  const int64_t keep = window_ > 0 ? std::min(st.len, window_ - 1) : st.len;
  const int64_t new_cap = window_ > 0 ? std::max<int64_t>(2 * (keep + T), 16)
                                      : std::max<int64_t>({2 * cap, st.len + T, 16});
  Shape s = st.k.shape();
  s[2] = new_cap;
  const TensorOptions o = opts(st.k.dtype(), st.k.device());
  Tensor nk = zeros(s, o), nv = zeros(s, o);
  if (keep > 0) {
    nk.narrow(2, 0, keep).copy_(st.k.narrow(2, st.len - keep, keep));
    nv.narrow(2, 0, keep).copy_(st.v.narrow(2, st.len - keep, keep));
  }
  st.k = nk;
  st.v = nv;
  st.len = keep;
  if (st.counters.defined()) st.counters.narrow(0, 1, 1).fill_(static_cast<double>(keep));
}

// One token through attention_decode_step: the projections, then RoPE, the cache append and the
// attention in one call that reads the position from the device.
Tensor CausalSelfAttention::fused_step(const Tensor& x, KVCache& st) {
  const int64_t B = x.shape()[0];
  make_room(st, 1);
  const Shape heads = {B, 1, n_heads_, head_dim_};
  const auto proj = [&](const Linear& w) { return reshape(w.forward(x, /*low=*/false), heads); };
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  const Tensor o = attention_decode_step(proj(*wq), proj(*wk), proj(*wv), st.k, st.v, st.counters, window_, scale,
                                         rope_theta_);
  st.len += 1;
  st.position += 1;
  return wo->forward(reshape(o, {B, 1, d_model_}));
}

Tensor CausalSelfAttention::step(const Tensor& x, MixerState& state) {
  auto* st = dynamic_cast<KVCache*>(&state);
  if (!st) throw std::invalid_argument("attention: step() needs the state made by this layer's init_state()");
  NoGradGuard ng;  // the cache is written in place: inference only
  if (x.dim() == 3 && x.shape()[0] != st->k.shape()[0])
    throw std::invalid_argument("attention: step() batch " + std::to_string(x.shape()[0]) +
                                " differs from the state's " + std::to_string(st->k.shape()[0]));
  if (st->fused && x.dim() == 3 && x.shape()[1] == 1 && x.shape()[2] == d_model_) return fused_step(x, *st);
  const int64_t T = x.shape()[1], p0 = st->position;
  Tensor q, k, v;
  project(x, p0, q, k, v, /*low=*/false);
  make_room(*st, T);
  st->k.narrow(2, st->len, T).copy_(k);
  st->v.narrow(2, st->len, T).copy_(v);
  st->len += T;
  const int64_t k_start = p0 + T - st->len;
  Tensor y = attend(q, st->k.narrow(2, 0, st->len), st->v.narrow(2, 0, st->len), p0, k_start);
  st->position += T;
  if (st->counters.defined())  // the fused steps that follow read them
    st->counters.copy_(from_vector_i64({st->position, st->len}, {2}).to(st->counters.device()));
  return y;
}

double CausalSelfAttention::extra_flops_per_token(int64_t seq_len) const {
  // Keys seen per query, averaged over positions 0..T-1 (what a causal kernel computes).
  double keys = 0;
  for (int64_t t = 0; t < seq_len; ++t) keys += window_ > 0 ? std::min<int64_t>(t + 1, window_) : t + 1;
  keys /= std::max<int64_t>(seq_len, 1);
  return 2.0 * 2.0 * static_cast<double>(d_model_) * keys;  // q·k and p·v, 2 FLOPs per MAC
}

}  // namespace ttt
