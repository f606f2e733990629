// kernels/cuda/ttt_mlp_decode.cu — one TTT-MLP decode step (kernels/ttt_mlp_decode.h has the
// formulas). One block of 256 threads per (batch, head), four passes over the state, each coalesced:
//  1. Z1 = xk W1 + b1 and X2 = gelu(Z1): thread k walks column k of W1 (rows contiguous in k);
//  2. Z2 = X2 W2 + b2: thread (column j, slice r) walks the h / P rows of slice r (P = 256 / f), the
//     slices added in order; then G2 from the LayerNorm (block sums over the f columns);
//  3. G1 = (G2 W2ᵀ) ⊙ gelu'(Z1): thread k reads row k of W2 in 16-byte pieces (W2 16-byte aligned);
//  4. W̄1 column k with its accumulators (written), xq W̄1 + b̄1 and its GELU; then W̄2 as in pass 2
//     with z̄ = gelu(…) W̄2 + b̄2; the output LayerNorm.
// float32 only (float64 runs on the CPU reference); f in {16, 32, 64}, h a multiple of 256 / f and
// at most kMlpMaxHidden.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/ttt_decode_rows.cuh"
#include "kernels/scalar_math.h"
#include "kernels/ttt_mlp_decode.h"

namespace ttt::cuda_impl {

namespace {

constexpr int kMlpThreads = 256;
constexpr int kMlpMaxF = 64;
constexpr int kMlpMaxHidden = 1024;

struct MlpArgs {  // the call's fields (a FusedCall has virtual functions: not a kernel argument)
  TTTMLPDecodeShape s;
  BHTView xq, xk, xv, lr, out;
  const void* tok;
  HeadBlocks w[4], acc[4];
  const void *ln_w, *ln_b;
  void* next[4];
};

// F: head_dim as a compile-time constant, so the loops over it unroll and each thread's loads are
// in flight together instead of one after another.
template <int F>
__global__ void __launch_bounds__(kMlpThreads) mlp_decode_kernel(MlpArgs c) {
  const TTTMLPDecodeShape& s = c.s;
  constexpr int f = F, P = kMlpThreads / F;
  const int hd = static_cast<int>(s.hidden), R = hd / P;
  const int64_t bi = blockIdx.x / s.heads, h = blockIdx.x % s.heads;
  const int t = threadIdx.x, j = t % f, r = t / f;
  const bool owner = t < f;
  __shared__ float xq[kMlpMaxF], xk[kMlpMaxF], g2[kMlpMaxF], x2[kMlpMaxHidden], d1[kMlpMaxHidden],
      g1[kMlpMaxHidden], hq[kMlpMaxHidden], part[kMlpThreads], red[kMlpThreads / 32];

  const auto row = [&](const BHTView& v) { return static_cast<const float*>(v.data) + bi * v.sb + h * v.sh; };
  const float* W[4];
  const float* A[4];
  float* N[4];
  const int64_t sizes[4] = {int64_t{f} * hd, hd, int64_t{hd} * f, f};
  for (int k = 0; k < 4; ++k) {
    const bool used = k % 2 == 0 || s.bias;
    const HeadBlocks& w = c.w[k];
    const HeadBlocks& a = c.acc[k];
    W[k] = used ? static_cast<const float*>(w.data) + bi * w.sb + h * w.sh : nullptr;
    A[k] = used && a.data ? static_cast<const float*>(a.data) + bi * a.sb + h * a.sh : nullptr;
    N[k] = used ? static_cast<float*>(c.next[k]) + (bi * s.heads + h) * sizes[k] : nullptr;
  }
  const float lr = *row(c.lr), tok = *static_cast<const float*>(c.tok);
  float q = 0, kk = 0, v = 0, lw = 1, lb = 0;
  if (owner) {
    q = row(c.xq)[t], kk = row(c.xk)[t], v = row(c.xv)[t];
    xq[t] = q, xk[t] = kk;
    if (s.ln_residual) lw = static_cast<const float*>(c.ln_w)[h * f + t], lb = static_cast<const float*>(c.ln_b)[h * f + t];
  }
  __syncthreads();

  // 1. Z1, X2 = gelu(Z1), gelu'(Z1).
  for (int k = t; k < hd; k += kMlpThreads) {
    float z = W[1] ? W[1][k] : 0.f;
#pragma unroll
    for (int i = 0; i < f; ++i) z += xk[i] * W[0][i * hd + k];
    x2[k] = smath::gelu_tanh(z), d1[k] = smath::gelu_tanh_grad(z);
  }
  __syncthreads();
  // 2. Z2 = X2 W2 + b2, then lr G2.
  float z = 0;
#pragma unroll 16
  for (int k = r * R; k < (r + 1) * R; ++k) z += x2[k] * W[2][k * f + j];
  part[t] = z;
  __syncthreads();
  if (owner) {
    z = W[3] ? W[3][t] : 0.f;
    for (int p = 0; p < P; ++p) z += part[p * f + t];
  }
  const float g = decode_rows::loss_grad<kMlpThreads>(z, v, kk, lw, lb, s.ln_residual, owner, f,
                                                     static_cast<float>(s.eps), red);
  float zbar = 0;
  if (owner) {
    g2[t] = lr * g;
    if (s.bias) {
      const float a = (A[3] ? A[3][t] : 0.f) + lr * g, wbar = W[3][t] - tok * a;
      zbar = wbar;
      N[3][t] = s.commit ? wbar : a;
    }
  }
  __syncthreads();
  // 3. lr G1 = (lr G2 W2ᵀ) ⊙ gelu'(Z1): thread k reads row k of W2 (contiguous, 16-byte pieces).
  for (int k = t; k < hd; k += kMlpThreads) {
    const float4* w2 = reinterpret_cast<const float4*>(W[2] + int64_t{k} * f);
    float p = 0;
#pragma unroll
    for (int q4 = 0; q4 < f / 4; ++q4) {
      const float4 x = w2[q4];
      p += g2[4 * q4] * x.x + g2[4 * q4 + 1] * x.y + g2[4 * q4 + 2] * x.z + g2[4 * q4 + 3] * x.w;
    }
    g1[k] = p * d1[k];
  }
  __syncthreads();
  // 4. W̄1 (accumulators written), hq = gelu(xq W̄1 + b̄1).
  for (int k = t; k < hd; k += kMlpThreads) {
    float zq = 0;
    if (s.bias) {
      const float a = (A[1] ? A[1][k] : 0.f) + g1[k], wbar = W[1][k] - tok * a;
      zq = wbar;
      N[1][k] = s.commit ? wbar : a;
    }
#pragma unroll
    for (int i = 0; i < f; ++i) {
      const int e = i * hd + k;
      const float a = (A[0] ? A[0][e] : 0.f) + xk[i] * g1[k], wbar = W[0][e] - tok * a;
      zq += xq[i] * wbar;
      N[0][e] = s.commit ? wbar : a;
    }
    hq[k] = smath::gelu_tanh(zq);
  }
  __syncthreads();
  //    W̄2 (accumulators written), z̄ = hq W̄2 + b̄2.
  float zp = 0;
#pragma unroll 16
  for (int k = r * R; k < (r + 1) * R; ++k) {
    const int e = k * f + j;
    const float a = (A[2] ? A[2][e] : 0.f) + x2[k] * g2[j], wbar = W[2][e] - tok * a;
    zp += hq[k] * wbar;
    N[2][e] = s.commit ? wbar : a;
  }
  part[t] = zp;
  __syncthreads();
  if (owner)
    for (int p = 0; p < P; ++p) zbar += part[p * f + t];
  float* out = static_cast<float*>(c.out.data) + bi * c.out.sb + h * c.out.sh;
  decode_rows::write_output<kMlpThreads>(out, zbar, q, lw, lb, s.ln_residual, owner, f, static_cast<float>(s.eps), red);
}

}  // namespace

std::string ttt_mlp_decode_unsupported(const TTTMLPDecodeShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernel takes float32 (float64 runs on the CPU)";
  if (s.head_dim != 16 && s.head_dim != 32 && s.head_dim != kMlpMaxF) return "the CUDA kernel takes head_dim 16, 32 or 64";
  if (s.hidden > kMlpMaxHidden || s.hidden % (kMlpThreads / s.head_dim) != 0)
    return "the CUDA kernel takes a hidden size that is a multiple of 256 / head_dim, at most 1024";
  return "";
}

void ttt_mlp_decode_step(Backend& be, TTTMLPDecodeStep& c) {
  const std::string why = ttt_mlp_decode_unsupported(c.s);
  if (!why.empty()) throw std::invalid_argument("ttt_mlp_decode_step: " + why);
  if (c.s.batch == 0 || c.s.heads == 0) return;
  MlpArgs a{c.s, c.xq, c.xk, c.xv, c.lr, c.out, c.tok, {}, {}, c.ln_w, c.ln_b, {}};
  for (int k = 0; k < 4; ++k) a.w[k] = c.w[k], a.acc[k] = c.acc[k], a.next[k] = c.next[k];
  const auto grid = static_cast<unsigned>(c.s.batch * c.s.heads);
  const auto stream = static_cast<cudaStream_t>(be.native_stream());
  if (c.s.head_dim == 16) mlp_decode_kernel<16><<<grid, kMlpThreads, 0, stream>>>(a);
  else if (c.s.head_dim == 32) mlp_decode_kernel<32><<<grid, kMlpThreads, 0, stream>>>(a);
  else mlp_decode_kernel<kMlpMaxF><<<grid, kMlpThreads, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
