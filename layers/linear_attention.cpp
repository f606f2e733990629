// layers/linear_attention.cpp — see linear_attention.h.
#include "layers/linear_attention.h"

#include <stdexcept>
#include <vector>

#include "autograd/ops.h"

namespace ttt {

namespace {

struct LinearAttentionState : MixerState {
  Tensor S;  // Σ_s φ(k_s) v_sᵀ, [B, H, d_h, d_h]
  Tensor n;  // Σ_s φ(k_s), [B, H, 1, d_h] (normalize only)
};

// 1 on and below the diagonal, 0 above: [T, T].
Tensor causal_ones(int64_t T, DType dtype, Device device) {
  std::vector<double> m(static_cast<size_t>(T * T), 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j <= i; ++j) m[i * T + j] = 1.0;
  return from_vector(m, {T, T}, opts(dtype)).to(device);
}

}  // namespace

LinearAttention::LinearAttention(const ModelConfig& cfg, Generator& g)
    : d_model_(cfg.d_model), n_heads_(cfg.n_heads), head_dim_(cfg.head_dim()), opt_(cfg.linear_attention) {
  if (opt_.feature_map != "identity" && opt_.feature_map != "elu_plus_one")
    throw std::invalid_argument("linear_attention: model.linear_attention.feature_map: expected identity or "
                                "elu_plus_one, got '" + opt_.feature_map + "'");
  if (cfg.n_heads <= 0 || cfg.d_model % cfg.n_heads != 0)
    throw std::invalid_argument("linear_attention: model.d_model (" + std::to_string(cfg.d_model) +
                                ") must be divisible by model.n_heads (" + std::to_string(cfg.n_heads) + ")");
  const int64_t D = cfg.d_model;
  wq = register_module("wq", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wk = register_module("wk", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wv = register_module("wv", std::make_shared<Linear>(D, D, g, cfg.init_std));
  wo = register_module("wo", std::make_shared<Linear>(D, D, g, cfg.init_std));
}

void LinearAttention::project(const Tensor& x, Tensor& q, Tensor& k, Tensor& v) const {
  check_defined("linear_attention", x);
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw std::invalid_argument("linear_attention: expected input [B, T, " + std::to_string(d_model_) +
                                "], got " + x.shape().str());
  const Shape heads = {x.shape()[0], x.shape()[1], n_heads_, head_dim_};
  q = feature(transpose(reshape(wq->forward(x), heads), 1, 2));
  k = feature(transpose(reshape(wk->forward(x), heads), 1, 2));
  v = transpose(reshape(wv->forward(x), heads), 1, 2);
}

// elu(x) + 1 = relu(x) + exp(min(x, 0)): x + 1 for x > 0, exp(x) otherwise, and the exp never
// sees a large argument (no overflow, no inf · 0 in the backward).
Tensor LinearAttention::feature(const Tensor& x) const {
  if (opt_.feature_map == "identity") return x;
  return add(relu(x), exp(minimum(x, zeros_like(x))));
}

Tensor LinearAttention::merge(const Tensor& z) const {
  const int64_t B = z.shape()[0], T = z.shape()[2];
  return wo->forward(reshape(transpose(z, 1, 2), {B, T, d_model_}));
}

Tensor LinearAttention::causal_mask(int64_t T, DType dtype, Device device) const {
  if (!mask_cache_.defined() || mask_cache_.shape()[0] != T || mask_cache_.dtype() != dtype ||
      mask_cache_.device() != device)
    mask_cache_ = causal_ones(T, dtype, device);
  return mask_cache_;
}

Tensor LinearAttention::forward(const Tensor& x) {
  Tensor q, k, v;
  project(x, q, k, v);
  const int64_t T = q.shape()[2];
  Tensor a = mul(matmul(q, transpose(k, -2, -1)), causal_mask(T, q.dtype(), q.device()));
  Tensor z = matmul(a, v);
  if (opt_.normalize) z = div(z, add_scalar(sum(a, {-1}, true), opt_.eps));
  return merge(z);
}

std::unique_ptr<MixerState> LinearAttention::init_state(int64_t batch) {
  auto st = std::make_unique<LinearAttentionState>();
  const TensorOptions o = opts(wq->weight.dtype(), wq->weight.device());
  st->S = zeros({batch, n_heads_, head_dim_, head_dim_}, o);
  if (opt_.normalize) st->n = zeros({batch, n_heads_, 1, head_dim_}, o);
  return st;
}

Tensor LinearAttention::step(const Tensor& x, MixerState& state) {
  auto* st = dynamic_cast<LinearAttentionState*>(&state);
  if (!st) throw std::invalid_argument("linear_attention: step() needs the state made by its init_state()");
  Tensor q, k, v;
  project(x, q, k, v);
  if (q.shape()[0] != st->S.shape()[0])
    throw std::invalid_argument("linear_attention: step() batch " + std::to_string(q.shape()[0]) +
                                " differs from the state's " + std::to_string(st->S.shape()[0]));
  const int64_t T = q.shape()[2];
  // Scores of the chunk's own tokens: tril(φ(Q) φ(K)ᵀ), or φ(q)·φ(k) for a single new token.
  Tensor a = T > 1 ? mul(matmul(q, transpose(k, -2, -1)), causal_mask(T, q.dtype(), q.device()))
                   : sum(mul(q, k), {-1}, true);
  Tensor z = add(matmul(q, st->S), matmul(a, v));  // tokens before the chunk + the chunk's own
  if (opt_.normalize) {
    Tensor den = add(sum(mul(q, st->n), {-1}, true), sum(a, {-1}, true));
    z = div(z, add_scalar(den, opt_.eps));
    st->n = add(st->n, sum(k, {-2}, true));
  }
  st->S = add(st->S, matmul(transpose(k, -2, -1), v));
  st->position += T;
  return merge(z);
}

double LinearAttention::extra_flops_per_token(int64_t seq_len) const {
  // The O(T²) training form: q·k and a·v over (T+1)/2 keys on average (the feature map and the
  // normalizer are elementwise and left out).
  return 2.0 * 2.0 * static_cast<double>(d_model_) * (static_cast<double>(seq_len) + 1.0) / 2.0;
}

}  // namespace ttt
