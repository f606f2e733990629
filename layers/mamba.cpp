// layers/mamba.cpp — see mamba.h.
#include "layers/mamba.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "layers/causal_conv.h"
#include "layers/linear.h"
#include "layers/selective_scan.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

struct MambaState : MixerState {
  Tensor conv_tail;  // [B, d_conv − 1, d_inner]
  Tensor h;          // [B, d_inner, N], float32 (float64 for float64 layers)
};

}  // namespace

MambaMixer::MambaMixer(const ModelConfig& cfg, Generator& g)
    : d_model_(cfg.d_model), d_inner_(cfg.mamba.expand * cfg.d_model), d_state_(cfg.mamba.d_state),
      dt_rank_(mamba_dt_rank(cfg)), scan_chunk_(cfg.mamba.scan_chunk), kernel_(cfg.mamba.kernel) {
  ModelConfig c = cfg;
  c.mixer = "mamba";
  validate_block_mixer(c);
  const double std = cfg.init_std;
  in_proj = register_module("in_proj", std::make_shared<Linear>(d_model_, 2 * d_inner_, g, std));
  conv1d = register_module("conv1d", std::make_shared<CausalConv1d>(d_inner_, cfg.mamba.d_conv, g));
  x_proj = register_module("x_proj", std::make_shared<Linear>(d_inner_, dt_rank_ + 2 * d_state_, g, std));
  dt_proj = register_module("dt_proj", std::make_shared<Linear>(dt_rank_, d_inner_, g, std, /*bias=*/true));
  {
    NoGradGuard ng;  // the reference's dt_proj init, drawn after the Linear's own (overwritten) draw
    dt_proj->weight.copy_(init_uniform({d_inner_, dt_rank_}, g, 1.0 / std::sqrt(static_cast<double>(dt_rank_))));
    dt_proj->bias.copy_(dt_bias_init(d_inner_, g));
  }
  std::vector<double> a(static_cast<size_t>(d_inner_ * d_state_));
  for (int64_t d = 0; d < d_inner_; ++d)
    for (int64_t n = 0; n < d_state_; ++n) a[d * d_state_ + n] = std::log(static_cast<double>(n + 1));
  A_log = register_parameter("A_log", from_vector(a, {d_inner_, d_state_}));
  D = register_parameter("D", ones({d_inner_}));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d_inner_, d_model_, g, std));
}

void MambaMixer::check_input(const Tensor& x) const {
  check_defined("mamba", x);
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw std::invalid_argument("mamba: expected input [B, T, " + std::to_string(d_model_) + "], got " +
                                x.shape().str());
}

Tensor MambaMixer::mix(const Tensor& x_conv, const Tensor& z, const Tensor& h0, Tensor& h_out) const {
  const DType io = x_conv.dtype(), S = scan_dtype(io);
  Tensor xs = silu(x_conv);
  tensor_list p = split(x_proj->forward(xs), {dt_rank_, d_state_, d_state_}, -1);  // δ, B, C
  // dt_proj without its bias: the scan adds the bias in its own precision before the softplus.
  const Tensor& w = dt_proj->weight;
  Tensor delta = as_dtype(reshape(matmul(reshape(p[0], {-1, dt_rank_}), transpose(w, 0, 1)), xs.shape()), S);
  Tensor u = as_dtype(xs, S), A = neg(exp(as_dtype(A_log, S))), Bm = as_dtype(p[1], S), Cm = as_dtype(p[2], S);
  Tensor Ds = as_dtype(D, S), bias = as_dtype(dt_proj->bias, S);
  const std::string why = mamba_selective_scan_unsupported(u, A);
  if (kernel_ == "fused" && !why.empty())
    throw std::invalid_argument("mamba: model.mamba.kernel is 'fused' but the fused selective scan cannot run on " +
                                u.device().str() + ": " + why + " (use auto or composite)");
  const bool fused = kernel_ != "composite";  // auto: the op itself falls back where unsupported
  const int64_t chunk = scan_chunk_;
  const SelectiveScanComposite twin = [chunk](const tensor_list& in) {
    return selective_scan_with_skip(in[0], in[1], in[2], in[3], in[4], in[5], in[6], Tensor(), chunk).y;
  };
  Tensor y;
  if (!h0.defined()) {
    y = mamba_selective_scan(u, delta, A, Bm, Cm, Ds, bias, twin, fused);
  } else if (fused && why.empty() && !GradMode::is_enabled()) {  // decoding, prefill: the kernels from the state
    y = mamba_selective_scan(u, delta, A, Bm, Cm, Ds, bias, twin, true, h0, &h_out);
  } else {  // decoding under grad mode: the composite scan from the state (its new state differentiable)
    ScanResult r = selective_scan_with_skip(u, delta, A, Bm, Cm, Ds, bias, h0, scan_chunk_);
    h_out = r.state;
    y = r.y;
  }
  return out_proj->forward(mul(as_dtype(y, io), silu(z)));
}

Tensor MambaMixer::forward(const Tensor& x) {
  check_input(x);
  tensor_list xz = split(in_proj->forward(x), {d_inner_, d_inner_}, -1);
  Tensor h_out;
  return mix(conv1d->forward(xz[0]), xz[1], Tensor(), h_out);
}

std::unique_ptr<MixerState> MambaMixer::init_state(int64_t batch) {
  auto st = std::make_unique<MambaState>();
  st->conv_tail = conv1d->init_tail(batch, conv1d->weight.dtype(), conv1d->weight.device());
  st->h = zeros({batch, d_inner_, d_state_}, opts(scan_dtype(A_log.dtype()), A_log.device()));
  return st;
}

Tensor MambaMixer::step(const Tensor& x, MixerState& state) {
  auto* st = dynamic_cast<MambaState*>(&state);
  if (!st) throw std::invalid_argument("mamba: step() needs the state made by this layer's init_state()");
  check_input(x);
  if (x.shape()[0] != st->h.shape()[0])
    throw std::invalid_argument("mamba: step() batch " + std::to_string(x.shape()[0]) + " differs from the state's " +
                                std::to_string(st->h.shape()[0]));
  tensor_list xz = split(in_proj->forward(x), {d_inner_, d_inner_}, -1);
  Tensor xc = conv1d->step(xz[0], st->conv_tail);
  Tensor h_new;
  Tensor y = mix(xc, xz[1], as_dtype(st->h, scan_dtype(xc.dtype())), h_new);
  st->h = h_new;
  st->position += x.shape()[1];
  return y;
}

double MambaMixer::extra_flops_per_token(int64_t) const {
  // Per channel and state entry: the decay product, the input term and the read-out (one
  // multiply-add each).
  return 2.0 * 3.0 * static_cast<double>(d_inner_ * d_state_);
}

}  // namespace ttt
