// layers/ttt_kvb.cpp — see ttt_kvb.h.
#include "layers/ttt_kvb.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "autograd/ops.h"
#include "layers/attention.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

struct KVBState : MixerState {
  FastWeights W;           // [B, H, …], float32 (float64 for float64 layers)
  Tensor k, v, eta;        // the unfinished chunk's keys, values [B, H, n, f], rates [B, H, n] (n < b)
  std::unique_ptr<MixerState> attn;
};

// [B, T, H·f] -> [B, H, T, f]
Tensor heads_first(const Tensor& x, int64_t H, int64_t f) {
  return permute(reshape(x, {x.shape()[0], x.shape()[1], H, f}), {0, 2, 1, 3});
}

Tensor row_norm(const Tensor& w) { return sqrt(add_scalar(sum(square(w), {-1}, true), 1e-12)); }

Tensor cat_time(const Tensor& a, const Tensor& b) { return a.defined() ? cat({a, b}, 2) : b; }

}  // namespace

TTTKVBMixer::TTTKVBMixer(const ModelConfig& cfg, Generator& g)
    : d_model_(cfg.d_model), heads_(kvb_heads(cfg)), f_(cfg.d_model / kvb_heads(cfg)),
      hidden_(cfg.kvb.hidden_mult * (cfg.d_model / kvb_heads(cfg))), mini_batch_(cfg.kvb.mini_batch),
      weight_norm_(cfg.kvb.weight_norm) {
  ModelConfig c = cfg;
  c.mixer = "ttt_kvb";
  validate_block_mixer(c);
  const int64_t D = d_model_;
  const double std = cfg.init_std;
  q_proj = register_module("q_proj", std::make_shared<Linear>(D, D, g, std));
  k_proj = register_module("k_proj", std::make_shared<Linear>(D, D, g, std));
  v_proj = register_module("v_proj", std::make_shared<Linear>(D, D, g, std));
  lr_proj = register_module("lr_proj", std::make_shared<Linear>(D, heads_, g, std, /*bias=*/true));
  {
    NoGradGuard ng;
    lr_proj->bias.fill_(inv_softplus(cfg.kvb.base_lr));
  }
  // LaCT's fast-weight init: N(0, 1/√fan_in) per matrix.
  w0 = register_parameter("w0", init_normal({heads_, hidden_, f_}, g, 1.0 / std::sqrt(static_cast<double>(f_))));
  w1 = register_parameter("w1", init_normal({heads_, f_, hidden_}, g, 1.0 / std::sqrt(static_cast<double>(hidden_))));
  w2 = register_parameter("w2", init_normal({heads_, hidden_, f_}, g, 1.0 / std::sqrt(static_cast<double>(f_))));
  ttt_norm = register_module("ttt_norm", std::make_shared<RMSNorm>(f_, cfg.norm_eps));
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(D, D, g, std));
  o_proj = register_module("o_proj", std::make_shared<Linear>(D, D, g, std));
  if (cfg.window > 0) {
    ModelConfig a = cfg;
    a.mixer = "attention";
    attn = register_module("attn", std::make_shared<CausalSelfAttention>(a, g));
  }
}

Tensor TTTKVBMixer::apply(const FastWeights& W, const Tensor& x) const {
  Tensor a = mul(silu(matmul(x, transpose(W.w0, -2, -1))), matmul(x, transpose(W.w2, -2, -1)));  // [.., L, m]
  return matmul(a, transpose(W.w1, -2, -1));                                                     // [.., L, f]
}

Tensor TTTKVBMixer::rescale_rows(const Tensor& w, const Tensor& w_init) const {
  return mul(w, div(row_norm(w_init), row_norm(w)));
}

FastWeights TTTKVBMixer::update(const FastWeights& W, const Tensor& k, const Tensor& v, const Tensor& eta) const {
  // Forward of the chunk's keys through g, then the gradient of Σ_t η_t ½‖g(k_t) − v_t‖² by hand.
  Tensor h0 = matmul(k, transpose(W.w0, -2, -1)), h2 = matmul(k, transpose(W.w2, -2, -1));  // [.., L, m]
  Tensor s0 = silu(h0);
  Tensor a = mul(s0, h2);
  Tensor e = mul(sub(matmul(a, transpose(W.w1, -2, -1)), v), unsqueeze(eta, -1));  // η (g(k) − v), [.., L, f]
  Tensor da = matmul(e, W.w1);                                                         // [.., L, m]
  Tensor dh0 = mul(mul(da, h2), silu_grad(h0));
  Tensor dh2 = mul(da, s0);
  FastWeights out{sub(W.w0, matmul(transpose(dh0, -2, -1), k)),   // dW0 = Σ dh0 kᵀ
                  sub(W.w1, matmul(transpose(e, -2, -1), a)),     // dW1 = Σ e aᵀ
                  sub(W.w2, matmul(transpose(dh2, -2, -1), k))};  // dW2 = Σ dh2 kᵀ
  if (weight_norm_) {
    const DType d = out.w0.dtype();
    out.w0 = rescale_rows(out.w0, as_dtype(w0, d));
    out.w1 = rescale_rows(out.w1, as_dtype(w1, d));
    out.w2 = rescale_rows(out.w2, as_dtype(w2, d));
  }
  return out;
}

TTTKVBMixer::Views TTTKVBMixer::views(const Tensor& x) const {
  check_defined("ttt_kvb", x);
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw std::invalid_argument("ttt_kvb: expected input [B, T, " + std::to_string(d_model_) + "], got " +
                                x.shape().str());
  const DType S = scan_dtype(x.dtype());
  Views v;
  v.q = l2_normalize(heads_first(as_dtype(silu(q_proj->forward(x)), S), heads_, f_));
  v.k = l2_normalize(heads_first(as_dtype(silu(k_proj->forward(x)), S), heads_, f_));
  v.v = heads_first(as_dtype(v_proj->forward(x), S), heads_, f_);
  v.eta = transpose(softplus(as_dtype(lr_proj->forward(x), S)), 1, 2);  // [B, H, T]
  return v;
}

Tensor TTTKVBMixer::output(const Tensor& x, const Tensor& o) const {
  const int64_t B = x.shape()[0], T = x.shape()[1];
  Tensor n = ttt_norm->forward(as_dtype(permute(o, {0, 2, 1, 3}), x.dtype()));  // [B, T, H, f]
  return o_proj->forward(mul(silu(gate_proj->forward(x)), reshape(n, {B, T, d_model_})));
}

Tensor TTTKVBMixer::forward(const Tensor& x) {
  Views in = views(x);
  const int64_t T = x.shape()[1];
  const DType S = in.q.dtype();
  FastWeights W{as_dtype(w0, S), as_dtype(w1, S), as_dtype(w2, S)};
  tensor_list outs;
  for (int64_t t0 = 0; t0 < T; t0 += mini_batch_) {
    const int64_t len = std::min(mini_batch_, T - t0);
    outs.push_back(apply(W, narrow(in.q, 2, t0, len)));
    if (t0 + len < T) W = update(W, narrow(in.k, 2, t0, len), narrow(in.v, 2, t0, len), narrow(in.eta, 2, t0, len));
  }
  Tensor y = output(x, outs.size() == 1 ? outs[0] : cat(outs, 2));
  return attn ? add(y, attn->forward(x)) : y;
}

std::unique_ptr<MixerState> TTTKVBMixer::init_state(int64_t batch) {
  auto st = std::make_unique<KVBState>();
  const DType S = scan_dtype(w0.dtype());
  auto per_batch = [&](const Tensor& w) {
    Shape s = w.shape();
    s.insert(0, batch);
    return contiguous(expand(unsqueeze(as_dtype(w.detach(), S), 0), s));
  };
  st->W = {per_batch(w0), per_batch(w1), per_batch(w2)};
  if (attn) st->attn = attn->init_state(batch);
  return st;
}

Tensor TTTKVBMixer::step(const Tensor& x, MixerState& state) {
  auto* st = dynamic_cast<KVBState*>(&state);
  if (!st) throw std::invalid_argument("ttt_kvb: step() needs the state made by this layer's init_state()");
  Views in = views(x);
  if (x.shape()[0] != st->W.w0.shape()[0])
    throw std::invalid_argument("ttt_kvb: step() batch " + std::to_string(x.shape()[0]) + " differs from the state's " +
                                std::to_string(st->W.w0.shape()[0]));
  const int64_t T = x.shape()[1];
  tensor_list outs;
  for (int64_t t0 = 0; t0 < T;) {
    const int64_t pending = st->k.defined() ? st->k.shape()[2] : 0;
    const int64_t len = std::min(mini_batch_ - pending, T - t0);
    outs.push_back(apply(st->W, narrow(in.q, 2, t0, len)));
    st->k = cat_time(st->k, narrow(in.k, 2, t0, len));
    st->v = cat_time(st->v, narrow(in.v, 2, t0, len));
    st->eta = cat_time(st->eta, narrow(in.eta, 2, t0, len));
    if (pending + len == mini_batch_) {  // the chunk is complete: train on it
      st->W = update(st->W, st->k, st->v, st->eta);
      st->k = st->v = st->eta = Tensor();
    }
    t0 += len;
  }
  Tensor y = output(x, outs.size() == 1 ? outs[0] : cat(outs, 2));
  if (attn) y = add(y, attn->step(x, *st->attn));
  st->position += T;
  return y;
}

double TTTKVBMixer::extra_flops_per_token(int64_t seq_len) const {
  // Per head and token: reading g at q (3 products of f·m), and the update's forward at k (3) and
  // backward (4: e aᵀ, W1ᵀ e, and the two dhᵀ k) — multiply-adds; plus the window attention.
  const double fw = 2.0 * 10.0 * static_cast<double>(heads_ * f_ * hidden_);
  return fw + (attn ? attn->extra_flops_per_token(seq_len) : 0.0);
}

}  // namespace ttt
