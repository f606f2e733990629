// kernels/cuda/ttt_linear_decode.cu — one TTT-Linear decode step (kernels/ttt_linear_decode.h has
// the formulas). One block of 256 threads per (batch, head): thread (column j, slice r) owns column
// j of W over the f / P rows of slice r (P = 256 / f slices), so every W, accW read and write is
// coalesced across j; the two matrix-vector products (xk W, xq W̄) are per-slice partial sums added
// in slice order, and the row statistics of the two LayerNorms are block sums over the f columns.
// float32 only (a float64 call runs on the CPU reference); f in {16, 32, 64, 128}.
//
// The step is latency bound (12 blocks at batch 1 read 2 × 16 KB each): one kernel instead of the
// scan over the open mini-batch plus four copies is the point, not the arithmetic.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/ttt_decode_rows.cuh"
#include "kernels/ttt_linear_decode.h"

namespace ttt::cuda_impl {

namespace {

constexpr int kDecodeThreads = 256;
constexpr int kDecodeMaxF = 128;

// The call's fields as a kernel argument (a FusedCall has virtual functions: not passable by value).
struct DecodeArgs {
  TTTLinearDecodeShape s;
  BHTView xq, xk, xv, lr, out;
  const void* tok;
  HeadBlocks w, b, acc_w, acc_b;
  const void *ln_w, *ln_b;
  void *next_w, *next_b;
};

// F: head_dim, a compile-time constant so that each thread's loops over its rows unroll and all of
// its loads are in flight at once (with a runtime bound they went one after another: ~12 µs a call).
template <int F>
__global__ void __launch_bounds__(kDecodeThreads) decode_kernel(DecodeArgs c) {
  const TTTLinearDecodeShape& s = c.s;
  constexpr int f = F, P = kDecodeThreads / F, R = F / P;
  const int64_t bi = blockIdx.x / s.heads, h = blockIdx.x % s.heads;
  const int t = threadIdx.x, j = t % f, r = t / f;
  const bool owner = t < f;  // threads 0..f−1 hold the row vectors' elements j = t
  __shared__ float xq[kDecodeMaxF], xk[kDecodeMaxF], gp[kDecodeMaxF], part[kDecodeThreads], red[kDecodeThreads / 32];

  const auto row = [&](const BHTView& v) { return static_cast<const float*>(v.data) + bi * v.sb + h * v.sh; };
  const auto block = [&](const HeadBlocks& m) {
    return m.data ? static_cast<const float*>(m.data) + bi * m.sb + h * m.sh : nullptr;
  };
  const float *W = block(c.w), *acc_w = block(c.acc_w);
  const float *b = s.bias ? block(c.b) : nullptr, *acc_b = s.bias ? block(c.acc_b) : nullptr;
  // This thread's part of W and of the accumulators, loaded with everything else before the first
  // wait: one trip to memory instead of three.
  float w_reg[R], a_reg[R];
#pragma unroll
  for (int u = 0; u < R; ++u) {
    w_reg[u] = W[(r * R + u) * f + j];
    a_reg[u] = acc_w ? acc_w[(r * R + u) * f + j] : 0.f;
  }
  const float lr = *row(c.lr), tok = *static_cast<const float*>(c.tok);
  float q = 0, k = 0, v = 0, lw = 1, lb = 0;
  if (owner) {
    q = row(c.xq)[t], k = row(c.xk)[t], v = row(c.xv)[t];
    xq[t] = q, xk[t] = k;
    if (s.ln_residual) lw = static_cast<const float*>(c.ln_w)[h * f + t], lb = static_cast<const float*>(c.ln_b)[h * f + t];
  }
  __syncthreads();

  // Z = xk W + b: slice partials, summed in slice order by the owners.
  float z = 0;
#pragma unroll
  for (int u = 0; u < R; ++u) z += xk[r * R + u] * w_reg[u];
  part[t] = z;
  __syncthreads();
  if (owner) {
    z = b ? b[t] : 0.f;
#pragma unroll
    for (int p = 0; p < P; ++p) z += part[p * f + t];
  }
  // G = ∂ℓ/∂Z (ln_fused_l2_bwd, or Z − xv), scaled by lr.
  const float g = decode_rows::loss_grad<kDecodeThreads>(z, v, k, lw, lb, s.ln_residual, owner, f,
                                                        static_cast<float>(s.eps), red);
  float zbar = 0;
  if (owner) {
    gp[t] = lr * g;
    if (b) {
      const float a = (acc_b ? acc_b[t] : 0.f) + lr * g, bbar = b[t] - tok * a;
      zbar = bbar;
      static_cast<float*>(c.next_b)[(bi * s.heads + h) * f + t] = s.commit ? bbar : a;
    }
  }
  __syncthreads();

  // accW' = accW + xkᵀ gp, W̄ = W − tok accW', z̄ = xq W̄ + b̄; writes accW' (or W̄ with commit).
  float* next_w = static_cast<float*>(c.next_w) + (bi * s.heads + h) * f * f;
  float zp = 0;
#pragma unroll
  for (int u = 0; u < R; ++u) {
    const int i = r * R + u;
    const float a = a_reg[u] + xk[i] * gp[j], wbar = w_reg[u] - tok * a;
    zp += xq[i] * wbar;
    next_w[i * f + j] = s.commit ? wbar : a;
  }
  __syncthreads();  // part is reused
  part[t] = zp;
  __syncthreads();
  if (owner)
    for (int p = 0; p < P; ++p) zbar += part[p * f + t];
  float* out = static_cast<float*>(c.out.data) + bi * c.out.sb + h * c.out.sh;
  decode_rows::write_output<kDecodeThreads>(out, zbar, q, lw, lb, s.ln_residual, owner, f, static_cast<float>(s.eps), red);
}

}  // namespace

std::string ttt_linear_decode_unsupported(const TTTLinearDecodeShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernel takes float32 (float64 runs on the CPU)";
  if (s.head_dim != 16 && s.head_dim != 32 && s.head_dim != 64 && s.head_dim != kDecodeMaxF)
    return "the CUDA kernel takes head_dim 16, 32, 64 or 128";
  return "";
}

void ttt_linear_decode_step(Backend& be, TTTLinearDecodeStep& c) {
  const std::string why = ttt_linear_decode_unsupported(c.s);
  if (!why.empty()) throw std::invalid_argument("ttt_linear_decode_step: " + why);
  if (c.s.batch == 0 || c.s.heads == 0) return;
  const DecodeArgs a{c.s, c.xq, c.xk, c.xv, c.lr, c.out, c.tok, c.w, c.b, c.acc_w, c.acc_b, c.ln_w, c.ln_b, c.next_w, c.next_b};
  const auto grid = static_cast<unsigned>(c.s.batch * c.s.heads);
  const auto stream = static_cast<cudaStream_t>(be.native_stream());
  switch (c.s.head_dim) {
    case 16: decode_kernel<16><<<grid, kDecodeThreads, 0, stream>>>(a); break;
    case 32: decode_kernel<32><<<grid, kDecodeThreads, 0, stream>>>(a); break;
    case 64: decode_kernel<64><<<grid, kDecodeThreads, 0, stream>>>(a); break;
    default: decode_kernel<kDecodeMaxF><<<grid, kDecodeThreads, 0, stream>>>(a); break;
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
