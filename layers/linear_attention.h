// layers/linear_attention.h — causal linear attention, the first two rows of the paper's Table 1
// and the layer Theorem 1 shows TTT-Linear reduces to (batch GD, η = 1/2, W0 = 0, no LN):
//
//   per head:  z_t = Σ_{s<=t} v_s (φ(k_s)ᵀ φ(q_t))  [ / (Σ_{s<=t} φ(k_s)ᵀ φ(q_t) + eps) ]
//
// with the same bias-free Q/K/V/O projections and head split as attention, and no RoPE.
// model.linear_attention picks the variant:
//   feature_map = identity, normalize = false (the default): φ(x) = x and no denominator, exactly
//     the form of Theorem 1. The paper's "linear attn. improved" row does not say what it changes;
//     its perplexity equals the "TTT equivalence" row's, so this form is taken for it.
//   feature_map = elu_plus_one, normalize = true: φ(x) = elu(x) + 1 and the denominator, the
//     causal linear attention of Katharopoulos et al. (2020) (Table 1 "linear attention").
//
// Training form: A = tril(φ(Q) φ(K)ᵀ), Z = A V [/ (A 1 + eps)] per head, O(T²) like attention (a
// chunked O(T) form comes with the fused kernels). Decoding form: the state S = Σ_s φ(k_s) v_sᵀ
// [B, H, d_h, d_h] and n = Σ_s φ(k_s) [B, H, 1, d_h]; a chunk of T tokens gives
// Z = φ(Q) S + A V (denominator φ(Q) nᵀ + A 1), then S += φ(K)ᵀ V, n += Σ φ(K). Both are plain
// differentiable ops.
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
  Tensor feature(const Tensor& x) const;                            // φ(x)
  int64_t d_model_, n_heads_, head_dim_;
  LinearAttentionConfig opt_;
  mutable Tensor mask_cache_;
};

}  // namespace ttt
