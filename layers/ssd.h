// layers/ssd.h — the Mamba-2 state-space recurrence (SSD, Dao & Gu 2024, "Transformers are SSMs"),
// per head h with a scalar decay:
//
//   a_t = Δ_t · A_h  (A_h < 0, Δ_t > 0)
//   H_t = e^{a_t} H_{t−1} + Δ_t x_t B_tᵀ          H ∈ R^{P×N}, x_t ∈ R^P, B_t, C_t ∈ R^N
//   y_t = H_t C_t
//
// Two implementations with the same values and gradients (tests/test_ssd.cpp, fp64):
//
// ssd_recurrent — the definition, one step per token (the decoding path and the reference).
//
// ssd_chunked — the chunk-parallel form (SSD paper §6 / Listing 1, state-spaces/mamba
// `ssd_minimal.py`), the natural fast path on a GPU; it is the op ssd_scan (autograd/ops/ssd_scan.cpp:
// fused kernels forward and backward, the composite below for gradients of gradients): cut time into
// chunks of Q tokens; with
// c_t = Σ_{s≤t in chunk} a_s and x̄ = Δ x,
//   intra-chunk  Y_diag = (C Bᵀ ⊙ L) X̄,   L[t,s] = e^{c_t − c_s} (s ≤ t)            (a masked "attention")
//   chunk state  S_k    = Σ_s e^{c_Q − c_s} x̄_s B_sᵀ
//   between      H_in(k) = Σ_{j<k} e^{c_Q(k−1)+…+c_Q(j+1)} S_j + e^{c_Q(0)+…+c_Q(k−1)} H_0  (one [K+1, K+1] decay matrix)
//   inter-chunk  Y_off[t] = e^{c_t} H_in(k) C_t
// so everything but the [K+1]-step decay product is batched matmuls of size Q. T need not be a
// multiple of Q (the tail is zero-padded: Δ = 0 leaves the state unchanged).
//
// Shapes: x [B, H, T, P], dt [B, H, T] (Δ, already softplus'ed), A [H], Bm and Cm [B, H, T, N]
// (already broadcast from groups to heads), h0 [B, H, P, N] or undefined (zeros). The result holds
// y [B, H, T, P] and the final state [B, H, P, N]. Everything must have one dtype.
#pragma once

#include <string>

#include "autograd/ops.h"  // DeltaForm
#include "autograd/tensor.h"

namespace ttt {

struct ScanResult {
  Tensor y;      // outputs
  Tensor state;  // the state after the last token
};

ScanResult ssd_recurrent(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                         const Tensor& h0 = Tensor());
// Runs the op ssd_scan (autograd/ops.h: the fused kernels when `fused` and supported, else the
// chunked composite) in this heads-first layout.
ScanResult ssd_chunked(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                       int64_t chunk, const Tensor& h0 = Tensor(), bool fused = true);

// The same recurrence in the delta-rule kernels' terms (kernels/gated_delta.h without the erase term),
// on heads-last tensors: with the state M = Hᵀ [d_k = N, d_v = P],
//   M_t = e^{g_t} M_{t−1} + β_t k_t v_tᵀ,   o_t = M_tᵀ q_t        (k = B, q = C, v = x, β = Δ, g = ΔA)
// q, k [B, T, H, d_k], v [B, T, H, d_v], g, beta [B, T, H], M0 [B, H, d_k, d_v] or undefined ->
// {o [B, T, H, d_v], M_T}; gated_linear_rule also takes q, k [B, T, G, d_k] shared by groups of heads.
// gated_linear_chunked — the chunked composite (this header's SSD form with x̄ = β v), any chunk.
// gated_linear_rule — the op gated_delta_scan with erase = false (its fused token-by-token kernels
// when `fused` and the device covers the shape; `form` picks the CUDA kernels) and
// gated_linear_chunked as its twin.
ScanResult gated_linear_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                                int64_t chunk, const Tensor& M0 = Tensor());
ScanResult gated_linear_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                             int64_t chunk, const Tensor& M0, bool fused, DeltaForm form = DeltaForm::walk);

// The CUDA form a layer's `kernel` setting names for the gated delta kernels: chunked for "chunked"
// (Gated DeltaNet) or "delta_chunked" (Mamba 2), chunked_tc for their "_tc" variants, else the walk.
DeltaForm delta_form_of(const std::string& kernel);
// Throws when a setting that asks for the fused gated delta kernels (`explicit_choice`) names ones
// that cannot run q [B, T, G, d_k], v [B, T, H, d_v] on their device; `who` and `key` name the layer
// and its setting in the message.
void require_gated_delta_kernels(const char* who, const char* key, const std::string& kernel, bool explicit_choice,
                                 const Tensor& q, const Tensor& v, int64_t chunk, DeltaForm form);

// Zero-pads dim `dim` of x to length `len` (>= its size): differentiable.
Tensor pad_to(const Tensor& x, int64_t dim, int64_t len);

}  // namespace ttt
