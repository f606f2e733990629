// kernels/cuda/selective_scan.cuh — the block bodies of the fused Mamba-1 selective scan
// (kernels/selective_scan.h), written against simt.cuh so that the same source runs on a GPU
// (selective_scan.cu launches them) and on the host SIMT emulator
// (tests/test_selective_scan_emulated.cpp). Math and reference: kernels/cpu/selective_scan.cpp.
//
// What we took from state-spaces/mamba's selective_scan CUDA kernels (csrc/selective_scan): the
// softplus and the D skip fused into the scan, exp2f with A pre-scaled by log2 e, the running state
// saved by the forward at every chunk end and the states inside a chunk recomputed by the backward.
// Their layout differs: one block per (batch, channel) with time split over the threads, a block-wide
// scan of (decay, input) pairs per state index (cub BlockScan), [B, D, T] tensors. Ours walks time
// sequentially per state entry, which suits the [B, T, D] layout of our projections (no transposes):
//  - One thread per (batch, channel d, state index n): the state h[d, n] is one register. A block
//    is one batch element and CH = 16 channels: 256 threads, lane group of N = 16 lanes per channel
//    (two channels per warp). Grid: batch · channels / 16 blocks (768 at 8 × 1536).
//  - Time is walked in chunks of L = 32 steps. Each chunk's u, Δ = softplus(δ + bias) (and in
//    backward σ(δ + bias) and dy) for the block's 16 channels, and B, C, are staged in shared
//    memory by coalesced loads (padding rows past the end are Δ = u = B = C = dy = 0, which leave
//    the state and every sum unchanged).
//  - y_t = Σ_n C_t[n] h_t[n] is a sum over the 16 lanes of a channel. Instead of a 4-shuffle
//    butterfly per step, each lane keeps its terms of 16 consecutive steps and one reduce-scatter
//    (8 + 4 + 2 + 1 = 15 shuffles per 16 steps) leaves lane n with the sum of step n, which it
//    writes to shared memory; rows are stored to global memory coalesced after the chunk.
//  - The forward writes the state at every chunk start ([batch, chunks, channels, N] float32,
//    the `states` buffer) when a backward will follow.
//  - Backward: chunks in reverse. From the chunk's start state the thread recomputes the chunk's 33
//    states into registers (the chunk is fully unrolled), then walks the chunk backward with the
//    adjoint g = dL/dh. Per-token sums over n (dΔ, du) by the same reduce-scatter; sums over the
//    channels (dB, dC) by one shuffle (the warp's two channels), then the 8 warps in order through
//    shared memory, giving one partial per (batch, channel block, t, n) in the workspace; the
//    per-thread parameter sums (dA; dD and dbias after a 16-lane butterfly) are partials per batch
//    element. Two small kernels then add the partials in index order: no atomics, runs reproduce
//    bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/simt.cuh"
#include "kernels/selective_scan.h"

namespace ttt::cuda_impl::sscan {

using simt::lane;
using simt::tid;
using simt::warp;

constexpr int N = 16;           // state size: one lane per state index
constexpr int CH = 16;          // channels per block
constexpr int THREADS = N * CH; // 256
constexpr int NW = THREADS / 32;
constexpr int L = 32;           // steps per chunk (the forward's state checkpoint interval)
constexpr int RS = CH + 1;      // row stride of [L, CH] tiles: lane-varying rows hit distinct banks
constexpr float kLog2e = 1.4426950408889634f;
static_assert(THREADS == N * N, "the dB/dC warp sum gives one (step, n) pair per thread");
static_assert(L % N == 0, "a chunk is whole reduce-scatter groups");

struct Params {
  const float *u = nullptr, *delta = nullptr, *A = nullptr, *B = nullptr, *C = nullptr, *D = nullptr,
              *bias = nullptr, *dy = nullptr;
  const float* h0 = nullptr;  // forward only; null: zeros
  float *y = nullptr, *states = nullptr, *h_final = nullptr, *du = nullptr, *ddelta = nullptr;
  float *part_B = nullptr, *part_C = nullptr, *part_A = nullptr, *part_D = nullptr, *part_bias = nullptr;
  int64_t batch = 0, len = 0, channels = 0;
  int chunks = 0;  // ceil(len / L)
  int groups = 0;  // channels / CH
};

struct FwdSmem {
  float u[L][RS], dl[L][RS], y[L][RS];
  float b[L][N], c[L][N];
};

struct BwdSmem {
  float u[L][RS], dl[L][RS], sg[L][RS], dy[L][RS], du[L][RS], dd[L][RS];
  float b[L][N], c[L][N];
  float red[2][NW][N][N];  // a group's dB, dC terms per warp (its two channels summed)
};

// --- host-side setup, shared by the launchers and the emulated test -----------------------------

inline int64_t chunk_count(int64_t len) { return (len + L - 1) / L; }
inline size_t states_elems(const SelectiveScanShape& s) {
  return static_cast<size_t>(s.batch * chunk_count(s.len) * s.channels * N);
}
inline size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }
// Workspace floats of the backward: dB and dC partials per channel block, parameter partials per batch.
inline size_t workspace_bytes(const SelectiveScanShape& s) {
  const size_t bc = static_cast<size_t>(s.batch * (s.channels / CH) * s.len * N) * sizeof(float);
  const size_t a = static_cast<size_t>(s.batch * s.channels * N) * sizeof(float);
  const size_t d = static_cast<size_t>(s.batch * s.channels) * sizeof(float);
  return 2 * align256(bc) + align256(a) + 2 * align256(d);
}

inline Params params_of(const SelectiveScanShape& s) {
  Params p;
  p.batch = s.batch;
  p.len = s.len;
  p.channels = s.channels;
  p.chunks = static_cast<int>(chunk_count(s.len));
  p.groups = static_cast<int>(s.channels / CH);
  return p;
}
inline Params params_of(const SelectiveScanForward& c) {
  Params p = params_of(c.s);
  p.u = static_cast<const float*>(c.u), p.delta = static_cast<const float*>(c.delta);
  p.A = static_cast<const float*>(c.A), p.B = static_cast<const float*>(c.B), p.C = static_cast<const float*>(c.C);
  p.D = static_cast<const float*>(c.D), p.bias = static_cast<const float*>(c.bias);
  p.y = static_cast<float*>(c.y), p.states = static_cast<float*>(c.states);
  p.h0 = static_cast<const float*>(c.h0), p.h_final = static_cast<float*>(c.h_final);
  return p;
}
inline Params params_of(const SelectiveScanBackward& c) {
  Params p = params_of(c.s);
  p.u = static_cast<const float*>(c.u), p.delta = static_cast<const float*>(c.delta);
  p.A = static_cast<const float*>(c.A), p.B = static_cast<const float*>(c.B), p.C = static_cast<const float*>(c.C);
  p.D = static_cast<const float*>(c.D), p.bias = static_cast<const float*>(c.bias);
  p.dy = static_cast<const float*>(c.dy);
  p.states = const_cast<float*>(static_cast<const float*>(c.states));
  p.du = static_cast<float*>(c.du), p.ddelta = static_cast<float*>(c.ddelta);
  char* w = static_cast<char*>(c.workspace);
  auto take = [&](size_t floats) {
    float* r = reinterpret_cast<float*>(w);
    w += align256(floats * sizeof(float));
    return r;
  };
  const size_t bc = static_cast<size_t>(p.batch * p.groups * p.len * N);
  p.part_B = take(bc), p.part_C = take(bc);
  p.part_A = take(static_cast<size_t>(p.batch * p.channels * N));
  p.part_D = take(static_cast<size_t>(p.batch * p.channels));
  p.part_bias = take(static_cast<size_t>(p.batch * p.channels));
  return p;
}

// --- device helpers ----------------------------------------------------------------------------

TTT_DEV float softplus_f(float v) { return fmaxf(v, 0.f) + log1pf(expf(-fabsf(v))); }
TTT_DEV float sigmoid_f(float v) { return 1.f / (1.f + expf(-v)); }

// Reduce-scatter over the W consecutive lanes of a group: lane i holds v[0..W) (its terms of W
// steps); afterwards lane i's v[0] is Σ over the group's lanes of v[i]. Each round sends the half
// this lane does not keep to its partner (lane ^ m) and adds the partner's copy of the kept half:
// W − 1 shuffles in all. All lanes of the warp take part (W divides 32).
template <int W>
TTT_DEV float reduce_scatter(float (&v)[W]) {
#pragma unroll
  for (int m = W / 2; m >= 1; m /= 2) {
    const bool upper = (lane() & m) != 0;
#pragma unroll
    for (int i = 0; i < m; ++i) {
      const float send = upper ? v[i] : v[i + m];
      const float keep = upper ? v[i + m] : v[i];
      v[i] = keep + simt::shfl_xor(send, m);
    }
  }
  return v[0];
}

// Stages chunk [t0, t0 + q) of the block's channels [d0, d0 + CH): u, Δ, and optionally σ(δ + bias)
// and dy; B, C. Rows q..L−1 are zeros.
TTT_DEV void stage(const Params& p, int64_t b, int64_t d0, int64_t t0, int q, float (*u)[RS], float (*dl)[RS],
                   float (*sg)[RS], float (*dy)[RS], float (*bs)[N], float (*cs)[N]) {
  for (int i = tid(); i < L * CH; i += THREADS) {
    const int t = i / CH, c = i % CH;
    float uv = 0.f, dv = 0.f, sv = 0.f, gv = 0.f;
    if (t < q) {
      const int64_t k = (b * p.len + t0 + t) * p.channels + d0 + c;
      const float v = p.delta[k] + p.bias[d0 + c];
      uv = p.u[k];
      dv = softplus_f(v);
      if (sg) sv = sigmoid_f(v);
      if (dy) gv = p.dy[k];
    }
    u[t][c] = uv;
    dl[t][c] = dv;
    if (sg) sg[t][c] = sv;
    if (dy) dy[t][c] = gv;
  }
  for (int i = tid(); i < L * N; i += THREADS) {
    const int t = i / N, n = i % N;
    float bv = 0.f, cv = 0.f;
    if (t < q) {
      const int64_t k = (b * p.len + t0 + t) * N + n;
      bv = p.B[k];
      cv = p.C[k];
    }
    bs[t][n] = bv;
    cs[t][n] = cv;
  }
}

// Stores rows [0, q) of a staged [L, CH] tile to dst [batch, len, channels] at (b, t0, d0).
TTT_DEV void store_rows(const Params& p, float* dst, const float (*tile)[RS], int64_t b, int64_t d0, int64_t t0,
                        int q) {
  for (int i = tid(); i < q * CH; i += THREADS) {
    const int t = i / CH, c = i % CH;
    dst[(b * p.len + t0 + t) * p.channels + d0 + c] = tile[t][c];
  }
}

// --- forward -----------------------------------------------------------------------------------

TTT_DEV void fwd_block(const Params& p, int blk, char* smem) {
  FwdSmem& S = *reinterpret_cast<FwdSmem*>(smem);
  const int64_t b = blk / p.groups, d0 = static_cast<int64_t>(blk % p.groups) * CH;
  const int c = tid() / N, n = tid() % N;
  const int64_t d = d0 + c;
  const float A2 = p.A[d * N + n] * kLog2e, Dd = p.D[d];
  float h = p.h0 ? p.h0[(b * p.channels + d) * N + n] : 0.f;
  for (int k = 0; k < p.chunks; ++k) {
    const int64_t t0 = static_cast<int64_t>(k) * L;
    const int q = static_cast<int>(p.len - t0 < L ? p.len - t0 : L);
    if (p.states) p.states[((b * p.chunks + k) * p.channels + d) * N + n] = h;
    stage(p, b, d0, t0, q, S.u, S.dl, nullptr, nullptr, S.b, S.c);
    simt::sync();
#pragma unroll
    for (int g = 0; g < L / N; ++g) {
      float part[N];
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const int t = g * N + j;
        const float dl = S.dl[t][c];
        h = exp2f(dl * A2) * h + dl * S.u[t][c] * S.b[t][n];
        part[j] = S.c[t][n] * h;
      }
      const float yv = reduce_scatter<N>(part);  // step g·N + n of channel c
      S.y[g * N + n][c] = yv + Dd * S.u[g * N + n][c];
    }
    simt::sync();
    store_rows(p, p.y, S.y, b, d0, t0, q);
  }
  if (p.h_final) p.h_final[(b * p.channels + d) * N + n] = h;
}

// --- backward ----------------------------------------------------------------------------------

TTT_DEV void bwd_block(const Params& p, int blk, char* smem) {
  BwdSmem& S = *reinterpret_cast<BwdSmem*>(smem);
  const int64_t b = blk / p.groups, d0 = static_cast<int64_t>(blk % p.groups) * CH;
  const int cg = blk % p.groups;
  const int c = tid() / N, n = tid() % N, w = warp(), ln = lane();
  const int64_t d = d0 + c;
  const float A = p.A[d * N + n], A2 = A * kLog2e, Dd = p.D[d];
  float g = 0.f;                               // dL/dh_t, carried backward
  float dA = 0.f, dD = 0.f, dbias = 0.f;       // this thread's parameter sums over time
  for (int k = p.chunks - 1; k >= 0; --k) {
    const int64_t t0 = static_cast<int64_t>(k) * L;
    const int q = static_cast<int>(p.len - t0 < L ? p.len - t0 : L);
    stage(p, b, d0, t0, q, S.u, S.dl, S.sg, S.dy, S.b, S.c);
    float hs[L + 1];  // hs[t] = the state before step t of the chunk
    hs[0] = p.states[((b * p.chunks + k) * p.channels + d) * N + n];
    simt::sync();
#pragma unroll
    for (int t = 0; t < L; ++t) {
      const float dl = S.dl[t][c];
      hs[t + 1] = exp2f(dl * A2) * hs[t] + dl * S.u[t][c] * S.b[t][n];
    }
#pragma unroll
    for (int gi = L / N - 1; gi >= 0; --gi) {
      float pdl[N], pdu[N];  // this lane's terms of dΔ_t and du_t for the group's steps
#pragma unroll
      for (int j = N - 1; j >= 0; --j) {
        const int t = gi * N + j;
        const float dl = S.dl[t][c], uv = S.u[t][c], dyt = S.dy[t][c], bt = S.b[t][n];
        const float a = exp2f(dl * A2), ah = a * hs[t];
        g += dyt * S.c[t][n];
        float sB = g * dl * uv, sC = dyt * hs[t + 1];
        pdl[j] = g * (ah * A + bt * uv);
        pdu[j] = g * dl * bt;
        dA += g * ah * dl;
        g *= a;
        sB += simt::shfl_xor(sB, 16);  // the warp's two channels
        sC += simt::shfl_xor(sC, 16);
        if (ln < 16) {
          S.red[0][w][j][n] = sB;
          S.red[1][w][j][n] = sC;
        }
      }
      const int t = gi * N + n;  // the step this lane owns after the reduce-scatters
      const float ddl = reduce_scatter<N>(pdl) * S.sg[t][c];
      S.dd[t][c] = ddl;
      S.du[t][c] = reduce_scatter<N>(pdu) + Dd * S.dy[t][c];
      dbias += ddl;
      dD += S.dy[t][c] * S.u[t][c];
      simt::sync();
      {  // the group's dB, dC over the block's channels: warps added in order
        const int j = tid() / N, nn = tid() % N;
        float sb = 0.f, sc = 0.f;
#pragma unroll
        for (int ww = 0; ww < NW; ++ww) {
          sb += S.red[0][ww][j][nn];
          sc += S.red[1][ww][j][nn];
        }
        const int64_t tt = t0 + gi * N + j;
        if (tt < p.len) {
          const int64_t o = ((b * p.groups + cg) * p.len + tt) * N + nn;
          p.part_B[o] = sb;
          p.part_C[o] = sc;
        }
      }
      simt::sync();
    }
    store_rows(p, p.du, S.du, b, d0, t0, q);
    store_rows(p, p.ddelta, S.dd, b, d0, t0, q);
  }
  p.part_A[(b * p.channels + d) * N + n] = dA;
  dD = simt::group_sum<N>(dD);
  dbias = simt::group_sum<N>(dbias);
  if (n == 0) {
    p.part_D[b * p.channels + d] = dD;
    p.part_bias[b * p.channels + d] = dbias;
  }
}

// --- ordered reductions of the partials --------------------------------------------------------

// Element i of dB and dC [batch, len, N]: the channel blocks' partials added in block order.
TTT_DEV void reduce_bc_at(int64_t i, const Params& p, float* dB, float* dC) {
  const int64_t per = p.len * N, b = i / per, r = i % per;
  float sb = 0.f, sc = 0.f;
  for (int g = 0; g < p.groups; ++g) {
    const int64_t o = (b * p.groups + g) * per + r;
    sb += p.part_B[o];
    sc += p.part_C[o];
  }
  dB[i] = sb;
  dC[i] = sc;
}

// Element i < channels · N of dA (and, for i < channels, of dD and dbias): batch partials in order.
TTT_DEV void reduce_params_at(int64_t i, const Params& p, float* dA, float* dD, float* dbias) {
  const int64_t per = p.channels * N;
  float sa = 0.f;
  for (int64_t b = 0; b < p.batch; ++b) sa += p.part_A[b * per + i];
  dA[i] = sa;
  if (i < p.channels) {
    float sd = 0.f, sbias = 0.f;
    for (int64_t b = 0; b < p.batch; ++b) {
      sd += p.part_D[b * p.channels + i];
      sbias += p.part_bias[b * p.channels + i];
    }
    dD[i] = sd;
    dbias[i] = sbias;
  }
}

}  // namespace ttt::cuda_impl::sscan
