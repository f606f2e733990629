// kernels/cuda/gated_delta.cuh — the block bodies of the fused gated delta rule (Gated DeltaNet;
// kernels/gated_delta.h), written against simt.cuh so that the same source runs on a GPU
// (gated_delta.cu launches them) and on the host SIMT emulator (tests/test_gated_delta_emulated.cpp).
// Math and reference: kernels/cpu/gated_delta.cpp.
//
// Without the erase term (ERASE false: the gated linear recurrence of Mamba 2's SSD) p = 0: the
// forward's per-token critical path is the update alone, and dp = 0 in the backward.
//
// The recurrent form, token by token (fla's fused_recurrent_gated_delta_rule walks tokens the same
// way; its training path is the chunked WY form, which this is not yet):
//  - A block owns one (batch, head) and a slice of BV = 32 value columns of the state M [d_k, d_v]
//    (grid: value slices × batch · heads). 128 threads: lane = jj + 8 r, column jb = 8 · warp + jj,
//    row group r ∈ 0..3 owning the ROWS consecutive rows r · ROWS .. of the column (d_k ≤ 4 ROWS,
//    padding rows zero). The thread's part of the state is ROWS registers.
//  - Per token: p = Mᵀk and o = Mᵀq are sums over the rows, i.e. over the thread's registers and
//    then the 4 row groups (two xor shuffles, 8 and 16); u = β(v − a p) and M ← aM + k uᵀ are
//    per thread. q, k (and v, g, β) of LT tokens are staged in shared memory by coalesced cp.async,
//    double-buffered in the forward walk (the next tile arrives while one is walked).
//  - The forward writes nothing but o (and M_final). For a backward, the same walk keeps the state
//    at every CK-th token (`ckpt`, [batch·heads, chunks, 4 ROWS, d_v]).
//  - Backward, chunks of CK tokens in reverse. Phase A walks the chunk from its checkpoint and keeps
//    the state at every S-th token in the block's scratch. Phase B takes the segments of S tokens in
//    reverse: recompute their S + 1 states into shared memory (rows padded to BV + 1 floats, so a
//    lane-varying row hits distinct banks), then walk them backward with the adjoint D = dL/dM in
//    registers (D += q doᵀ; du = Dᵀk by the same row reduction; dv = β du; D ← aD + k dpᵀ with
//    dp = −aβ du). The sums over the columns that dq = M_t do, dk = D u + M_{t−1} dp and
//    da = <D, M_{t−1}> need are then done by one thread per row, which walks the segment backward
//    again with its row of D (from the adjoint entering the segment, kept in shared memory, and the
//    walk's u, dp), instead of a 32-column shuffle reduction per token. Shared memory: S + 2 states.
//  - The value slices' partial dq, dk, da, dβ go to the workspace; one small kernel adds them in
//    slice order, and dq, dk also over the heads that share q and k (groups), in head order (no
//    atomics: runs reproduce bit for bit), and forms dg = a · da.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/gated_delta_io.cuh"
#include "kernels/cuda/simt.cuh"
#include "kernels/gated_delta.h"

namespace ttt::cuda_impl::gdelta {

using simt::lane;
using simt::tid;
using simt::warp;

constexpr int BV = 32;       // value columns per block
constexpr int THREADS = 128; // 4 warps of 8 columns × 4 row groups
constexpr int RG = 4;        // row groups
constexpr int RS = BV + 1;   // row stride of [rows, BV] state tiles in shared memory
constexpr int LT = 16;       // tokens staged at a time by the forward walk
constexpr int CK = 64;       // tokens between the checkpoints the backward keeps in global memory
// Tokens per backward segment (their states are recomputed into shared memory, S + 2 states in all):
// 4, and 2 from ROWS 32, where 6 states of 128 or more rows would leave room for one block per SM.
constexpr int seg_tokens(int rows) { return rows >= 32 ? 2 : 4; }
static_assert(CK % 4 == 0 && CK % 2 == 0 && CK % LT == 0, "checkpoints fall on segment and tile boundaries");
static_assert(BV == 32, "a warp holds 8 columns x 4 row groups; per-token column sums take one lane a column");

struct Params {
  const float *q = nullptr, *k = nullptr, *v = nullptr, *g = nullptr, *beta = nullptr, *M0 = nullptr;
  const float *d_o = nullptr, *dM_final = nullptr;
  float *o = nullptr, *M_final = nullptr;
  float *ckpt = nullptr, *scratch = nullptr;            // [BH, chunks, DKP, dv]; [blocks, CK / S, DKP, BV]
  float *part_dq = nullptr, *part_dk = nullptr;        // [slices, B, T, H, dk]
  float *part_da = nullptr, *part_db = nullptr;        // [slices, B, T, H]
  float *dq = nullptr, *dk = nullptr, *dv = nullptr, *dg = nullptr, *dbeta = nullptr, *dM0 = nullptr;
  int64_t batch = 0, len = 0;
  int heads = 0, dk_dim = 0, dv_dim = 0;
  int qk_heads = 0, heads_per_group = 1;  // q and k heads (groups of heads share them)
  int rows = 0;    // ROWS: rows per row group (4 ROWS ≥ d_k)
  bool erase = true;  // the delta rule's erase term (the ERASE template argument of the blocks)
  int slices = 0;  // ceil(dv / BV)
  int chunks = 0;  // ceil(len / CK)
};

// --- host-side setup, shared by the launchers and the emulated test -----------------------------

// Rows per row group: the smallest of 8, 16, 24, 32, 48, 64 with 4 ROWS ≥ d_k (0: d_k > 256, not
// covered).
inline int rows_for(int64_t dk) {
  for (int r : {8, 16, 24, 32, 48, 64})
    if (RG * r >= dk) return r;
  return 0;
}
inline int64_t chunks_of(const GatedDeltaShape& s) { return (s.len + CK - 1) / CK; }
inline int64_t slices_of(const GatedDeltaShape& s) { return (s.dv + BV - 1) / BV; }

// Two buffers of a tile of TL tokens' inputs: a walk reads one while the next tile arrives.
template <int ROWS, int TL> struct Tiles {
  float q[2][TL][RG * ROWS], k[2][TL][RG * ROWS], v[2][TL][BV], d_o[2][TL][BV], g[2][TL], beta[2][TL];
};
template <int ROWS> struct FwdSmem {
  Tiles<ROWS, LT> in;  // d_o unused
};
template <int ROWS> struct BwdSmem {
  static constexpr int S = seg_tokens(ROWS);
  float st[S + 1][RG * ROWS][RS];  // M_{t−1} of the segment's tokens, then M of its last
  float Din[RG * ROWS][RS];        // the adjoint entering the segment's reverse walk
  Tiles<ROWS, S> in;
  float p[S][BV], u[S][BV], dp[S][BV], col_da[S][BV], col_db[S][BV], row_da[S][RG * ROWS];
};
// Calls f(std::integral_constant<int, ROWS>) for the row template `rows` (one of rows_for's values).
template <class F> auto with_rows(int rows, F&& f) {
  switch (rows) {
    case 8: return f(std::integral_constant<int, 8>{});
    case 16: return f(std::integral_constant<int, 16>{});
    case 24: return f(std::integral_constant<int, 24>{});
    case 32: return f(std::integral_constant<int, 32>{});
    case 48: return f(std::integral_constant<int, 48>{});
    default: return f(std::integral_constant<int, 64>{});
  }
}

// Workspace floats: the checkpoints, the blocks' scratch and the slices' partial gradients.
struct Workspace {
  size_t ckpt = 0, scratch = 0, part_qk = 0, part_ab = 0;
  size_t total() const { return ckpt + scratch + 2 * part_qk + 2 * part_ab; }
};
inline Workspace workspace_of(const GatedDeltaShape& s) {
  Workspace w;
  const size_t bh = static_cast<size_t>(s.batch * s.heads), dkp = static_cast<size_t>(RG * rows_for(s.dk));
  const size_t sl = static_cast<size_t>(slices_of(s)), tokens = static_cast<size_t>(s.batch * s.len * s.heads);
  w.ckpt = bh * static_cast<size_t>(chunks_of(s)) * dkp * static_cast<size_t>(s.dv);
  w.scratch = bh * sl * static_cast<size_t>(CK / seg_tokens(rows_for(s.dk))) * dkp * BV;
  w.part_qk = sl * tokens * static_cast<size_t>(s.dk);
  w.part_ab = sl * tokens;
  return w;
}

inline Params params_of(const GatedDeltaShape& s) {
  Params p;
  set_gated_delta_sizes(p, s);
  p.rows = rows_for(s.dk);
  p.slices = static_cast<int>(slices_of(s));
  p.chunks = static_cast<int>(chunks_of(s));
  return p;
}
inline Params params_of(const GatedDeltaForward& c) {
  Params p = params_of(c.s);
  set_gated_delta_buffers(p, c);
  return p;
}
// The backward's parameters; `ws` has workspace_of(c.s).total() floats.
inline Params params_of(const GatedDeltaBackward& c, float* ws) {
  Params p = params_of(c.s);
  set_gated_delta_buffers(p, c);
  const Workspace w = workspace_of(c.s);
  p.ckpt = ws;
  p.scratch = p.ckpt + w.ckpt;
  p.part_dq = p.scratch + w.scratch;
  p.part_dk = p.part_dq + w.part_qk;
  p.part_da = p.part_dk + w.part_qk;
  p.part_db = p.part_da + w.part_ab;
  return p;
}

// --- device side -----------------------------------------------------------------------------------

// The thread's place: (batch · heads) pair, value slice, its column and row group.
struct Place {
  int64_t bh, b;
  int h, slice, jb, j, r;
  bool col;  // the column exists (j < d_v)
};
TTT_DEV Place place_of(const Params& p, int64_t block) {
  Place w;
  w.slice = static_cast<int>(block % p.slices);
  w.bh = block / p.slices;
  w.b = w.bh / p.heads;
  w.h = static_cast<int>(w.bh % p.heads);
  w.jb = warp() * 8 + (lane() & 7);
  w.j = w.slice * BV + w.jb;
  w.r = lane() >> 3;
  w.col = w.j < p.dv_dim;
  return w;
}

// Offsets of token t of the place's head in the [B, T, H, ·] and [B, T, H] buffers, and of its q/k
// head in the [B, T, qk_heads, ·] ones.
TTT_DEV int64_t tok(const Params& p, const Place& w, int64_t t) { return (w.b * p.len + t) * p.heads + w.h; }
TTT_DEV int64_t tok_qk(const Params& p, const Place& w, int64_t t) {
  return (w.b * p.len + t) * p.qk_heads + w.h / p.heads_per_group;
}

// Sum over the 4 row groups of a column (lanes jj, jj + 8, jj + 16, jj + 24); every lane gets it.
// The sums before it run in 4 accumulators: a ROWS / 4-deep chain of FMAs on the token's critical path.
TTT_DEV float row_sum(float x) {
  x += simt::shfl_xor(x, 8);
  x += simt::shfl_xor(x, 16);
  return x;
}

// Loads the state of the thread's column rows from a [·, d_v]-row buffer (`ld` floats per row;
// missing rows and columns 0), or zeros when `src` is null.
template <int ROWS>
TTT_DEV void load_state(float M[ROWS], const float* src, const Params& p, const Place& w, int64_t ld_cols, int col,
                        bool ok) {
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = w.r * ROWS + m;
    M[m] = src && ok && i < p.dk_dim ? src[static_cast<int64_t>(i) * ld_cols + col] : 0.f;
  }
}
template <int ROWS>
TTT_DEV void store_state(const float M[ROWS], float* dst, const Params& p, const Place& w, int64_t ld_cols, int col,
                         bool ok, int row_limit) {
  if (!dst || !ok) return;
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = w.r * ROWS + m;
    if (i < row_limit) dst[static_cast<int64_t>(i) * ld_cols + col] = M[m];
  }
}

// Tile `b` of `tl`: n tokens from t0 by cp.async (4 bytes each, any alignment): q and d_o when asked
// (the walks that need them), k, the slice of v, g and β; elements past n or past d_k / d_v are
// written as zeros directly (g = 0, β = 0: such a token leaves the state as it is). The caller
// commits the group and waits for it (then a block barrier) before reading.
template <int ROWS, int TL>
TTT_DEV void stage_async(Tiles<ROWS, TL>& tl, int b, const Params& p, const Place& w, int64_t t0, int n, bool with_q,
                         bool with_do) {
  constexpr int DKP = RG * ROWS;
  for (int e = tid(); e < TL * DKP; e += THREADS) {
    const int t = e / DKP, i = e % DKP;
    const int64_t off = tok_qk(p, w, t0 + t) * p.dk_dim + i;
    if (t < n && i < p.dk_dim) {
      if (with_q) simt::cp_async4(&tl.q[b][t][i], p.q + off);
      simt::cp_async4(&tl.k[b][t][i], p.k + off);
    } else {
      tl.q[b][t][i] = 0.f;
      tl.k[b][t][i] = 0.f;
    }
  }
  for (int e = tid(); e < TL * BV; e += THREADS) {
    const int t = e / BV, jb = e % BV, j = w.slice * BV + jb;
    const int64_t off = tok(p, w, t0 + t) * p.dv_dim + j;
    if (t < n && j < p.dv_dim) {
      simt::cp_async4(&tl.v[b][t][jb], p.v + off);
      if (with_do) simt::cp_async4(&tl.d_o[b][t][jb], p.d_o + off);
      else tl.d_o[b][t][jb] = 0.f;  // no output gradient: zeros
    } else {
      tl.v[b][t][jb] = 0.f;
      tl.d_o[b][t][jb] = 0.f;
    }
  }
  for (int t = tid(); t < TL; t += THREADS) {
    if (t < n) {
      simt::cp_async4(&tl.g[b][t], p.g + tok(p, w, t0 + t));
      simt::cp_async4(&tl.beta[b][t], p.beta + tok(p, w, t0 + t));
    } else {
      tl.g[b][t] = 0.f;
      tl.beta[b][t] = 0.f;
    }
  }
}

// Waits for this thread's copies of the current tile (all but the newest group when a next tile was
// staged after it), then for every thread's.
TTT_DEV void wait_tile(bool next_in_flight) {
  if (next_in_flight) simt::cp_async_wait_group<1>();
  else simt::cp_async_wait_all();
  simt::sync();
}

// One token's step on the thread's rows: returns p = (M_{t−1}ᵀ k)_j (0 without the erase term) and
// leaves M = M_t.
template <int ROWS, bool ERASE>
TTT_DEV float step(float M[ROWS], const float* k, int r, float v, float a, float beta) {
  float pj = 0.f;
  if (ERASE) {
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int m = 0; m < ROWS; ++m) acc[m & 3] += M[m] * k[r * ROWS + m];
    pj = row_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  }
  const float u = beta * (v - a * pj);
#pragma unroll
  for (int m = 0; m < ROWS; ++m) M[m] = a * M[m] + k[r * ROWS + m] * u;
  return pj;
}

// The forward walk of one block. With `o` it writes the outputs; with `ckpt` the state at every CK-th
// token; with M_final the last state.
template <int ROWS, bool ERASE>
TTT_DEV void fwd_block(const Params& p, int64_t block, char* smem_raw) {
  auto& sm = *reinterpret_cast<FwdSmem<ROWS>*>(smem_raw);
  constexpr int DKP = RG * ROWS;
  const Place w = place_of(p, block);
  float M[ROWS];
  load_state<ROWS>(M, p.M0 ? p.M0 + w.bh * p.dk_dim * static_cast<int64_t>(p.dv_dim) : nullptr, p, w, p.dv_dim, w.j,
                   w.col);
  // Tiles of LT tokens, double-buffered: tile i + 1 is in flight (cp.async) while tile i is walked.
  const int64_t tiles = (p.len + LT - 1) / LT;
  auto tile_len = [&](int64_t i) { return static_cast<int>(p.len - i * LT < LT ? p.len - i * LT : LT); };
  const bool with_q = p.o != nullptr;
  auto& in = sm.in;
  stage_async<ROWS, LT>(in, 0, p, w, 0, tile_len(0), with_q, false);
  simt::cp_async_commit();
  for (int64_t it = 0; it < tiles; ++it) {
    const int64_t t0 = it * LT;
    const int n = tile_len(it), b = static_cast<int>(it & 1);
    if (it + 1 < tiles) {
      stage_async<ROWS, LT>(in, b ^ 1, p, w, t0 + LT, tile_len(it + 1), with_q, false);
      simt::cp_async_commit();
    }
    wait_tile(it + 1 < tiles);
    if (p.ckpt && t0 % CK == 0)
      store_state<ROWS>(M, p.ckpt + (w.bh * p.chunks + t0 / CK) * DKP * static_cast<int64_t>(p.dv_dim), p, w,
                        p.dv_dim, w.j, w.col, DKP);
    for (int t = 0; t < n; ++t) {
      step<ROWS, ERASE>(M, in.k[b][t], w.r, in.v[b][t][w.jb], expf(in.g[b][t]), in.beta[b][t]);
      if (with_q) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int m = 0; m < ROWS; ++m) acc[m & 3] += M[m] * in.q[b][t][w.r * ROWS + m];
        const float oj = row_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
        if (w.r == 0 && w.col) p.o[tok(p, w, t0 + t) * p.dv_dim + w.j] = oj;
      }
    }
    simt::sync();  // buffer b is read before tile i + 2 is staged into it
  }
  if (p.M_final)
    store_state<ROWS>(M, p.M_final + w.bh * p.dk_dim * static_cast<int64_t>(p.dv_dim), p, w, p.dv_dim, w.j, w.col,
                      p.dk_dim);
}

// The backward of one block: chunks in reverse, each as phase A (sub-checkpoints) and phase B
// (segments of S tokens in reverse); see the header.
template <int ROWS, bool ERASE>
TTT_DEV void bwd_block(const Params& p, int64_t block, char* smem_raw) {
  auto& sm = *reinterpret_cast<BwdSmem<ROWS>*>(smem_raw);
  constexpr int DKP = RG * ROWS, S = seg_tokens(ROWS);
  const Place w = place_of(p, block);
  const int64_t state_elems = p.dk_dim * static_cast<int64_t>(p.dv_dim);
  float* scratch = p.scratch + block * (CK / S) * static_cast<int64_t>(DKP * BV);
  auto& in = sm.in;
  float D[ROWS], M[ROWS];
  load_state<ROWS>(D, p.dM_final ? p.dM_final + w.bh * state_elems : nullptr, p, w, p.dv_dim, w.j, w.col);
  for (int c = p.chunks - 1; c >= 0; --c) {
    const int64_t t0 = static_cast<int64_t>(c) * CK;
    const int n_chunk = static_cast<int>(p.len - t0 < CK ? p.len - t0 : CK);
    const int segs = (n_chunk + S - 1) / S;
    auto seg_len = [&](int sg) { return n_chunk - sg * S < S ? n_chunk - sg * S : S; };
    // Phase A: the states entering each segment of the chunk, into the block's scratch (segments in
    // order, the next one's inputs in flight while one is walked).
    load_state<ROWS>(M, p.ckpt + (w.bh * p.chunks + c) * DKP * static_cast<int64_t>(p.dv_dim), p, w, p.dv_dim, w.j,
                     w.col);
    stage_async<ROWS, S>(in, 0, p, w, t0, seg_len(0), false, false);
    simt::cp_async_commit();
    for (int sg = 0; sg < segs; ++sg) {
      const int b = sg & 1;
      if (sg + 1 < segs) {
        stage_async<ROWS, S>(in, b ^ 1, p, w, t0 + (sg + 1) * S, seg_len(sg + 1), false, false);
        simt::cp_async_commit();
      }
      wait_tile(sg + 1 < segs);
      store_state<ROWS>(M, scratch + sg * DKP * BV, p, w, BV, w.jb, true, DKP);
      for (int t = 0; t < seg_len(sg); ++t)
        step<ROWS, ERASE>(M, in.k[b][t], w.r, in.v[b][t][w.jb], expf(in.g[b][t]), in.beta[b][t]);
      simt::sync();  // buffer b is read before the segment after next is staged into it
    }
    // Phase B: the segments in reverse, the previous one's inputs in flight while one is walked.
    stage_async<ROWS, S>(in, 0, p, w, t0 + (segs - 1) * S, seg_len(segs - 1), true, p.d_o != nullptr);
    simt::cp_async_commit();
    for (int idx = 0; idx < segs; ++idx) {
      const int sg = segs - 1 - idx, b = idx & 1, n = seg_len(sg);
      const int64_t ts = t0 + sg * S;
      if (idx + 1 < segs) {
        stage_async<ROWS, S>(in, b ^ 1, p, w, ts - S, seg_len(sg - 1), true, p.d_o != nullptr);
        simt::cp_async_commit();
      }
      load_state<ROWS>(M, scratch + sg * DKP * BV, p, w, BV, w.jb, true);
#pragma unroll
      for (int m = 0; m < ROWS; ++m) sm.st[0][w.r * ROWS + m][w.jb] = M[m];
      wait_tile(idx + 1 < segs);
      const auto& q = in.q[b];
      const auto& k = in.k[b];
      const auto& d_o = in.d_o[b];
      for (int t = 0; t < n; ++t) {
        const float pj = step<ROWS, ERASE>(M, k[t], w.r, in.v[b][t][w.jb], expf(in.g[b][t]), in.beta[b][t]);
        if (w.r == 0) sm.p[t][w.jb] = pj;
#pragma unroll
        for (int m = 0; m < ROWS; ++m) sm.st[t + 1][w.r * ROWS + m][w.jb] = M[m];
      }
#pragma unroll
      for (int m = 0; m < ROWS; ++m) sm.Din[w.r * ROWS + m][w.jb] = D[m];
      simt::syncwarp();  // p of a column, written by its row group 0, is read by its other lanes
      for (int t = n - 1; t >= 0; --t) {
        const float doj = d_o[t][w.jb], a = expf(in.g[b][t]), beta = in.beta[b][t];
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int m = 0; m < ROWS; ++m) {
          const int i = w.r * ROWS + m;
          D[m] += q[t][i] * doj;
          acc[m & 3] += D[m] * k[t][i];
        }
        const float du = row_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
        const float pj = sm.p[t][w.jb], rj = in.v[b][t][w.jb] - a * pj, dp = ERASE ? -a * beta * du : 0.f;
        if (w.r == 0) {
          if (w.col) p.dv[tok(p, w, ts + t) * p.dv_dim + w.j] = beta * du;
          sm.u[t][w.jb] = beta * rj;
          sm.dp[t][w.jb] = dp;
          sm.col_db[t][w.jb] = du * rj;
          sm.col_da[t][w.jb] = -beta * du * pj;
        }
#pragma unroll
        for (int m = 0; m < ROWS; ++m) D[m] = a * D[m] + k[t][w.r * ROWS + m] * dp;
      }
      simt::sync();
      // Sums over the block's columns, per (token, row): one thread a row walks the segment's tokens
      // backward again with its row of the adjoint (from the entering one, the walk's own updates).
      auto row_sums = [&](int i) {
        float d[BV];
#pragma unroll
        for (int jb = 0; jb < BV; ++jb) d[jb] = sm.Din[i][jb];
        for (int t = n - 1; t >= 0; --t) {
          const float qi = q[t][i], ki = k[t][i], a = expf(in.g[b][t]);
          float dkp = 0.f, dqp = 0.f, dap = 0.f;
#pragma unroll
          for (int jb = 0; jb < BV; ++jb) {
            const float Mp = sm.st[t][i][jb], dpj = sm.dp[t][jb];
            d[jb] += qi * d_o[t][jb];
            dkp += d[jb] * sm.u[t][jb] + Mp * dpj;
            dqp += sm.st[t + 1][i][jb] * d_o[t][jb];
            dap += d[jb] * Mp;
            d[jb] = a * d[jb] + ki * dpj;
          }
          sm.row_da[t][i] = dap;
          if (i < p.dk_dim) {
            const int64_t off =
                (static_cast<int64_t>(w.slice) * p.batch * p.len * p.heads + tok(p, w, ts + t)) * p.dk_dim + i;
            p.part_dq[off] = dqp;
            p.part_dk[off] = dkp;
          }
        }
      };
      if constexpr (DKP <= THREADS) {  // one row a thread
        if (tid() < DKP) row_sums(tid());
      } else {  // two rows a thread at d_k > 128
        for (int i = tid(); i < DKP; i += THREADS) row_sums(i);
      }
      simt::sync();
      // da and dβ of token t: warp t sums its rows' and columns' terms (S ≤ the block's 4 warps).
      static_assert(S <= THREADS / 32, "one warp per token of a segment");
      if (warp() < n) {
        const int t = warp();
        float da = sm.col_da[t][lane()], db = sm.col_db[t][lane()];
        for (int i = lane(); i < DKP; i += 32) da += sm.row_da[t][i];
#pragma unroll
        for (int o = 16; o > 0; o /= 2) {
          da += simt::shfl_xor(da, o);
          db += simt::shfl_xor(db, o);
        }
        const int64_t off = static_cast<int64_t>(w.slice) * p.batch * p.len * p.heads + tok(p, w, ts + t);
        if (lane() == 0) {
          p.part_da[off] = da;
          p.part_db[off] = db;
        }
      }
    }
  }
  if (p.dM0) store_state<ROWS>(D, p.dM0 + w.bh * state_elems, p, w, p.dv_dim, w.j, w.col, p.dk_dim);
}

// Element e of the gradient reductions: e < rows · qk_heads · d_k gives dq and dk of (row, q/k head,
// i), summed over the value slices and the heads of the group in order; e < tokens (rows · heads)
// also gives dg and dβ of token e, summed over the slices.
inline int64_t reduce_elems(const Params& p) {
  const int64_t rows = p.batch * p.len, qk = rows * p.qk_heads * p.dk_dim, tokens = rows * p.heads;
  return qk > tokens ? qk : tokens;
}
TTT_DEV void reduce_at(const Params& p, int64_t e) {
  const int64_t tokens = p.batch * p.len * p.heads, per_slice_qk = tokens * p.dk_dim;
  if (e < p.batch * p.len * p.qk_heads * p.dk_dim) {
    const int64_t i = e % p.dk_dim, row_group = e / p.dk_dim;
    const int64_t row = row_group / p.qk_heads, group = row_group % p.qk_heads;
    float q = 0.f, k = 0.f;
    for (int s = 0; s < p.slices; ++s)
      for (int hh = 0; hh < p.heads_per_group; ++hh) {
        const int64_t at = s * per_slice_qk + (row * p.heads + group * p.heads_per_group + hh) * p.dk_dim + i;
        q += p.part_dq[at];
        k += p.part_dk[at];
      }
    p.dq[e] = q;
    p.dk[e] = k;
  }
  if (e < tokens) {
    float a = 0.f, b = 0.f;
    for (int s = 0; s < p.slices; ++s) {
      a += p.part_da[s * tokens + e];
      b += p.part_db[s * tokens + e];
    }
    p.dg[e] = expf(p.g[e]) * a;
    p.dbeta[e] = b;
  }
}

}  // namespace ttt::cuda_impl::gdelta
