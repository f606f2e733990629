// kernels/cuda/attention_f32.cu — fused attention forward and backward for float32 on the CUDA
// cores: the same tiling and online softmax as the bf16 tensor-core kernels, with plain FMAs
// from shared memory. Simple rather than fast (float32 attention is for checks and small
// models; training runs bf16), but O(T) memory like the fast path.
//
// Forward: block = (batch·head, 32 query rows), 128 threads, 4 per row; per 32-key tile each
// thread scores 8 keys, the quad shares the row max/sum by shuffles, P goes through shared memory
// and each thread accumulates D/4 output columns (d = quarter + 4k).
// Backward: block = (batch·head, 32 keys), 4 threads per key accumulate dK, dV (D/4 columns each);
// per 32-query tile: P and dS from the saved lse and D = rowsum(dO ∘ O), then dQ = scale · dS K by
// float32 atomics into dq_accum (zeroed by the caller), or in deterministic mode into the key
// tile's own slab (BwdArgs::dq_tile_stride).
// Head dims up to 128: D is the template bound (64 or 128), shared tiles are zero-padded.
#include "kernels/cuda/attention.cuh"

namespace ttt::cuda_impl::attn {

namespace {

constexpr int kTile = 32;       // query rows and keys per tile
constexpr int kThreadsF32 = 128;  // 4 per row

// rows [row0, row0 + 32) of n_rows rows of Dh values (row stride src_ld) -> shared [32][ld],
// zero-padded.
template <int D>
__device__ __forceinline__ void load_rows_f32(float* dst, int ld, const float* src, int64_t row0, int64_t n_rows,
                                              int Dh, int64_t src_ld) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreadsF32) {
    const int r = idx / D, d = idx % D;
    dst[r * ld + d] = row0 + r < n_rows && d < Dh ? src[(row0 + r) * src_ld + d] : 0.f;
  }
}

template <int D> __device__ __forceinline__ float dot_rows(const float* a, const float* b) {
  float acc = 0.f;
#pragma unroll 8
  for (int d = 0; d < D; ++d) acc = fmaf(a[d], b[d], acc);
  return acc;
}

template <int D> constexpr int fwd_smem_bytes() { return (2 * kTile * (D + 1) + kTile * D + kTile * (kTile + 1)) * 4; }
template <int D> constexpr int bwd_smem_bytes() { return (4 * kTile * (D + 1) + 2 * kTile * (kTile + 1) + 2 * kTile) * 4; }

template <int D> __global__ void __launch_bounds__(kThreadsF32) attention_fwd_f32_kernel(FwdArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  float* sQ = reinterpret_cast<float*>(smem);  // [32][D+1]
  float* sK = sQ + kTile * (D + 1);            // [32][D+1]
  float* sV = sK + kTile * (D + 1);            // [32][D]
  float* sP = sV + kTile * D;                  // [32][33]
  const AttentionShape s = a.s;
  const int Dh = static_cast<int>(s.head_dim);
  const int64_t Tq = s.q_len, Tk = s.kv_len, bh = blockIdx.x, H = s.heads;
  const HeadIndex hi(bh, H);
  const int64_t i0 = static_cast<int64_t>(gridDim.y - 1 - blockIdx.y) * kTile;
  const int64_t i_last = min(i0 + kTile, Tq) - 1;
  const float* Q = static_cast<const float*>(a.q) + s.q.at(hi.b, hi.h, 0);
  const float* K = static_cast<const float*>(a.k) + s.k.at(hi.b, hi.h, 0);
  const float* V = static_cast<const float*>(a.v) + s.v.at(hi.b, hi.h, 0);
  const int r = threadIdx.x / 4, quarter = threadIdx.x % 4;
  const int64_t i = i0 + r;
  const int64_t kb = i < Tq ? s.key_begin(i) : 0, ke = i < Tq ? min(s.key_end(i), Tk) : 0;
  const float scale = static_cast<float>(s.scale);

  load_rows_f32<D>(sQ, D + 1, Q, i0, Tq, Dh, s.q.st);
  float o[D / 4];
#pragma unroll
  for (int k = 0; k < D / 4; ++k) o[k] = 0.f;
  float m = -INFINITY, l = 0.f;
  const int64_t j_end = min(s.key_end(i_last), Tk);
  for (int64_t j0 = s.key_begin(i0) / kTile * kTile; j0 < j_end; j0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    load_rows_f32<D>(sK, D + 1, K, j0, Tk, Dh, s.k.st);
    load_rows_f32<D>(sV, D, V, j0, Tk, Dh, s.v.st);
    __syncthreads();
    float sc[kTile / 4], mx = m;
#pragma unroll
    for (int k = 0; k < kTile / 4; ++k) {
      const int c = quarter + 4 * k;
      const int64_t j = j0 + c;
      sc[k] = j >= kb && j < ke ? scale * dot_rows<D>(sQ + r * (D + 1), sK + c * (D + 1)) : -INFINITY;
      mx = fmaxf(mx, sc[k]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float base = mx == -INFINITY ? 0.f : mx;
    const float alpha = expf(m - base);
    m = mx;
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < kTile / 4; ++k) {
      const float p = expf(sc[k] - base);
      sum += p;
      sP[r * (kTile + 1) + quarter + 4 * k] = p;
    }
    l = l * alpha + sum;
    __syncwarp();  // the row's P comes from the 4 lanes of this quad
#pragma unroll
    for (int k = 0; k < D / 4; ++k) {
      float acc = o[k] * alpha;
      for (int c = 0; c < kTile; ++c) acc = fmaf(sP[r * (kTile + 1) + c], sV[c * D + quarter + 4 * k], acc);
      o[k] = acc;
    }
  }
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (i >= Tq) return;
  float* out = static_cast<float*>(a.out) + s.out.at(hi.b, hi.h, i);
#pragma unroll
  for (int k = 0; k < D / 4; ++k)
    if (quarter + 4 * k < Dh) out[quarter + 4 * k] = o[k] / l;
  if (quarter == 0) a.lse[bh * Tq + i] = m + logf(l);
}

template <int D> __global__ void __launch_bounds__(kThreadsF32) attention_bwd_f32_kernel(BwdArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kLd = D + 1, kLdP = kTile + 1;
  float* sK = reinterpret_cast<float*>(smem);  // [32][D+1] (keys)
  float* sV = sK + kTile * kLd;
  float* sQ = sV + kTile * kLd;                // [32][D+1] (queries)
  float* sdO = sQ + kTile * kLd;
  float* sP = sdO + kTile * kLd;               // [keys][queries]
  float* sdS = sP + kTile * kLdP;              // [keys][queries]
  float* sLse = sdS + kTile * kLdP;
  float* sDelta = sLse + kTile;
  const AttentionShape s = a.s;
  const int Dh = static_cast<int>(s.head_dim);
  const int64_t Tq = s.q_len, Tk = s.kv_len, off = s.q_offset(), H = s.heads;
  const int64_t bh = a.bh_begin + blockIdx.x, bq = bh - a.bh_begin;  // flat head; its dq_accum index
  const HeadIndex hi(bh, H);
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kTile, j_last = min(j0 + kTile, Tk) - 1;
  const float* Q = static_cast<const float*>(a.q) + s.q.at(hi.b, hi.h, 0);
  const float* K = static_cast<const float*>(a.k) + s.k.at(hi.b, hi.h, 0);
  const float* V = static_cast<const float*>(a.v) + s.v.at(hi.b, hi.h, 0);
  const float* dO = static_cast<const float*>(a.dout) + s.dout.at(hi.b, hi.h, 0);
  const int c = threadIdx.x / 4, quarter = threadIdx.x % 4;  // key row c of the tile
  const int64_t j = j0 + c;
  const float scale = static_cast<float>(s.scale);

  load_rows_f32<D>(sK, kLd, K, j0, Tk, Dh, s.k.st);
  load_rows_f32<D>(sV, kLd, V, j0, Tk, Dh, s.v.st);
  float dk[D / 4], dv[D / 4];
#pragma unroll
  for (int k = 0; k < D / 4; ++k) dk[k] = dv[k] = 0.f;
  // Query rows that see some key of the tile (see attention_bwd.cu).
  const int64_t i_lo = s.causal && j0 - off > 0 ? j0 - off : 0;
  const int64_t i_hi = s.causal && s.window > 0 ? min(Tq - 1, j_last + s.window - 1 - off) : Tq - 1;
  for (int64_t i0 = i_lo / kTile * kTile; i0 <= i_hi; i0 += kTile) {
    __syncthreads();  // the previous query tile and dS are no longer read
    load_rows_f32<D>(sQ, kLd, Q, i0, Tq, Dh, s.q.st);
    load_rows_f32<D>(sdO, kLd, dO, i0, Tq, Dh, s.dout.st);
    if (threadIdx.x < kTile) {
      const bool ok = i0 + threadIdx.x < Tq;
      sLse[threadIdx.x] = ok ? a.lse[bh * Tq + i0 + threadIdx.x] : 0.f;
      sDelta[threadIdx.x] = ok ? a.delta[bh * Tq + i0 + threadIdx.x] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTile / 4; ++k) {
      const int r = quarter + 4 * k;
      const int64_t i = i0 + r;
      const bool ok = i < Tq && j < Tk && j >= s.key_begin(i) && j < s.key_end(i);
      const float p = ok ? expf(scale * dot_rows<D>(sQ + r * kLd, sK + c * kLd) - sLse[r]) : 0.f;
      const float dp = dot_rows<D>(sdO + r * kLd, sV + c * kLd);
      sP[c * kLdP + r] = p;
      sdS[c * kLdP + r] = p * (dp - sDelta[r]);
    }
    __syncwarp();  // key row c's P and dS come from this quad
#pragma unroll
    for (int k = 0; k < D / 4; ++k) {
      const int d = quarter + 4 * k;
      float av = dv[k], ak = dk[k];
      for (int r = 0; r < kTile; ++r) {
        av = fmaf(sP[c * kLdP + r], sdO[r * kLd + d], av);
        ak = fmaf(sdS[c * kLdP + r], sQ[r * kLd + d], ak);
      }
      dv[k] = av;
      dk[k] = ak;
    }
    __syncthreads();  // all of dS is in
    const int r = threadIdx.x / 4;  // dQ: thread -> query row r, columns quarter + 4k
    const int64_t i = i0 + r;
    if (i < Tq) {
#pragma unroll
      for (int k = 0; k < D / 4; ++k) {
        const int d = quarter + 4 * k;
        if (d >= Dh) continue;
        float acc = 0.f;
        for (int cc = 0; cc < kTile; ++cc) acc = fmaf(sdS[cc * kLdP + r], sK[cc * kLd + d], acc);
        if (a.dq_tile_stride > 0)  // deterministic: this key tile's own slab (see BwdArgs)
          a.dq_accum[static_cast<int64_t>(blockIdx.y) * a.dq_tile_stride + (bq * Tq + i) * Dh + d] = acc * scale;
        else
          atomicAdd(a.dq_accum + (bq * Tq + i) * Dh + d, acc * scale);
      }
    }
  }
  if (j >= Tk) return;
  float* dK = static_cast<float*>(a.dk) + s.dk.at(hi.b, hi.h, j);
  float* dV = static_cast<float*>(a.dv) + s.dv.at(hi.b, hi.h, j);
#pragma unroll
  for (int k = 0; k < D / 4; ++k) {
    const int d = quarter + 4 * k;
    if (d < Dh) {
      dK[d] = dk[k] * scale;
      dV[d] = dv[k];
    }
  }
}

template <int D> void fwd(const FwdArgs& a, cudaStream_t stream) {
  const int64_t tiles = (a.s.q_len + kTile - 1) / kTile;
  if (tiles > 65535) throw std::invalid_argument("attention (CUDA, float32): too many query rows for the grid");
  allow_smem(attention_fwd_f32_kernel<D>, fwd_smem_bytes<D>());
  const dim3 grid(static_cast<unsigned>(a.s.batch * a.s.heads), static_cast<unsigned>(tiles));
  attention_fwd_f32_kernel<D><<<grid, kThreadsF32, fwd_smem_bytes<D>(), stream>>>(a);
  CUDA_CHECK_LAUNCH();
}
template <int D> void bwd(const BwdArgs& a, cudaStream_t stream) {
  const int64_t tiles = (a.s.kv_len + kTile - 1) / kTile;
  if (tiles > 65535) throw std::invalid_argument("attention backward (CUDA, float32): too many keys for the grid");
  allow_smem(attention_bwd_f32_kernel<D>, bwd_smem_bytes<D>());
  const dim3 grid(static_cast<unsigned>(a.bh_count), static_cast<unsigned>(tiles));
  attention_bwd_f32_kernel<D><<<grid, kThreadsF32, bwd_smem_bytes<D>(), stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_fwd_f32(const FwdArgs& a, cudaStream_t stream) {
  if (a.s.head_dim <= 64) fwd<64>(a, stream);
  else fwd<128>(a, stream);
}
int64_t bwd_key_tile_f32() { return kTile; }

void launch_bwd_f32(const BwdArgs& a, cudaStream_t stream) {
  if (a.s.head_dim <= 64) bwd<64>(a, stream);
  else bwd<128>(a, stream);
}

}  // namespace ttt::cuda_impl::attn
