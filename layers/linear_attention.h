// layers/linear_attention.h — causal linear attention (Katharopoulos et al. 2020), the first row of
// the paper's Table 1 and the layer Theorem 1 shows TTT-Linear reduces to (batch GD, η = 1/2,
// W0 = 0, no LN):
//
//   per head:  z_t = Σ_{s<=t} v_s (k_sᵀ q_t) = (Σ_{s<=t} v_s k_sᵀ) q_t
//
// with the same bias-free Q/K/V/O projections and head split as attention. No feature map, no
// normalizer and no RoPE: exactly the form of Theorem 1 (Katharopoulos' elu+1 feature map and
// denominator are left out on purpose; the paper does not say what its "improved" variant adds).
//
// Training form: Z = (tril(Q Kᵀ)) V per head, O(T²) like attention (a chunked O(T) form comes
// with the fused kernels). Decoding form: the state S = Σ_s k_s v_sᵀ [B, H, d_h, d_h]; a chunk
// of T tokens gives Z = Q S + tril(Q Kᵀ) V and S += Kᵀ V. Both are plain differentiable ops.
#pragma once

#include <memory>

#include "layers/linear.h"
#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

class LinearAttention : public SequenceMixer {
 public:
  LinearAttention(const ModelConfig& cfg, Generator& g);
  Tensor forward(const Tensor& x) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  std::shared_ptr<Linear> wq, wk, wv, wo;

 private:
  void project(const Tensor& x, Tensor& q, Tensor& k, Tensor& v) const;  // [B, H, T, d_h] each
  Tensor merge(const Tensor& z) const;                                   // [B, H, T, d_h] -> Wo [B, T, D]
  Tensor causal_mask(int64_t T, DType dtype, Device device) const;  // cached 0/1 lower triangle
  int64_t d_model_, n_heads_, head_dim_;
  mutable Tensor mask_cache_;
};

}  // namespace ttt
