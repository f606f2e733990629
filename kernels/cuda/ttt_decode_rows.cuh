// kernels/cuda/ttt_decode_rows.cuh — the row math the TTT decode-step kernels (ttt_linear_decode.cu,
// ttt_mlp_decode.cu) share: one block per (batch, head) in which threads 0..f−1 hold a row's f values
// (the "owners"); block sums, the inner LayerNorm's LN-L2 gradient and the output rule
// (kernels/ttt_linear_scan.h and kernels/cpu/ttt_scan_rows.h have the formulas).
#pragma once

#include <cstdint>

namespace ttt::cuda_impl::decode_rows {

// Sum of v over the block's THREADS threads (every thread gets it). red: THREADS / 32 floats.
template <int THREADS>
__device__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // red may still be read by a previous call
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0;
#pragma unroll
  for (int w = 0; w < THREADS / 32; ++w) s += red[w];
  return s;
}

// x̂ = (v − μ)/σ of the f values the owners hold (others pass anything and get 0); σ in *sig.
template <int THREADS>
__device__ float normalized(float v, bool owner, int f, float eps, float* red, float* sig) {
  const float mu = block_sum<THREADS>(owner ? v : 0.f, red) / f;
  const float d = owner ? v - mu : 0.f;
  *sig = sqrtf(block_sum<THREADS>(d * d, red) / f + eps);
  return d / *sig;
}

// ∂ℓ/∂z of the inner loss at the owner's element (xv, xk its inputs, lw, lb the LN weight and bias):
// ½‖LN(z) − (xv − xk)‖² with ln (ttt.py ln_fused_l2_bwd), else ½‖z − xv‖². Every thread must call it.
template <int THREADS>
__device__ float loss_grad(float z, float xv, float xk, float lw, float lb, bool ln, bool owner, int f, float eps,
                           float* red) {
  if (!ln) return z - xv;
  float sig;
  const float xh = normalized<THREADS>(z, owner, f, eps, red, &sig);
  const float gx = owner ? (lw * xh + lb - (xv - xk)) * lw : 0.f;
  const float m1 = block_sum<THREADS>(gx, red) / f, m2 = block_sum<THREADS>(gx * xh, red) / f;
  return (gx - m1 - xh * m2) / sig;
}

// out = xq + LN(z̄) (ln) or z̄ at the owners' elements. Every thread must call it.
template <int THREADS>
__device__ void write_output(float* out, float zbar, float xq, float lw, float lb, bool ln, bool owner, int f,
                             float eps, float* red) {
  if (ln) {
    float sig;
    const float xh = normalized<THREADS>(zbar, owner, f, eps, red, &sig);
    if (owner) out[threadIdx.x] = xq + lw * xh + lb;
  } else if (owner) {
    out[threadIdx.x] = zbar;
  }
}

}  // namespace ttt::cuda_impl::decode_rows
