// layers/mamba2.h — the Mamba-2 sequence mixer (Dao & Gu 2024), baseline 4 of the E2E paper,
// following state-spaces/mamba `mamba_ssm/modules/mamba2.py` (Mamba2, ngroups, no d_ssm split):
//
//   (z, xBC, dt) = in_proj(x)                     z, x ∈ R^{d_inner}, B, C ∈ R^{G·N}, dt ∈ R^H
//   xBC = silu(conv1d(xBC))                       causal depthwise conv of width d_conv, with bias
//   Δ = softplus(dt + dt_bias),  A = −exp(A_log)  per head
//   y = SSD(x, Δ, A, B, C) + D ⊙ x                heads of P = head_dim channels, state N = d_state
//                                                 (ssd.h; B, C shared by the heads of a group)
//   out = out_proj(RMSNorm(y ⊙ silu(z)) ⊙ w)      the gated RMSNorm, norm over each group (eps 1e-5)
//
// d_inner = expand · d_model, H = d_inner / head_dim. Defaults (model.mamba2.*): N 128, P 64,
// expand 2, one group, conv 4 — the E2E paper's settings. Parameter names are the reference's:
// in_proj, conv1d, dt_bias, A_log, D, norm, out_proj. Init: projections N(0, init_std) like every
// Linear here (the reference keeps PyTorch's default Linear init), conv U(±1/√k), dt_bias =
// softplus⁻¹(dt) with dt log-uniform in [1e-3, 0.1], A ~ U(1, 16), D = 1, norm weight 1.
//
// forward() runs the scan by model.mamba2.kernel: `recurrent` (and `auto`, the faster on both devices)
// the token-by-token gated delta kernels without the erase term (kernels/gated_delta.h); `fused` the
// chunk-parallel SSD (model.mamba2.chunk) as the op ssd_scan through its fused kernels (kernels/ssd.h:
// CUDA float32, and the CPU reference); `composite` the same chunked form from autograd ops. The ops
// fall back to their composites for shapes the backend does not support; step() decodes any number of tokens
// from an O(1) state (the conv's last d_conv−1 inputs and the SSM state [B, H, P, N]) with the same
// chunked code started from that state, so it equals the forward (tests/test_baseline_mixers.cpp).
// The scan runs in float32 (float64 for float64 layers) whatever the activations' dtype.
#pragma once

#include <memory>
#include <string>

#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

class Linear;
class CausalConv1d;
class RMSNorm;

class Mamba2Mixer : public SequenceMixer {
 public:
  Mamba2Mixer(const ModelConfig& cfg, Generator& g);
  Tensor forward(const Tensor& x) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  // Use the per-token recurrence instead of the chunked form (tests; the same values).
  void set_recurrent(bool on) { recurrent_ = on; }
  // The SSD scan's path: "fused", "composite" or "auto" (model.mamba2.kernel).
  void set_kernel(const std::string& k) { kernel_ = k; }

  std::shared_ptr<Linear> in_proj, out_proj;
  std::shared_ptr<CausalConv1d> conv1d;
  std::shared_ptr<RMSNorm> norm;
  Tensor dt_bias, A_log, D;

 private:
  // The mixer after the convolution: xbc [B, T, conv_dim] (conv output before SiLU), z, dt from
  // in_proj; h0 the SSM state (undefined = zeros). Returns the output and sets h_out.
  Tensor mix(const Tensor& xbc, const Tensor& z, const Tensor& dt, const Tensor& h0, Tensor& h_out) const;
  void check_input(const Tensor& x) const;
  int64_t d_model_, d_inner_, heads_, head_dim_, d_state_, groups_, chunk_;
  std::string kernel_;
  bool recurrent_ = false;
};

}  // namespace ttt
