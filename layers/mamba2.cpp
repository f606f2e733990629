// layers/mamba2.cpp — see mamba2.h.
#include "layers/mamba2.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/ops.h"
#include "layers/causal_conv.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/ssd.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

struct Mamba2State : MixerState {
  Tensor conv_tail;  // [B, d_conv − 1, conv_dim]
  Tensor h;          // [B, H, P, N], float32 (float64 for float64 layers)
};

}  // namespace

Mamba2Mixer::Mamba2Mixer(const ModelConfig& cfg, Generator& g)
    : d_model_(cfg.d_model),
      d_inner_(cfg.mamba2.expand * cfg.d_model),
      heads_(cfg.mamba2.expand * cfg.d_model / cfg.mamba2.head_dim),
      head_dim_(cfg.mamba2.head_dim),
      d_state_(cfg.mamba2.d_state),
      groups_(cfg.mamba2.n_groups),
      chunk_(cfg.mamba2.chunk),
      kernel_(cfg.mamba2.kernel) {
  ModelConfig c = cfg;
  c.mixer = "mamba2";
  validate_block_mixer(c);  // sizes fit (a clear error naming the key otherwise)
  const int64_t conv_dim = d_inner_ + 2 * groups_ * d_state_;
  in_proj = register_module(
      "in_proj", std::make_shared<Linear>(d_model_, 2 * d_inner_ + 2 * groups_ * d_state_ + heads_, g, cfg.init_std));
  conv1d = register_module("conv1d", std::make_shared<CausalConv1d>(conv_dim, cfg.mamba2.d_conv, g));
  dt_bias = register_parameter("dt_bias", dt_bias_init(heads_, g));
  A_log = register_parameter("A_log", log(rand({heads_}, g, opts(DType::f32), 1.0, 16.0)));
  D = register_parameter("D", ones({heads_}));
  norm = register_module("norm", std::make_shared<RMSNorm>(d_inner_, cfg.mamba2.norm_eps));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d_inner_, d_model_, g, cfg.init_std));
}

void Mamba2Mixer::check_input(const Tensor& x) const {
  check_defined("mamba2", x);
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw std::invalid_argument("mamba2: expected input [B, T, " + std::to_string(d_model_) + "], got " +
                                x.shape().str());
}

Tensor Mamba2Mixer::mix(const Tensor& xbc_conv, const Tensor& z, const Tensor& dt_raw, const Tensor& h0,
                        Tensor& h_out) const {
  const int64_t B = xbc_conv.shape()[0], T = xbc_conv.shape()[1], GN = groups_ * d_state_;
  const DType io = xbc_conv.dtype(), S = scan_dtype(io);
  tensor_list parts = split(as_dtype(silu(xbc_conv), S), {d_inner_, GN, GN}, -1);
  Tensor xs = reshape(parts[0], {B, T, heads_, head_dim_});                              // [B, T, H, P]
  Tensor Bg = reshape(parts[1], {B, T, groups_, d_state_}), Cg = reshape(parts[2], {B, T, groups_, d_state_});
  Tensor dt = softplus(add(as_dtype(dt_raw, S), as_dtype(dt_bias, S)));                 // [B, T, H]
  Tensor A = neg(exp(as_dtype(A_log, S)));
  Tensor y;
  if (recurrent_) {
    auto per_head = [&](const Tensor& t) { return permute(expand_groups(t, heads_), {0, 2, 1, 3}); };  // [B, H, T, N]
    ScanResult r = ssd_recurrent(permute(xs, {0, 2, 1, 3}), transpose(dt, 1, 2), A, per_head(Bg), per_head(Cg), h0);
    y = permute(r.y, {0, 2, 1, 3});
    h_out = r.state;
  } else if (kernel_ == "recurrent" || kernel_ == "auto" || delta_form_of(kernel_) != DeltaForm::walk) {
    // The token-by-token kernels of the delta rule without its erase term, on the state Hᵀ; the
    // heads of a group read its B and C (q/k heads = groups). `auto` takes them on both devices:
    // on an H200 the 125M trains at 32.3k tok/s this way against 20.4k through the chunked SSD
    // kernels at 8 x 2048 (22.9k vs 19.9k at 2 x 8192; BENCHMARKS.md), and on the CPU too.
    // `delta_chunked`: the same op through its chunked WY kernels on CUDA (GatedDeltaShape::chunked);
    // `delta_chunked_tc` with their products on the tensor cores.
    const Tensor g = mul(dt, reshape(A, {1, 1, heads_}));
    const DeltaForm form = delta_form_of(kernel_);
    require_gated_delta_kernels("mamba2", "model.mamba2.kernel", kernel_, form != DeltaForm::walk, Cg, xs, chunk_, form);
    ScanResult r = gated_linear_rule(Cg, Bg, xs, g, dt, chunk_,
                                     h0.defined() ? transpose(h0, 2, 3) : Tensor(), /*fused=*/true, form);
    y = r.y;
    h_out = transpose(r.state, 2, 3);
  } else {
    tensor_list r = ssd_scan(xs, dt, A, Bg, Cg, h0, chunk_, kernel_ == "fused");
    y = r[0];
    h_out = r[1];
  }
  y = add(y, mul(reshape(as_dtype(D, S), {1, 1, heads_, 1}), xs));
  y = as_dtype(reshape(y, {B, T, d_inner_}), io);
  // Gated RMSNorm, normalized over each group of d_inner / G channels.
  if (groups_ == 1) return out_proj->forward(gated_rms_norm(y, z, norm->weight, norm->eps, true));
  const int64_t gs = d_inner_ / groups_;
  Tensor u = rms_norm(reshape(mul(y, silu(z)), {B, T, groups_, gs}), Tensor(), norm->eps);
  return out_proj->forward(mul(reshape(u, {B, T, d_inner_}), norm->weight));
}

Tensor Mamba2Mixer::forward(const Tensor& x) {
  check_input(x);
  const int64_t GN = groups_ * d_state_;
  tensor_list p = split(in_proj->forward(x), {d_inner_, d_inner_ + 2 * GN, heads_}, -1);  // z, xBC, dt
  Tensor h_out;
  return mix(conv1d->forward(p[1]), p[0], p[2], Tensor(), h_out);
}

std::unique_ptr<MixerState> Mamba2Mixer::init_state(int64_t batch) {
  auto st = std::make_unique<Mamba2State>();
  st->conv_tail = conv1d->init_tail(batch, conv1d->weight.dtype(), conv1d->weight.device());
  st->h = zeros({batch, heads_, head_dim_, d_state_}, opts(scan_dtype(A_log.dtype()), A_log.device()));
  return st;
}

Tensor Mamba2Mixer::step(const Tensor& x, MixerState& state) {
  auto* st = dynamic_cast<Mamba2State*>(&state);
  if (!st) throw std::invalid_argument("mamba2: step() needs the state made by this layer's init_state()");
  check_input(x);
  if (x.shape()[0] != st->h.shape()[0])
    throw std::invalid_argument("mamba2: step() batch " + std::to_string(x.shape()[0]) + " differs from the state's " +
                                std::to_string(st->h.shape()[0]));
  const int64_t GN = groups_ * d_state_;
  tensor_list p = split(in_proj->forward(x), {d_inner_, d_inner_ + 2 * GN, heads_}, -1);
  Tensor xbc = conv1d->step(p[1], st->conv_tail);
  Tensor h_new;
  Tensor y = mix(xbc, p[0], p[2], as_dtype(st->h, scan_dtype(xbc.dtype())), h_new);
  st->h = h_new;
  st->position += x.shape()[1];
  return y;
}

double Mamba2Mixer::extra_flops_per_token(int64_t seq_len) const {
  // The chunked SSD per head and token: C Bᵀ and (·) X̄ over the Q tokens of its chunk, the chunk
  // state (P·N) and the state read-out (P·N) — multiply-adds, dense blocks as computed.
  const double Q = static_cast<double>(std::min<int64_t>(chunk_, std::max<int64_t>(seq_len, 1)));
  const double P = static_cast<double>(head_dim_), N = static_cast<double>(d_state_);
  return 2.0 * static_cast<double>(heads_) * (Q * N + Q * P + 2.0 * P * N);
}

}  // namespace ttt
