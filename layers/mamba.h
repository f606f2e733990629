// layers/mamba.h — the Mamba (Mamba-1) sequence mixer (Gu & Dao 2023, Fig. 3 and Alg. 2), the RNN
// baseline of the TTT paper, following state-spaces/mamba `mamba_ssm/modules/mamba_simple.py`:
//
//   (x, z) = in_proj(u)                          x, z ∈ R^{d_inner}, d_inner = expand · d_model
//   x = silu(conv1d(x))                          causal depthwise conv of width d_conv, with bias
//   (δ, B, C) = x_proj(x)                        δ ∈ R^{dt_rank}, B, C ∈ R^N (input-dependent)
//   Δ = softplus(dt_proj(δ))                     dt_proj: dt_rank -> d_inner with bias
//   y = selective_scan(x, Δ, A = −exp(A_log), B, C) + D ⊙ x      (selective_scan.h)
//   out = out_proj(y ⊙ silu(z))
//
// Defaults (model.mamba.*): N = 16, expand 2, conv 4, dt_rank ceil(d_model/16). The language model
// of the Mamba paper stacks these blocks without MLPs (model.d_ff = 0) at twice the Transformer's
// depth: configs/{125m,350m,760m,1.3b}_mamba.yaml. Parameter names are the reference's (in_proj,
// conv1d, x_proj, dt_proj, A_log, D, out_proj). Init: in_proj, x_proj, out_proj N(0, init_std) (the
// reference keeps PyTorch's default Linear init there), conv U(±1/√k), dt_proj.weight
// U(±dt_rank^−½), dt_proj.bias = softplus⁻¹(dt) with dt log-uniform in [1e-3, 0.1] (floor 1e-4),
// A_log[d, n] = log(n + 1) (S4D-real), D = 1.
//
// forward() runs the scan (with its Δ bias, softplus and D skip) as the fused op mamba_selective_scan
// (autograd/ops.h; kernels/selective_scan.h) per model.mamba.kernel (auto: where the device's kernels
// cover the shape — the CPU reference always, CUDA float32 with N = 16; fused: an error elsewhere),
// the composite selective_scan_with_skip (selective_scan.h) otherwise and for gradients of gradients.
// step() decodes from an O(1) state (without grad mode through the same fused op, forward-only from
// the state; under grad mode the composite): the conv's last d_conv − 1 inputs and h [B, d_inner, N].
// The scan runs in float32 (float64 for float64 layers).
#pragma once

#include <memory>
#include <string>

#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

class Linear;
class CausalConv1d;

class MambaMixer : public SequenceMixer {
 public:
  MambaMixer(const ModelConfig& cfg, Generator& g);
  Tensor forward(const Tensor& x) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  // Steps kept between recomputations in backward (selective_scan.h); 0 = keep every step.
  void set_scan_chunk(int64_t c) { scan_chunk_ = c; }
  // The selective scan's path in forward(): "fused", "composite" or "auto" (model.mamba.kernel).
  void set_kernel(const std::string& k) { kernel_ = k; }

  std::shared_ptr<Linear> in_proj, x_proj, dt_proj, out_proj;
  std::shared_ptr<CausalConv1d> conv1d;
  Tensor A_log, D;

 private:
  // After the conv (its output before SiLU) and the gate z: the scan from h0 (undefined = zeros).
  Tensor mix(const Tensor& x_conv, const Tensor& z, const Tensor& h0, Tensor& h_out) const;
  void check_input(const Tensor& x) const;
  int64_t d_model_, d_inner_, d_state_, dt_rank_, scan_chunk_;
  std::string kernel_;
};

}  // namespace ttt
