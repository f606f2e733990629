// layers/gated_deltanet.h — the Gated DeltaNet sequence mixer (Yang, Kautz, Hatamizadeh, ICLR 2025),
// baseline 5 of the E2E paper, following fla `fla/layers/gated_deltanet.py` (GatedDeltaNet, the
// layer NVlabs/GatedDeltaNet builds on):
//
//   q, k, v = silu(conv(x W_q)), silu(conv(x W_k)), silu(conv(x W_v))   short causal convs, no bias
//   per head: q = l2norm(q) / √d_k, k = l2norm(k)                        (use_qk_l2norm_in_kernel)
//   g = −exp(A_log) · softplus(x W_a + dt_bias)  (log α),  β = σ(x W_b)
//   o = gated delta rule (delta_rule.h):  S_t = α_t S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ,  o_t = S_t q_t
//   out = W_o (RMSNorm_{d_v}(o) ⊙ w ⊙ silu(x W_g))                      per-head gated norm (eps 1e-5)
//
// Heads H = model.gdn.n_heads (default model.n_heads / 2), key head dim d_k (default 0.75 · d_model / H,
// fla's key_dim = 0.75 · hidden), value head dim d_v = expand_v · d_k (2): about 6 d_model²
// parameters, like Mamba 2. Parameter names are fla's: q_proj k_proj v_proj a_proj b_proj A_log
// dt_bias q_conv1d k_conv1d v_conv1d g_proj o_norm o_proj. Init: projections N(0, init_std), convs
// U(±1/√k), A ~ U(0, 16) (floored at 1e-4), dt_bias as Mamba's (ssm_util.h), norm weight 1.
//
// forward() runs the scan as the op gated_delta_scan: the fused kernels (kernels/gated_delta.h) where
// model.gdn.kernel and the device allow, else the chunkwise WY/UT form (model.gdn.chunk); step()
// decodes from an O(1) state (three conv tails and S) through the same code started from that state.
#pragma once

#include <memory>
#include <string>

#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

class Linear;
class CausalConv1d;
class RMSNorm;

class GatedDeltaNetMixer : public SequenceMixer {
 public:
  GatedDeltaNetMixer(const ModelConfig& cfg, Generator& g);
  Tensor forward(const Tensor& x) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  void set_recurrent(bool on) { recurrent_ = on; }  // per-token recurrence (tests; same values)
  void set_kernel(const std::string& k) { kernel_ = k; }  // model.gdn.kernel (tests)

  std::shared_ptr<Linear> q_proj, k_proj, v_proj, a_proj, b_proj, g_proj, o_proj;
  std::shared_ptr<CausalConv1d> q_conv1d, k_conv1d, v_conv1d;
  std::shared_ptr<RMSNorm> o_norm;
  Tensor A_log, dt_bias;

 private:
  // The layer from x; `tails` = the three conv tails (q, k, v) when decoding, null for forward.
  // S0 the state (undefined = zeros); the final state goes to S_out.
  Tensor run(const Tensor& x, Tensor* tails, const Tensor& S0, Tensor& S_out) const;
  int64_t d_model_, heads_, dk_, dv_, chunk_;
  std::string kernel_;  // model.gdn.kernel
  bool recurrent_ = false;
};

}  // namespace ttt
