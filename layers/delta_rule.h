// layers/delta_rule.h — the gated delta rule of Gated DeltaNet (Yang, Kautz, Hatamizadeh, ICLR 2025),
// per head, with the state kept as M = Sᵀ ∈ R^{d_k×d_v}:
//
//   S_t = α_t S_{t−1} (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ        ⇔   M_t = α_t (I − β_t k_t k_tᵀ) M_{t−1} + β_t k_t v_tᵀ
//   o_t = S_t q_t = M_tᵀ q_t                                     α_t = e^{g_t} ∈ (0, 1], β_t ∈ (0, 1)
//
// gated_delta_recurrent — the definition, one token at a time (decoding; the reference).
//
// gated_delta_chunked — the chunkwise WY/UT form (Yang et al. 2024, "Parallelizing Linear
// Transformers with the Delta Rule over Sequence Length" §3; the gated version of GDN §3.3; fla
// `chunk_gated_delta_rule`). Inside a chunk of Q tokens, with γ_t = Π_{i≤t} α_i and Γ[t,s] = γ_t/γ_s:
//   M_t = α_t M_{t−1} + k_t u_tᵀ with u_t = β_t (v_t − α_t M_{t−1}ᵀ k_t), so, from the chunk's start M₀,
//   (I + A) U = diag(β) V − diag(βγ) K M₀,      A[t,s] = β_t Γ[t,s] k_tᵀk_s  (s < t)
//   U = Ũ − W M₀  with  Ũ = T diag(β) V,  W = T diag(βγ) K,  T = (I + A)⁻¹    (the UT transform)
//   O = diag(γ) Q M₀ + (Q Kᵀ ⊙ Γ ⊙ causal) U,    M_Q = γ_Q M₀ + (diag(γ_Q/γ) K)ᵀ U
// T is a unit lower-triangular inverse, computed for all chunks at once by recursive doubling
// ([[L₁₁, 0], [L₂₁, L₂₂]]⁻¹ = [[X₁₁, 0], [−X₂₂ L₂₁ X₁₁, X₂₂]], log₂ Q levels of batched matmuls,
// as stable as forward substitution), so Q must be a power of two; T is zero-padded to a multiple
// of Q (β = 0, g = 0 leave the state unchanged). The hand-off of M₀ from chunk to chunk is affine,
// M_{c+1} = (γ_Q I − (diag(γ_Q/γ) K)ᵀ W) M_c + (diag(γ_Q/γ) K)ᵀ Ũ, so the states entering the chunks
// come from an inclusive scan of those maps (log₂ #chunks levels of batched d_k × d_k products) rather
// than a loop over the chunks.
// All differentiable ops: gradients of any order.
//
// gated_delta_rule — what the layer runs: the op gated_delta_scan (autograd/ops.h: the fused kernels
// of kernels/gated_delta.h when `fused` and the device covers the shape) with gated_delta_chunked as
// its composite twin, on heads-last tensors (the projections' layout, no transposes for the kernels).
//
// Shapes: q, k [B, H, T, d_k] (q already scaled; the layer L2-normalizes both), v [B, H, T, d_v],
// g, beta [B, H, T], M0 [B, H, d_k, d_v] or undefined (zeros). Result: o [B, H, T, d_v] and M_T.
// gated_delta_rule takes q, k [B, T, G, d_k] (G = H, or groups of heads sharing them), v [B, T, H, d_v],
// g, beta [B, T, H] and returns o [B, T, H, d_v] and M_T.
#pragma once

#include "layers/ssd.h"  // ScanResult, pad_to

namespace ttt {

ScanResult gated_delta_recurrent(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                 const Tensor& beta, const Tensor& M0 = Tensor());
ScanResult gated_delta_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                               int64_t chunk, const Tensor& M0 = Tensor());

ScanResult gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                            int64_t chunk, const Tensor& M0, bool fused, DeltaForm form = DeltaForm::walk);

// (I + A)⁻¹ for strictly lower-triangular A [..., Q, Q], Q a power of two (recursive doubling).
Tensor unit_lower_inverse(const Tensor& A);

}  // namespace ttt
