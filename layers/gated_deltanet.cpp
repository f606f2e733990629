// layers/gated_deltanet.cpp — see gated_deltanet.h.
#include "layers/gated_deltanet.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "autograd/ops.h"
#include "layers/causal_conv.h"
#include "layers/delta_rule.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

struct GDNState : MixerState {
  Tensor tails[3];  // q, k, v conv tails [B, d_conv − 1, C]
  Tensor S;         // M = Sᵀ [B, H, d_k, d_v], float32 (float64 for float64 layers)
};

}  // namespace

GatedDeltaNetMixer::GatedDeltaNetMixer(const ModelConfig& cfg, Generator& g)
    : d_model_(cfg.d_model), heads_(gdn_heads(cfg)), dk_(gdn_head_dim(cfg)),
      dv_(cfg.gdn.expand_v * gdn_head_dim(cfg)), chunk_(cfg.gdn.chunk), kernel_(cfg.gdn.kernel) {
  ModelConfig c = cfg;
  c.mixer = "gated_deltanet";
  validate_block_mixer(c);
  const int64_t D = d_model_, key_dim = heads_ * dk_, value_dim = heads_ * dv_, w = cfg.gdn.d_conv;
  const double std = cfg.init_std;
  q_proj = register_module("q_proj", std::make_shared<Linear>(D, key_dim, g, std));
  k_proj = register_module("k_proj", std::make_shared<Linear>(D, key_dim, g, std));
  v_proj = register_module("v_proj", std::make_shared<Linear>(D, value_dim, g, std));
  a_proj = register_module("a_proj", std::make_shared<Linear>(D, heads_, g, std));
  b_proj = register_module("b_proj", std::make_shared<Linear>(D, heads_, g, std));
  Tensor A = rand({heads_}, g, opts(DType::f32), 0.0, 16.0);
  A_log = register_parameter("A_log", log(maximum(A, full({heads_}, 1e-4))));
  dt_bias = register_parameter("dt_bias", dt_bias_init(heads_, g));
  q_conv1d = register_module("q_conv1d", std::make_shared<CausalConv1d>(key_dim, w, g, false));
  k_conv1d = register_module("k_conv1d", std::make_shared<CausalConv1d>(key_dim, w, g, false));
  v_conv1d = register_module("v_conv1d", std::make_shared<CausalConv1d>(value_dim, w, g, false));
  g_proj = register_module("g_proj", std::make_shared<Linear>(D, value_dim, g, std));
  o_norm = register_module("o_norm", std::make_shared<RMSNorm>(dv_, cfg.gdn.norm_eps));
  o_proj = register_module("o_proj", std::make_shared<Linear>(value_dim, D, g, std));
}

Tensor GatedDeltaNetMixer::run(const Tensor& x, Tensor* tails, const Tensor& S0, Tensor& S_out) const {
  check_defined("gated_deltanet", x);
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw std::invalid_argument("gated_deltanet: expected input [B, T, " + std::to_string(d_model_) + "], got " +
                                x.shape().str());
  const int64_t B = x.shape()[0], T = x.shape()[1];
  const DType io = x.dtype(), S = scan_dtype(io);
  auto conv = [&](const CausalConv1d& c, const Tensor& u, int i) {
    return silu(tails ? c.step(u, tails[i]) : c.forward(u));
  };
  // Heads last, [B, T, H, d]: the projections' layout, which the fused kernels read as it is.
  auto heads = [&](const Tensor& t, int64_t d) { return reshape(t, {B, T, heads_, d}); };
  Tensor q = heads(as_dtype(conv(*q_conv1d, q_proj->forward(x), 0), S), dk_);
  Tensor k = heads(as_dtype(conv(*k_conv1d, k_proj->forward(x), 1), S), dk_);
  Tensor v = heads(as_dtype(conv(*v_conv1d, v_proj->forward(x), 2), S), dv_);
  q = mul_scalar(l2_normalize(q), 1.0 / std::sqrt(static_cast<double>(dk_)));
  k = l2_normalize(k);
  Tensor gate = mul(neg(exp(as_dtype(A_log, S))), softplus(add(as_dtype(a_proj->forward(x), S), as_dtype(dt_bias, S))));
  Tensor beta = sigmoid(as_dtype(b_proj->forward(x), S));  // gate, beta [B, T, H]
  ScanResult r;
  if (recurrent_) {
    auto first = [](const Tensor& t) { return permute(t, {0, 2, 1, 3}); };
    r = gated_delta_recurrent(first(q), first(k), first(v), transpose(gate, 1, 2), transpose(beta, 1, 2), S0);
    r.y = first(r.y);
  } else {
    const DeltaForm form = delta_form_of(kernel_);
    require_gated_delta_kernels("gated_deltanet", "model.gdn.kernel", kernel_,
                                kernel_ == "fused" || form != DeltaForm::walk, q, v, chunk_, form);
    r = gated_delta_rule(q, k, v, gate, beta, chunk_, S0, kernel_ != "composite", form);  // auto: the op falls back
  }
  S_out = r.state;
  Tensor o = as_dtype(r.y, io);                                                        // [B, T, H, d_v]
  Tensor gz = reshape(g_proj->forward(x), {B, T, heads_, dv_});
  o = gated_rms_norm(o, gz, o_norm->weight, o_norm->eps, false);                      // RMSNorm(o)·w ⊙ silu(g)
  return o_proj->forward(reshape(o, {B, T, heads_ * dv_}));
}

Tensor GatedDeltaNetMixer::forward(const Tensor& x) {
  Tensor S_out;
  return run(x, nullptr, Tensor(), S_out);
}

std::unique_ptr<MixerState> GatedDeltaNetMixer::init_state(int64_t batch) {
  auto st = std::make_unique<GDNState>();
  const DType d = q_conv1d->weight.dtype();
  const Device dev = q_conv1d->weight.device();
  st->tails[0] = q_conv1d->init_tail(batch, d, dev);
  st->tails[1] = k_conv1d->init_tail(batch, d, dev);
  st->tails[2] = v_conv1d->init_tail(batch, d, dev);
  st->S = zeros({batch, heads_, dk_, dv_}, opts(scan_dtype(d), dev));
  return st;
}

Tensor GatedDeltaNetMixer::step(const Tensor& x, MixerState& state) {
  auto* st = dynamic_cast<GDNState*>(&state);
  if (!st) throw std::invalid_argument("gated_deltanet: step() needs the state made by this layer's init_state()");
  if (x.dim() != 3 || x.shape()[0] != st->S.shape()[0])
    throw std::invalid_argument("gated_deltanet: step() input " + x.shape().str() + " does not match the state's batch " +
                                std::to_string(st->S.shape()[0]));
  Tensor S_new;
  Tensor y = run(x, st->tails, as_dtype(st->S, scan_dtype(x.dtype())), S_new);
  st->S = S_new;
  st->position += x.shape()[1];
  return y;
}

double GatedDeltaNetMixer::extra_flops_per_token(int64_t seq_len) const {
  // Chunked form per head and token: K Kᵀ, Q Kᵀ and T·(βγK) over the chunk (Q·d_k each), T·(βV) and
  // (QKᵀ)·U (Q·d_v each), and W M₀, Q M₀, Kᵀ U against the state (d_k·d_v each); multiply-adds.
  const double Q = static_cast<double>(std::min<int64_t>(chunk_, std::max<int64_t>(seq_len, 1)));
  const double dk = static_cast<double>(dk_), dv = static_cast<double>(dv_);
  return 2.0 * static_cast<double>(heads_) * (3.0 * Q * dk + 2.0 * Q * dv + 3.0 * dk * dv);
}

}  // namespace ttt
