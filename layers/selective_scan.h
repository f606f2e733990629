// layers/selective_scan.h — the Mamba-1 selective scan (Gu & Dao 2023, Alg. 2; state-spaces/mamba
// `selective_scan_ref`), per channel d and state index n, with input-dependent Δ, B, C:
//
//   h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t−1}[d, n] + Δ_t[d] B_t[n] u_t[d]
//   y_t[d]    = Σ_n C_t[n] h_t[d, n]
//
// (the D skip and the SiLU gate are the layer's, mamba.h). Because A differs per (d, n), there is
// no matmul-shaped chunked form (that is what Mamba 2's scalar-per-head A buys); on a GPU the
// reference computes this with a fused sequential kernel. Here it is a loop over time written with
// differentiable ops, with gradient checkpointing through time: with chunk > 0 only the state at
// every chunk-th step is kept, and the steps in between are recomputed in backward (memory
// O(T/chunk · D·N) instead of O(T · D·N); the gradients are the same, tests/test_baseline_mixers.cpp).
//
// Shapes: u, delta [B, T, D] (delta already softplus'ed), A [D, N], Bm, Cm [B, T, N], h0 [B, D, N]
// or undefined (zeros). Result: y [B, T, D] and the final state [B, D, N].
#pragma once

#include "layers/ssd.h"  // ScanResult

namespace ttt {

ScanResult selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                          const Tensor& h0 = Tensor(), int64_t chunk = 0);

// The scan with the Mamba layer's Δ bias and D skip around it: Δ = softplus(δ + bias), then
// selective_scan(u, Δ, A, Bm, Cm, h0, chunk) with y + D ⊙ u. δ [B, T, D] (dt_proj without its
// bias), D, bias [D]. With h0 undefined this is the function the fused op mamba_selective_scan
// (autograd/ops.h) computes, and its composite twin.
ScanResult selective_scan_with_skip(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm,
                                    const Tensor& Cm, const Tensor& D, const Tensor& bias, const Tensor& h0,
                                    int64_t chunk);

}  // namespace ttt
