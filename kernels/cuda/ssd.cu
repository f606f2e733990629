// kernels/cuda/ssd.cu — the fused SSD scan on CUDA (kernels/ssd.h; Mamba 2), float32.
// Reference: kernels/cpu/ssd.cpp (same formulas, in double); test: tests/test_cuda_ssd.cpp.
//
// Chunk-parallel, in the shape of the SSD paper's algorithm (and of state-spaces/mamba's Triton
// `ssd_combined`): every kernel but the two state passes runs one block per (chunk, head, batch),
// so a batch-1 prefill of T tokens still has T/Q · H blocks.
//   forward:  chunk_state   c_t (cumulative log decay), the chunk's own state S_k = Σ w_s x̄_s B_sᵀ
//             state_pass    per (b, h, p, n) element, sequentially over chunks: H_in(k), h_final
//             chunk_out     y_t = Σ_{s≤t} (C_t·B_s) e^{c_t − c_s} x̄_s + e^{c_t} H_in(k) C_t
//   backward: chunk_state + state_pass again (H_in is recomputed, not stored by the forward), then
//             chunk_dstate  E_k = Σ_t e^{c_t} dy_t C_tᵀ
//             dstate_pass   reverse over chunks: g_k = dL/d(state leaving chunk k), dh0, and
//                           <g_k, H_in(k)> for the decay's gradient (float atomics across tiles)
//             chunk_grad    dx, ddt, per-head dB and dC, the chunk's part of dA (formulas: cpu/ssd.cpp)
//             group sums    dB, dC over the heads of a group; dA over batches and chunks
// Arithmetic: float32 throughout, CUDA cores (no tensor cores yet); sums in a fixed order except the
// <g, H_in> reduction and the per-token terms of dc, ddt and dw (float atomics, in shared memory). Workspace
// (from the caller): two [B, H, K, P, N] float32 buffers in backward (one in forward) and small ones.
// Shared memory per block is about 4·(2Q(P + N) + 3Q² + PN) bytes for chunk_grad (≈ 183 KB at Q = 64,
// P = 64, N = 128): shapes that do not fit the device take the composite path (ssd_unsupported says why).
// Tiles whose rows the lanes of a warp read side by side are padded by a float a row (pad_rows), and
// the chunk's state H_in and its gradient g_k are staged in shared memory for the same reason (read
// from global memory they were a cache line per lane): H200, 125M Mamba 2 at 8 × 2048, the step's
// ssd_fwd 536 -> 147 ms and ssd_bwd 1,091 -> 567 ms (24 layers), BENCHMARKS.md. Still SIMT float32.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/ssd.h"

namespace ttt::cuda_impl {

namespace {

constexpr int kSsdThreads = 256;

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Pointers and sizes shared by every kernel; indices as in kernels/cpu/ssd.cpp.
struct SsdArgs {
  const float *x, *dt, *A, *B, *C, *h0, *dy, *dhf;
  int64_t batch, len, heads, P, groups, N, Q, K;
  __device__ int64_t ix(int64_t b, int64_t t, int64_t h, int64_t p) const { return ((b * len + t) * heads + h) * P + p; }
  __device__ int64_t idt(int64_t b, int64_t t, int64_t h) const { return (b * len + t) * heads + h; }
  __device__ int64_t ibc(int64_t b, int64_t t, int64_t g, int64_t n) const { return ((b * len + t) * groups + g) * N + n; }
  __device__ int64_t ist(int64_t b, int64_t h) const { return (b * heads + h) * P * N; }  // [P, N] of (b, h)
  __device__ int64_t ichunk(int64_t b, int64_t h, int64_t k) const { return ((b * heads + h) * K + k) * P * N; }
  __device__ int64_t ic(int64_t b, int64_t h, int64_t k) const { return (b * heads + h) * K + k; }
};

// Row stride of a [rows][n] float tile in shared memory whose rows the lanes of a warp read side by side
// (lane i row i, same column): one float of padding puts them in distinct banks whatever n is.
__host__ __device__ inline int64_t pad_rows(int64_t n) { return n + 1; }

// The dense [rows][n] src into shared memory at row stride pad_rows(n), by the whole block.
__device__ void stage_padded(float* dst, const float* __restrict__ src, int64_t rows, int64_t n) {
  const int64_t ns = pad_rows(n);
  for (int64_t i = threadIdx.x; i < rows * n; i += blockDim.x) dst[(i / n) * ns + i % n] = src[i];
}

// The tokens of chunk blockIdx.x: start t0 and count q (the last chunk may be short).
struct ChunkPos {
  int64_t b, h, g, k, t0, q;
};
__device__ ChunkPos chunk_pos(const SsdArgs& a) {
  ChunkPos c;
  c.k = blockIdx.x;
  c.h = blockIdx.y;
  c.b = blockIdx.z;
  c.g = c.h / (a.heads / a.groups);
  c.t0 = c.k * a.Q;
  c.q = imin(a.Q, a.len - c.t0);
  return c;
}

// dt of the chunk into smem dtv[q] and c_t = Σ_{s≤t} dt_s A (cumulative log decay) into smem c[q].
__device__ void chunk_cumsum(const SsdArgs& a, const ChunkPos& cp, float* c, float* dtv) {
  for (int64_t t = threadIdx.x; t < cp.q; t += blockDim.x) dtv[t] = a.dt[a.idt(cp.b, cp.t0 + t, cp.h)];
  __syncthreads();
  if (threadIdx.x == 0) {
    const float Ah = a.A[cp.h];
    float acc = 0.f;
    for (int64_t t = 0; t < cp.q; ++t) {
      acc += dtv[t] * Ah;
      c[t] = acc;
    }
  }
  __syncthreads();
}

// out[p][n] = Σ_{u < q} left(u, p) · R_u[n] over the chunk's tokens (R = the group's B or C), in token
// tiles of TU held in smem `lt` [TU][P] and `rt` [TU][N]. The chunk-state sums of both passes.
template <class Left>
__device__ void chunk_outer_sum(const SsdArgs& a, const ChunkPos& cp, const float* __restrict__ R, float* out,
                                float* lt, float* rt, int TU, Left left) {
  const int64_t PN = a.P * a.N;
  for (int64_t i = threadIdx.x; i < PN; i += blockDim.x) out[i] = 0.f;
  for (int64_t u0 = 0; u0 < cp.q; u0 += TU) {
    const int64_t tu = imin(TU, cp.q - u0);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < tu * a.P; i += blockDim.x) lt[i] = left(u0 + i / a.P, i % a.P);
    for (int64_t i = threadIdx.x; i < tu * a.N; i += blockDim.x)
      rt[i] = R[a.ibc(cp.b, cp.t0 + u0 + i / a.N, cp.g, i % a.N)];
    __syncthreads();
    for (int64_t i = threadIdx.x; i < PN; i += blockDim.x) {
      const int64_t p = i / a.N, n = i % a.N;
      float acc = out[i];
      for (int64_t u = 0; u < tu; ++u) acc += lt[u * a.P + p] * rt[u * a.N + n];
      out[i] = acc;
    }
  }
}

// Forward part 1: S_k[p][n] = Σ_s e^{c_Q − c_s} dt_s x_s[p] B_s[n] into buf, and c_Q into cQ.
// smem: c[Q], dt[Q], then token tiles [TU][P] and [TU][N].
__global__ void ssd_chunk_state_kernel(SsdArgs a, float* __restrict__ buf, float* __restrict__ cQ, int TU) {
  extern __shared__ float sm[];
  const ChunkPos cp = chunk_pos(a);
  float* c = sm;
  float* dtv = c + a.Q;
  chunk_cumsum(a, cp, c, dtv);
  const float cq = c[cp.q - 1];
  if (threadIdx.x == 0) cQ[a.ic(cp.b, cp.h, cp.k)] = cq;
  chunk_outer_sum(a, cp, a.B, buf + a.ichunk(cp.b, cp.h, cp.k), dtv + a.Q, dtv + a.Q + TU * a.P, TU,
                  [&](int64_t u, int64_t p) { return expf(cq - c[u]) * dtv[u] * a.x[a.ix(cp.b, cp.t0 + u, cp.h, p)]; });
}

// Forward part 2, per (b, h) and state element: H_in(k) replaces S_k in buf; the final state.
__global__ void ssd_state_pass_kernel(SsdArgs a, float* __restrict__ buf, const float* __restrict__ cQ,
                                      float* __restrict__ h_final) {
  const int64_t PN = a.P * a.N;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  if (i >= PN) return;
  float state = a.h0 ? a.h0[a.ist(b, h) + i] : 0.f;
  for (int64_t k = 0; k < a.K; ++k) {
    float* slot = buf + a.ichunk(b, h, k) + i;
    const float s = *slot;
    *slot = state;
    state = expf(cQ[a.ic(b, h, k)]) * state + s;
  }
  if (h_final) h_final[a.ist(b, h) + i] = state;
}

// Forward part 3: y of the chunk. smem: c[Q], dt[Q], C [Q][NS], then B [Q][NS] (for G) reused as
// x̄ [Q][P], G [Q][Q] (masked, decayed C·B), and H_in [P][NS]. Rows of N floats are padded to NS = N + 1
// (pad_rows): the lanes of a warp walk u (G) or p (the state read-out) and so read different rows,
// which at a stride of N = 128 floats all sit in one bank.
__global__ void ssd_chunk_out_kernel(SsdArgs a, const float* __restrict__ hin, float* __restrict__ y) {
  extern __shared__ float sm[];
  const ChunkPos cp = chunk_pos(a);
  const int64_t Q = a.Q, P = a.P, N = a.N, NS = pad_rows(N), q = cp.q;
  float* c = sm;
  float* dtv = c + Q;
  float* Cs = dtv + Q;
  float* BX = Cs + Q * NS;                // B, then x̄
  float* G = BX + Q * imax(P, NS);
  float* Hs = G + Q * Q;
  chunk_cumsum(a, cp, c, dtv);
  for (int64_t i = threadIdx.x; i < q * N; i += blockDim.x) {
    const int64_t t = i / N, n = i % N;
    Cs[t * NS + n] = a.C[a.ibc(cp.b, cp.t0 + t, cp.g, n)];
    BX[t * NS + n] = a.B[a.ibc(cp.b, cp.t0 + t, cp.g, n)];
  }
  stage_padded(Hs, hin + a.ichunk(cp.b, cp.h, cp.k), P, N);
  __syncthreads();
  for (int64_t i = threadIdx.x; i < q * q; i += blockDim.x) {
    const int64_t t = i / q, u = i % q;
    float acc = 0.f;
    if (u <= t) {
      for (int64_t n = 0; n < N; ++n) acc += Cs[t * NS + n] * BX[u * NS + n];
      acc *= expf(c[t] - c[u]);
    }
    G[i] = acc;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < q * P; i += blockDim.x) {
    const int64_t u = i / P, p = i % P;
    BX[i] = dtv[u] * a.x[a.ix(cp.b, cp.t0 + u, cp.h, p)];
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < q * P; i += blockDim.x) {
    const int64_t t = i / P, p = i % P;
    float off = 0.f;
    for (int64_t n = 0; n < N; ++n) off += Hs[p * NS + n] * Cs[t * NS + n];
    float acc = expf(c[t]) * off;
    for (int64_t u = 0; u <= t; ++u) acc += G[t * q + u] * BX[u * P + p];
    y[a.ix(cp.b, cp.t0 + t, cp.h, p)] = acc;
  }
}

// Backward part 1: E_k[p][n] = Σ_t e^{c_t} dy_t[p] C_t[n] into ebuf. smem: c, dt, token tiles.
__global__ void ssd_chunk_dstate_kernel(SsdArgs a, float* __restrict__ ebuf, int TU) {
  extern __shared__ float sm[];
  const ChunkPos cp = chunk_pos(a);
  float* c = sm;
  float* dtv = c + a.Q;
  chunk_cumsum(a, cp, c, dtv);
  chunk_outer_sum(a, cp, a.C, ebuf + a.ichunk(cp.b, cp.h, cp.k), dtv + a.Q, dtv + a.Q + TU * a.P, TU,
                  [&](int64_t u, int64_t p) { return a.dy ? expf(c[u]) * a.dy[a.ix(cp.b, cp.t0 + u, cp.h, p)] : 0.f; });
}

// Backward part 2, per (b, h) and state element, chunks in reverse: g_k (the gradient w.r.t. the
// state leaving chunk k) replaces E_k in ebuf; gH[k] += Σ g_k ⊙ H_in(k) (block sums, float atomics);
// dh0 = the gradient w.r.t. the state entering chunk 0.
__global__ void ssd_dstate_pass_kernel(SsdArgs a, float* __restrict__ ebuf, const float* __restrict__ hin,
                                       const float* __restrict__ cQ, float* __restrict__ gH, float* __restrict__ dh0) {
  __shared__ float red[kSsdThreads / 32];
  const int64_t PN = a.P * a.N;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const bool live = i < PN;
  float g = live && a.dhf ? a.dhf[a.ist(b, h) + i] : 0.f;
  for (int64_t k = a.K - 1; k >= 0; --k) {
    float prod = 0.f;
    if (live) {
      float* slot = ebuf + a.ichunk(b, h, k) + i;
      const float e = *slot;
      *slot = g;
      prod = g * hin[a.ichunk(b, h, k) + i];
      g = expf(cQ[a.ic(b, h, k)]) * g + e;
    }
    for (int o = 16; o > 0; o >>= 1) prod += __shfl_xor_sync(0xffffffffu, prod, o);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = prod;
    __syncthreads();
    if (threadIdx.x == 0) {
      float s = 0.f;
      for (int w = 0; w < kSsdThreads / 32; ++w) s += red[w];
      atomicAdd(gH + a.ic(b, h, k), s);
    }
    __syncthreads();
  }
  if (live && dh0) dh0[a.ist(b, h) + i] = g;
}

// Backward part 3: every gradient of chunk k (formulas in kernels/cpu/ssd.cpp). Writes dx, ddt, the
// per-head dB, dC [B, T, H, N] and the chunk's part of dA. smem: c, dt, dc, ddt_x, dw [Q] each;
// x̄, dy [Q][PS]; B, C [Q][NS]; M, dM and the decays L [Q][Q]; g_k [P][NS] (rows padded by one float,
// pad_rows: lanes walking u or p then read distinct banks).
__global__ void ssd_chunk_grad_kernel(SsdArgs a, const float* __restrict__ gbuf, const float* __restrict__ hin,
                                      const float* __restrict__ gH, float* __restrict__ dx, float* __restrict__ ddt,
                                      float* __restrict__ dBh, float* __restrict__ dCh, float* __restrict__ dA_part) {
  extern __shared__ float sm[];
  const ChunkPos cp = chunk_pos(a);
  const int64_t Q = a.Q, P = a.P, N = a.N, PS = pad_rows(P), NS = pad_rows(N), q = cp.q;
  float* c = sm;
  float* dtv = c + Q;
  float* dc = dtv + Q;
  float* ddx = dc + Q;  // Σ_p x·dx̄
  float* dw = ddx + Q;  // x̄_uᵀ g B_u
  float* xb = dw + Q;
  float* dys = xb + Q * PS;
  float* Bs = dys + Q * PS;
  float* Cs = Bs + Q * NS;
  float* M = Cs + Q * NS;
  float* dM = M + Q * Q;
  float* L = dM + Q * Q;   // e^{c_t − c_u} for u ≤ t, else 0
  float* gs = L + Q * Q;   // g_k [P][NS]
  chunk_cumsum(a, cp, c, dtv);
  for (int64_t t = threadIdx.x; t < Q; t += blockDim.x) dc[t] = ddx[t] = dw[t] = 0.f;
  for (int64_t i = threadIdx.x; i < q * P; i += blockDim.x) {
    const int64_t t = i / P, p = i % P;
    xb[t * PS + p] = dtv[t] * a.x[a.ix(cp.b, cp.t0 + t, cp.h, p)];
    dys[t * PS + p] = a.dy ? a.dy[a.ix(cp.b, cp.t0 + t, cp.h, p)] : 0.f;
  }
  for (int64_t i = threadIdx.x; i < q * N; i += blockDim.x) {
    const int64_t t = i / N, n = i % N;
    Bs[t * NS + n] = a.B[a.ibc(cp.b, cp.t0 + t, cp.g, n)];
    Cs[t * NS + n] = a.C[a.ibc(cp.b, cp.t0 + t, cp.g, n)];
  }
  stage_padded(gs, gbuf + a.ichunk(cp.b, cp.h, cp.k), P, N);
  __syncthreads();
  const float* H = hin + a.ichunk(cp.b, cp.h, cp.k);
  const float cq = c[q - 1];
  // M = (C Bᵀ) ⊙ L and dM = dy x̄ᵀ, lower triangles; the decay terms R = dM ⊙ M of dc.
  for (int64_t i = threadIdx.x; i < q * q; i += blockDim.x) {
    const int64_t t = i / q, u = i % q;
    float m = 0.f, d = 0.f, l = 0.f;
    if (u <= t) {
      for (int64_t n = 0; n < N; ++n) m += Cs[t * NS + n] * Bs[u * NS + n];
      l = expf(c[t] - c[u]);
      m *= l;
      for (int64_t p = 0; p < P; ++p) d += dys[t * PS + p] * xb[u * PS + p];
      atomicAdd(dc + t, d * m);
      atomicAdd(dc + u, -d * m);
    }
    M[i] = m;
    dM[i] = d;
    L[i] = l;
  }
  __syncthreads();
  // dx̄ (then dx and Σ_p x·dx̄), and dw_u = x̄_uᵀ g B_u.
  for (int64_t i = threadIdx.x; i < q * P; i += blockDim.x) {
    const int64_t u = i / P, p = i % P;
    float gb = 0.f;
    for (int64_t n = 0; n < N; ++n) gb += gs[p * NS + n] * Bs[u * NS + n];
    float acc = expf(cq - c[u]) * gb;
    for (int64_t t = u; t < q; ++t) acc += M[t * q + u] * dys[t * PS + p];
    dx[a.ix(cp.b, cp.t0 + u, cp.h, p)] = dtv[u] * acc;
    atomicAdd(ddx + u, a.x[a.ix(cp.b, cp.t0 + u, cp.h, p)] * acc);
    atomicAdd(dw + u, xb[u * PS + p] * gb);
  }
  // dC (and the state read-out's part of dc) and dB.
  for (int64_t i = threadIdx.x; i < q * N; i += blockDim.x) {
    const int64_t t = i / N, n = i % N;
    float hdy = 0.f;
    for (int64_t p = 0; p < P; ++p) hdy += H[p * N + n] * dys[t * PS + p];
    const float et = expf(c[t]);
    float acc = et * hdy;
    for (int64_t u = 0; u <= t; ++u) acc += dM[t * q + u] * L[t * q + u] * Bs[u * NS + n];
    dCh[((cp.b * a.len + cp.t0 + t) * a.heads + cp.h) * N + n] = acc;
    atomicAdd(dc + t, et * Cs[t * NS + n] * hdy);
    const int64_t u = t;  // the same (token, n) pair as a key: dB
    float gx = 0.f;
    for (int64_t p = 0; p < P; ++p) gx += gs[p * NS + n] * xb[u * PS + p];
    float bcc = expf(cq - c[u]) * gx;
    for (int64_t t2 = u; t2 < q; ++t2) bcc += dM[t2 * q + u] * L[t2 * q + u] * Cs[t2 * NS + n];
    dBh[((cp.b * a.len + cp.t0 + u) * a.heads + cp.h) * N + n] = bcc;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // The chunk state's and the hand-off's parts of dc, then da = reverse cumsum, ddt and dA.
    float dcq = expf(cq) * gH[a.ic(cp.b, cp.h, cp.k)];
    for (int64_t u = 0; u < q; ++u) {
      const float wu = expf(cq - c[u]) * dw[u];
      dc[u] -= wu;
      dcq += wu;
    }
    dc[q - 1] += dcq;
    const float Ah = a.A[cp.h];
    float da = 0.f, dA = 0.f;
    for (int64_t t = q - 1; t >= 0; --t) {
      da += dc[t];
      ddt[a.idt(cp.b, cp.t0 + t, cp.h)] = ddx[t] + Ah * da;
      dA += dtv[t] * da;
    }
    dA_part[a.ic(cp.b, cp.h, cp.k)] = dA;
  }
}

// dB, dC [B, T, G, N] = the sums over the heads of each group of the per-head buffers.
__global__ void ssd_group_sum_kernel(const float* __restrict__ per_head, float* __restrict__ out, int64_t rows,
                                     int64_t heads, int64_t groups, int64_t N) {
  const int64_t total = rows * groups * N, hpg = heads / groups;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i % N, g = (i / N) % groups, r = i / (N * groups);
    float acc = 0.f;
    for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h) acc += per_head[(r * heads + h) * N + n];
    out[i] = acc;
  }
}

// dA[h] = Σ over batches and chunks of the per-chunk parts.
__global__ void ssd_da_sum_kernel(const float* __restrict__ part, float* __restrict__ dA, int64_t batch,
                                  int64_t heads, int64_t K) {
  const int64_t h = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (h >= heads) return;
  float acc = 0.f;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < K; ++k) acc += part[(b * heads + h) * K + k];
  dA[h] = acc;
}

// Token tile of the state kernels: bounded shared memory whatever the chunk.
int state_tile(int64_t P, int64_t N) { return P + N <= 256 ? 32 : 16; }
// Shared memory of each kernel, at the chunk length q actually used.
size_t state_smem(const SSDShape& s) {
  return sizeof(float) * (2 * s.q() + state_tile(s.head_dim, s.state) * (s.head_dim + s.state));
}
size_t out_smem(const SSDShape& s) {
  const int64_t q = s.q(), NS = pad_rows(s.state);
  return sizeof(float) * (2 * q + q * NS + q * std::max<int64_t>(s.head_dim, NS) + q * q + s.head_dim * NS);
}
size_t grad_smem(const SSDShape& s) {
  const int64_t q = s.q(), PS = pad_rows(s.head_dim), NS = pad_rows(s.state);
  return sizeof(float) * (5 * q + 2 * q * PS + 2 * q * NS + 3 * q * q + s.head_dim * NS);
}

int max_optin_smem() {
  int device = 0, v = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return v;
}

template <class K, class... R>
void launch_with_smem(K kernel, dim3 grid, size_t smem, cudaStream_t stream, const SsdArgs& a, R... rest) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<grid, kSsdThreads, smem, stream>>>(a, rest...);
  CUDA_CHECK_LAUNCH();
}

SsdArgs make_args(const SSDShape& s, const void* x, const void* dt, const void* A, const void* B, const void* C,
                  const void* h0, const void* dy, const void* dhf) {
  SsdArgs a;
  a.x = static_cast<const float*>(x);
  a.dt = static_cast<const float*>(dt);
  a.A = static_cast<const float*>(A);
  a.B = static_cast<const float*>(B);
  a.C = static_cast<const float*>(C);
  a.h0 = static_cast<const float*>(h0);
  a.dy = static_cast<const float*>(dy);
  a.dhf = static_cast<const float*>(dhf);
  a.batch = s.batch;
  a.len = s.len;
  a.heads = s.heads;
  a.P = s.head_dim;
  a.groups = s.groups;
  a.N = s.state;
  a.Q = s.q();
  a.K = s.chunks();
  return a;
}

// Carves float32 buffers out of the caller's workspace, 256-byte aligned.
struct Carver {
  char* p;
  float* take(int64_t n) {
    float* r = reinterpret_cast<float*>(p);
    p += (static_cast<size_t>(n) * sizeof(float) + 255) / 256 * 256;
    return r;
  }
};
size_t carve_bytes(std::initializer_list<int64_t> counts) {
  size_t b = 0;
  for (int64_t n : counts) b += (static_cast<size_t>(n) * sizeof(float) + 255) / 256 * 256;
  return b;
}

// Forward parts 1 and 2: buf = H_in of every chunk, cQ, and (when non-null) h_final.
void states(cudaStream_t stream, const SsdArgs& a, const SSDShape& s, float* buf, float* cQ, float* h_final) {
  const dim3 chunks(static_cast<unsigned>(a.K), static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  launch_with_smem(ssd_chunk_state_kernel, chunks, state_smem(s), stream, a, buf, cQ, state_tile(a.P, a.N));
  const dim3 elems(static_cast<unsigned>(ceil_div(a.P * a.N, kSsdThreads)), static_cast<unsigned>(a.batch * a.heads));
  ssd_state_pass_kernel<<<elems, kSsdThreads, 0, stream>>>(a, buf, cQ, h_final);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

std::string ssd_unsupported(const SSDShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernels run float32 (got " + std::string(dtype_name(s.dtype)) + ")";
  if (s.q() > 256) return "the CUDA kernels handle chunks of at most 256 tokens";
  if (s.chunks() > 2147483647 || s.heads > 65535 || s.batch > 65535 || s.batch * s.heads > 65535)
    return "too many chunks, heads or sequences for the CUDA grid";
  static thread_local int limit = -1;
  if (limit < 0) limit = max_optin_smem();
  const size_t need = std::max({state_smem(s), out_smem(s), grad_smem(s)});
  if (need > static_cast<size_t>(limit))
    return "needs " + std::to_string(need) + " bytes of shared memory per block, the device allows " +
           std::to_string(limit);
  return "";
}

size_t ssd_forward_workspace(const SSDShape& s) {
  const int64_t chunk_elems = s.batch * s.heads * s.chunks();
  return carve_bytes({chunk_elems * s.head_dim * s.state, chunk_elems});
}

size_t ssd_backward_workspace(const SSDShape& s) {
  const int64_t chunk_elems = s.batch * s.heads * s.chunks(), PN = s.head_dim * s.state;
  const int64_t per_head = s.batch * s.len * s.heads * s.state;
  return carve_bytes({chunk_elems * PN, chunk_elems * PN, chunk_elems, chunk_elems, chunk_elems, per_head, per_head});
}

void ssd_forward(Backend& be0, SsdForward& c) {
  const SSDShape& s = c.s;
  const std::string why = ssd_unsupported(s);
  if (!why.empty()) throw std::invalid_argument("ssd_fwd on " + be0.device().str() + ": " + why);
  if (s.batch * s.len * s.heads == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "ssd");
  const SsdArgs a = make_args(s, c.x, c.dt, c.A, c.B, c.C, c.h0, nullptr, nullptr);
  Carver w{static_cast<char*>(c.workspace)};
  float* buf = w.take(a.batch * a.heads * a.K * a.P * a.N);
  float* cQ = w.take(a.batch * a.heads * a.K);
  states(be.stream(), a, s, buf, cQ, static_cast<float*>(c.h_final));
  const dim3 chunks(static_cast<unsigned>(a.K), static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  launch_with_smem(ssd_chunk_out_kernel, chunks, out_smem(s), be.stream(), a, static_cast<const float*>(buf),
                   static_cast<float*>(c.y));
}

void ssd_backward(Backend& be0, SsdBackward& c) {
  const SSDShape& s = c.s;
  const std::string why = ssd_unsupported(s);
  if (!why.empty()) throw std::invalid_argument("ssd_bwd on " + be0.device().str() + ": " + why);
  CudaBackend& be = cuda_backend_of(be0, "ssd");
  cudaStream_t stream = be.stream();
  if (s.batch * s.len * s.heads == 0) {
    if (c.dA) CUDA_CHECK(cudaMemsetAsync(c.dA, 0, sizeof(float) * s.heads, stream));
    if (c.dh0) CUDA_CHECK(cudaMemsetAsync(c.dh0, 0, sizeof(float) * s.batch * s.heads * s.head_dim * s.state, stream));
    return;
  }
  const SsdArgs a = make_args(s, c.x, c.dt, c.A, c.B, c.C, c.h0, c.dy, c.dh_final);
  const int64_t chunk_elems = a.batch * a.heads * a.K, PN = a.P * a.N;
  Carver w{static_cast<char*>(c.workspace)};
  float* hin = w.take(chunk_elems * PN);
  float* gbuf = w.take(chunk_elems * PN);
  float* cQ = w.take(chunk_elems);
  float* gH = w.take(chunk_elems);
  float* dA_part = w.take(chunk_elems);
  float* dBh = w.take(a.batch * a.len * a.heads * a.N);
  float* dCh = w.take(a.batch * a.len * a.heads * a.N);
  states(stream, a, s, hin, cQ, nullptr);
  const dim3 chunks(static_cast<unsigned>(a.K), static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  launch_with_smem(ssd_chunk_dstate_kernel, chunks, state_smem(s), stream, a, gbuf, state_tile(a.P, a.N));
  CUDA_CHECK(cudaMemsetAsync(gH, 0, sizeof(float) * chunk_elems, stream));
  const dim3 elems(static_cast<unsigned>(ceil_div(PN, kSsdThreads)), static_cast<unsigned>(a.batch * a.heads));
  ssd_dstate_pass_kernel<<<elems, kSsdThreads, 0, stream>>>(a, gbuf, hin, cQ, gH, static_cast<float*>(c.dh0));
  CUDA_CHECK_LAUNCH();
  launch_with_smem(ssd_chunk_grad_kernel, chunks, grad_smem(s), stream, a, static_cast<const float*>(gbuf),
                   static_cast<const float*>(hin), static_cast<const float*>(gH), static_cast<float*>(c.dx),
                   static_cast<float*>(c.ddt), dBh, dCh, dA_part);
  const int64_t rows = a.batch * a.len;
  const unsigned grid = grid_for(rows * a.groups * a.N, kThreads, be.sm_count());
  ssd_group_sum_kernel<<<grid, kThreads, 0, stream>>>(dBh, static_cast<float*>(c.dB), rows, a.heads, a.groups, a.N);
  CUDA_CHECK_LAUNCH();
  ssd_group_sum_kernel<<<grid, kThreads, 0, stream>>>(dCh, static_cast<float*>(c.dC), rows, a.heads, a.groups, a.N);
  CUDA_CHECK_LAUNCH();
  ssd_da_sum_kernel<<<static_cast<unsigned>(ceil_div(a.heads, kThreads)), kThreads, 0, stream>>>(
      dA_part, static_cast<float*>(c.dA), a.batch, a.heads, a.K);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
