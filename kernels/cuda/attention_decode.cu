// kernels/cuda/attention_decode.cu — one attention decode step (kernels/attention_decode.h has the
// formulas), split over the cache:
//  1. split kernel, grid (splits, B·H), 4 warps: each block takes kDecodeKeysPerSplit positions of the
//     cache, each warp every 4th key of them with D/32 consecutive elements per lane (the RoPE pairs
//     stay in a lane), loading 8 keys at a time, an online softmax per warp, then the warps merged into the block's partial
//     (max, sum, weighted values) in the workspace. Block 0 of each head writes the new key and value;
//     every block takes them from registers at position n, so no block reads what another writes.
//  2. merge kernel, one block of D threads per head: the partials merged into the output; block 0
//     advances the counters (after every read of them: the split kernel has finished).
// Positions and lengths come from device memory, so the launches are the same for every token.
// float32, head_dim 64 or 128 (float64 runs on the CPU reference).
#include <cmath>

#include "kernels/attention_decode.h"
#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {

constexpr int kWarps = 4;
constexpr int kBatch = 8;  // keys per warp whose loads are in flight together

struct DecodeArgs {  // the call's fields (a FusedCall has virtual functions: not a kernel argument)
  AttentionDecodeShape s;
  TokenHeads q, k, v, out;
  float *k_cache, *v_cache;
  int64_t* counters;
  float* partial;  // [B·H, splits, D + 2]
};

// The rotation factors of pair i at position p, in double and rounded once (layers/rope.h's tables).
__device__ void rope_factors(int64_t p, int i, int D, double theta, float* c, float* s) {
  const double a = static_cast<double>(p) * pow(theta, -2.0 * i / D);
  *c = static_cast<float>(cos(a));
  *s = static_cast<float>(sin(a));
}

template <int E>  // elements per lane: D = 32 E
__global__ void split_kernel(DecodeArgs a) {
  constexpr int D = 32 * E;
  const AttentionDecodeShape& s = a.s;
  const int split = blockIdx.x, splits = gridDim.x;
  const int64_t bh = blockIdx.y, b = bh / s.heads, h = bh % s.heads;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t p = a.counters[0], n = a.counters[1];
  const int64_t first = s.window > 0 ? max(int64_t{0}, n + 1 - s.window) : 0;
  const int64_t lo = max(first, split * kDecodeKeysPerSplit), hi = min(n + 1, (split + 1) * kDecodeKeysPerSplit);

  const auto at = [&](const TokenHeads& t) { return static_cast<const float*>(t.data) + b * t.sb + h * t.sh + lane * E; };
  const float *q = at(a.q), *k = at(a.k), *v = at(a.v);
  float qr[E], kr[E], vv[E];
#pragma unroll
  for (int e = 0; e < E; e += 2) {
    float c, sn;
    rope_factors(p, (lane * E + e) / 2, D, s.theta, &c, &sn);
    qr[e] = q[e] * c - q[e + 1] * sn, qr[e + 1] = q[e] * sn + q[e + 1] * c;
    kr[e] = k[e] * c - k[e + 1] * sn, kr[e + 1] = k[e] * sn + k[e + 1] * c;
    vv[e] = v[e], vv[e + 1] = v[e + 1];
  }
  const int64_t head = bh * s.capacity * D;
  const float *K = a.k_cache + head, *V = a.v_cache + head;
  if (split == 0 && warp == 0)
#pragma unroll
    for (int e = 0; e < E; ++e) a.k_cache[head + n * D + lane * E + e] = kr[e], a.v_cache[head + n * D + lane * E + e] = vv[e];

  const float scale = static_cast<float>(s.scale);
  float m = -INFINITY, l = 0, acc[E] = {};
  // kBatch keys per warp at a time: their loads are issued together, then the online softmax walks
  // them (one key at a time, the loads went one after another: 38 µs a call at 1k context).
  for (int64_t j0 = lo + warp; j0 < hi; j0 += kWarps * kBatch) {
    float kj[kBatch][E], vj[kBatch][E];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int64_t j = j0 + u * kWarps;
      const bool here = j < hi && j != n;
#pragma unroll
      for (int e = 0; e < E; ++e) {
        kj[u][e] = here ? K[j * D + lane * E + e] : kr[e];
        vj[u][e] = here ? V[j * D + lane * E + e] : vv[e];
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (j0 + u * kWarps >= hi) break;
      float dot = 0;
#pragma unroll
      for (int e = 0; e < E; ++e) dot += qr[e] * kj[u][e];
      for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
      const float sc = scale * dot, m_new = fmaxf(m, sc);
      const float corr = expf(m - m_new), w = expf(sc - m_new);
      l = l * corr + w;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[e] = acc[e] * corr + w * vj[u][e];
      m = m_new;
    }
  }
  // The warps' partials merged into the block's.
  __shared__ float wm[kWarps], wl[kWarps], wacc[kWarps][D];
  if (lane == 0) wm[warp] = m, wl[warp] = l;
#pragma unroll
  for (int e = 0; e < E; ++e) wacc[warp][lane * E + e] = acc[e];
  __syncthreads();
  float* out = a.partial + (bh * splits + split) * (D + 2);
  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm[w]);
  for (int t = threadIdx.x; t < D; t += blockDim.x) {
    float A = 0;
    if (M != -INFINITY)
      for (int w = 0; w < kWarps; ++w) A += wacc[w][t] * expf(wm[w] - M);
    out[2 + t] = A;
  }
  if (threadIdx.x == 0) {
    float L = 0;
    if (M != -INFINITY)
      for (int w = 0; w < kWarps; ++w) L += wl[w] * expf(wm[w] - M);
    out[0] = M, out[1] = L;
  }
}

__global__ void merge_kernel(DecodeArgs a, int splits) {
  const AttentionDecodeShape& s = a.s;
  const int D = static_cast<int>(s.head_dim), t = threadIdx.x;
  const int64_t bh = blockIdx.x, b = bh / s.heads, h = bh % s.heads;
  const float* part = a.partial + bh * splits * (D + 2);
  float M = -INFINITY;
  for (int i = 0; i < splits; ++i) M = fmaxf(M, part[i * (D + 2)]);
  float L = 0, A = 0;
  for (int i = 0; i < splits; ++i) {
    const float* pi = part + i * (D + 2);
    if (pi[1] == 0.f) continue;  // no key in this piece
    const float f = expf(pi[0] - M);
    L += pi[1] * f;
    A += pi[2 + t] * f;
  }
  static_cast<float*>(a.out.data)[b * a.out.sb + h * a.out.sh + t] = A / L;
  if (bh == 0 && t == 0) a.counters[0] += 1, a.counters[1] += 1;
}

}  // namespace

std::string attention_decode_unsupported(const AttentionDecodeShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernel takes float32 (float64 runs on the CPU)";
  if (s.head_dim != 64 && s.head_dim != 128) return "the CUDA kernel takes head_dim 64 or 128";
  return "";
}

void attention_decode_step(Backend& be, AttentionDecodeStep& c) {
  const std::string why = attention_decode_unsupported(c.s);
  if (!why.empty()) throw std::invalid_argument("attention_decode_step: " + why);
  if (c.s.batch == 0 || c.s.heads == 0) return;
  const DecodeArgs a{c.s, c.q, c.k, c.v, c.out, static_cast<float*>(c.k_cache), static_cast<float*>(c.v_cache),
                     c.counters, static_cast<float*>(c.workspace)};
  const auto stream = static_cast<cudaStream_t>(be.native_stream());
  const int splits = static_cast<int>(c.s.splits());
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(c.s.batch * c.s.heads));
  if (c.s.head_dim == 64) split_kernel<2><<<grid, 32 * kWarps, 0, stream>>>(a);
  else split_kernel<4><<<grid, 32 * kWarps, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
  merge_kernel<<<static_cast<unsigned>(c.s.batch * c.s.heads), static_cast<unsigned>(c.s.head_dim), 0, stream>>>(a, splits);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
