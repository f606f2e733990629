// kernels/cuda/gated_delta_chunk.cuh — the gated delta rule (kernels/gated_delta.h) in the chunked
// WY / UT form, on the CUDA cores in float32: the setup, the forward's block bodies, and the
// helpers the backward (gated_delta_chunk_bwd.cuh) shares. Written against simt.cuh, so that the
// same source runs on a GPU (gated_delta.cu launches it when GatedDeltaShape::chunked) and on the host
// SIMT emulator (tests/test_gated_delta_chunk_emulated.cpp).
//
// Why: the recurrent kernels (gated_delta.cuh) walk every token in order, and their backward walk
// is most of the layer's time (8.3 of 9.3 ms at 8 × 2048 for the 125M's shapes on an H200). Here
// only a short walk over chunks stays sequential; the work inside chunks runs chunk-parallel. The
// form is the one of fla's chunk_gated_delta_rule (fla/ops/gated_delta_rule/chunk.py, and
// fla/ops/common/chunk_delta_h.py for the walk over chunks); the code is ours.
//
// Math, per (batch, head), chunk of C tokens, local index i, state M = Sᵀ [d_k, d_v] entering it:
//   G_i = Σ_{s≤i} g_s (in the chunk),  γ_i = e^{G_i},  E_ij = e^{G_i − G_j} (j ≤ i),  c = C − 1
//   A_ij = β_i E_ij k_i·k_j (i > j, else 0),  T = (I + A)⁻¹             (erase term; else T = I, W = 0)
//   W = T diag(βγ) K,  U0 = T diag(β) V                                   (prep_block)
//   U = U0 − W M,  M ← γ_c M + Σ_j E_cj k_j U_jᵀ                          (state_block, over chunks)
//   o_i = γ_i Mᵀ q_i + Σ_{j≤i} P_ij U_j,  P_ij = E_ij q_i·k_j             (out_block)
// U are the tokens' actual updates u_t of kernels/gated_delta.h. Tokens past the end of the
// sequence are zeros with g = 0, β = 0: they leave the state as it is and add nothing.
//
// Kernels (all 128 threads; C = 32):
//  - prep_block, one block a chunk: G, P, T (backward only), W and U0 into the workspace.
//  - state_block, one block a (batch · head, 32-column value slice): the walk over chunks, keeping
//    the state entering every chunk (`states`) and replacing U0 by U.
//  - out_block, one block a chunk: o from the chunk's entering state, P and U.
// The workspace keeps, per chunk: G [C], P [C, C], T [C, C], W [C, d_k], U [C, d_v], the entering
// state [d_k, d_v]; the backward adds the adjoints and dU. Key head dims up to 128 (shared memory).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/block_mm.cuh"
#include "kernels/cuda/gated_delta_io.cuh"
#include "kernels/gated_delta.h"

namespace ttt::cuda_impl::gdchunk {

using simt::sync;
using simt::tid;

constexpr int C = 32;         // tokens a chunk
constexpr int THREADS = 128;
constexpr int VS = 32;        // value columns a state_block / dstate_block owns, and out_block's tile
constexpr int TV = 16;        // grads_block's tile of value columns (its shared memory: two blocks an SM at d_k 96)
constexpr int MAX_DK = 128;   // key head dims covered (shared memory of grads_block)
// Leading dimensions of the shared tiles, odd (block_mm.cuh: no bank conflicts in the products).
constexpr int LC = C + 1;     // [C, C]
constexpr int LV = VS + 1;    // [·, VS]
constexpr int LT = TV + 1;    // grads_block's [·, TV]
constexpr int ld_k(int dk) { return blk::odd_ld(dk); }  // [·, d_k]

struct Params {
  const float *q = nullptr, *k = nullptr, *v = nullptr, *g = nullptr, *beta = nullptr, *M0 = nullptr;
  const float *d_o = nullptr, *dM_final = nullptr;
  float *o = nullptr, *M_final = nullptr;
  float *dq = nullptr, *dk = nullptr, *dv = nullptr, *dg = nullptr, *dbeta = nullptr, *dM0 = nullptr;
  // workspace, per (batch · head, chunk): see Workspace
  float *G = nullptr, *P = nullptr, *T = nullptr, *W = nullptr, *U = nullptr, *states = nullptr;
  float *dstates = nullptr, *dU = nullptr, *part_dq = nullptr, *part_dk = nullptr;
  int64_t batch = 0, len = 0;
  int heads = 0, dk_dim = 0, dv_dim = 0, qk_heads = 0, heads_per_group = 1;
  int chunks = 0, slices = 0;
  bool erase = true;
  bool tc = false;  // the block products on the tensor cores (3xTF32: blk::mm_tc), else the CUDA cores
};

inline int64_t chunks_of(const GatedDeltaShape& s) { return (s.len + C - 1) / C; }
inline int64_t slices_of(const GatedDeltaShape& s) { return (s.dv + VS - 1) / VS; }

// Workspace floats of each array (0 where the pass does not use it).
struct Workspace {
  size_t G = 0, P = 0, T = 0, W = 0, U = 0, states = 0, dstates = 0, dU = 0, part_qk = 0;
  size_t total() const { return G + P + T + W + U + states + dstates + dU + 2 * part_qk; }
};
inline Workspace workspace_of(const GatedDeltaShape& s, bool backward) {
  const size_t n = static_cast<size_t>(s.batch * s.heads * chunks_of(s)), dk = static_cast<size_t>(s.dk),
               dv = static_cast<size_t>(s.dv);
  Workspace w;
  w.G = n * C;
  w.P = n * C * C;
  w.T = backward && s.erase ? n * C * C : 0;
  w.W = s.erase ? n * C * dk : 0;
  w.U = n * C * dv;
  w.states = n * dk * dv;
  if (backward) {
    w.dstates = n * dk * dv;
    w.dU = n * C * dv;
    w.part_qk = s.heads_per_group() > 1 ? static_cast<size_t>(s.batch * s.len * s.heads) * dk : 0;
  }
  return w;
}

inline Params params_of(const GatedDeltaShape& s, float* ws, bool backward) {
  Params p;
  set_gated_delta_sizes(p, s);
  p.chunks = static_cast<int>(chunks_of(s));
  p.slices = static_cast<int>(slices_of(s));
  p.tc = s.tensor_cores;
  const Workspace w = workspace_of(s, backward);
  float* at = ws;
  auto take = [&](size_t n) {
    float* r = n ? at : nullptr;
    at += n;
    return r;
  };
  p.G = take(w.G), p.P = take(w.P), p.T = take(w.T), p.W = take(w.W), p.U = take(w.U);
  p.states = take(w.states), p.dstates = take(w.dstates), p.dU = take(w.dU);
  p.part_dq = take(w.part_qk), p.part_dk = take(w.part_qk);
  return p;
}
// A call's parameters; `ws` has workspace_of(c.s, backward).total() floats.
template <class Call> Params params_of(const Call& c, float* ws) {
  Params p = params_of(c.s, ws, std::is_same_v<Call, GatedDeltaBackward>);
  set_gated_delta_buffers(p, c);
  return p;
}

// --- shared memory of each block (floats; host and device) -----------------------------------------
using blk::carve_floats;
constexpr int prep_smem_floats(int dk) {
  return 2 * carve_floats(C * ld_k(dk)) + 2 * carve_floats(C * LC) + carve_floats(C * LV) + 2 * carve_floats(C);
}
constexpr int state_smem_floats(int dk) {
  return carve_floats(dk * LV) + 2 * (2 * carve_floats(C * ld_k(dk)) + carve_floats(C * LV) + carve_floats(C));
}
constexpr int out_smem_floats(int dk) {
  return carve_floats(C * ld_k(dk)) + carve_floats(C * LC) + carve_floats(dk * LV) + 2 * carve_floats(C * LV) +
         carve_floats(C);
}

// --- device side -----------------------------------------------------------------------------------

// A block product (block_mm.cuh's contract) on the tensor cores or the CUDA cores, as p.tc says.
template <bool TA, bool TB>
TTT_DEV void prod(const Params& p, float* out, int ldo, const float* A, int lda, const float* B, int ldb, int M, int N,
                  int K, float alpha, float beta) {
  if (p.tc) blk::mm_tc<TA, TB>(out, ldo, A, lda, B, ldb, M, N, K, alpha, beta);
  else blk::mm<TA, TB>(out, ldo, A, lda, B, ldb, M, N, K, alpha, beta);
}

// A chunk's place: (batch · head) index, batch, head, first token and its real tokens.
struct Chunk {
  int64_t bh, b, t0;
  int h, n, len;
};
TTT_DEV Chunk chunk_at(const Params& p, int64_t bh, int n) {
  Chunk c;
  c.bh = bh;
  c.b = bh / p.heads;
  c.h = static_cast<int>(bh % p.heads);
  c.n = n;
  c.t0 = static_cast<int64_t>(n) * C;
  const int64_t left = p.len - c.t0;
  c.len = left < C ? static_cast<int>(left) : C;
  return c;
}
// The chunk of a per-chunk kernel's block.
TTT_DEV Chunk chunk_of_block(const Params& p, int64_t block) {
  return chunk_at(p, block / p.chunks, static_cast<int>(block % p.chunks));
}
// Workspace offsets of the chunk's arrays.
TTT_DEV int64_t at_chunk(const Chunk& c, const Params& p) { return c.bh * p.chunks + c.n; }
// Element offsets of token t (local) of the chunk in the [B, T, H, ·] / [B, T, H] buffers and in q, k.
TTT_DEV int64_t tok(const Params& p, const Chunk& c, int t) { return (c.b * p.len + c.t0 + t) * p.heads + c.h; }
TTT_DEV int64_t tok_qk(const Params& p, const Chunk& c, int t) {
  return (c.b * p.len + c.t0 + t) * p.qk_heads + c.h / p.heads_per_group;
}

// One float from src to dst: a plain copy, or with Async a cp.async (4 bytes, any alignment) that the
// caller commits, waits for and syncs on before reading.
template <bool Async> TTT_DEV void put(float* dst, const float* src) {
  if constexpr (Async) simt::cp_async4(dst, src);
  else *dst = *src;
}

// Loads into shared tiles of leading dimension `ld`, plain or (Async) by cp.async for the walks over
// chunks, which stage the next chunk while they compute on this one. Elements past the chunk's
// tokens or the columns are stored as zeros directly.
// [C, d_k] rows of q or k of the chunk.
template <bool Async = false>
TTT_DEV void load_qk(float* dst, int ld, const float* src, const Params& p, const Chunk& c) {
  const int dk = p.dk_dim;
  for (int e = tid(); e < C * dk; e += THREADS) {
    const int t = e / dk, i = e % dk;
    if (t < c.len) put<Async>(&dst[t * ld + i], src + tok_qk(p, c, t) * dk + i);
    else dst[t * ld + i] = 0.f;
  }
}
// [C, w] columns c0 .. c0 + w of a [B, T, H, d_v] buffer (zeros too when src is null).
template <bool Async = false>
TTT_DEV void load_cols(float* dst, int ld, const float* src, const Params& p, const Chunk& c, int c0, int w) {
  for (int e = tid(); e < C * w; e += THREADS) {
    const int t = e / w, j = c0 + e % w;
    if (src && t < c.len && j < p.dv_dim) put<Async>(&dst[t * ld + e % w], src + tok(p, c, t) * p.dv_dim + j);
    else dst[t * ld + e % w] = 0.f;
  }
}
// [C] values of a [B, T, H] buffer.
TTT_DEV void load_tokens(float* dst, const float* src, const Params& p, const Chunk& c) {
  for (int t = tid(); t < C; t += THREADS) dst[t] = t < c.len ? src[tok(p, c, t)] : 0.f;
}
// A [rows, cols] matrix between leading dimensions (shared <-> global, either way; Async: global to
// shared only).
template <bool Async = false>
TTT_DEV void copy_rows(float* dst, int ldd, const float* src, int lds, int rows, int cols) {
  for (int e = tid(); e < rows * cols; e += THREADS)
    put<Async>(&dst[(e / cols) * ldd + e % cols], src + (e / cols) * lds + e % cols);
}
// n consecutive floats.
TTT_DEV void copy_vec(float* dst, const float* src, int n) { copy_rows(dst, n, src, n, 1, n); }
// A [rows, w] tile of columns c0 .. of a dense [rows, d_v] array into a shared tile (src null: zeros),
// and back (columns past d_v not written).
template <bool Async = false>
TTT_DEV void tile_in(float* dst, int ld, const float* src, int rows, int dv, int c0, int w) {
  for (int e = tid(); e < rows * w; e += THREADS) {
    const int r = e / w, j = c0 + e % w;
    if (src && j < dv) put<Async>(&dst[r * ld + e % w], src + static_cast<int64_t>(r) * dv + j);
    else dst[r * ld + e % w] = 0.f;
  }
}
TTT_DEV void tile_out(float* dst, const float* src, int ld, int rows, int dv, int c0, int w) {
  for (int e = tid(); e < rows * w; e += THREADS) {
    const int r = e / w, j = c0 + e % w;
    if (j < dv) dst[static_cast<int64_t>(r) * dv + j] = src[r * ld + e % w];
  }
}
// Columns of the tile from c0 of width w that exist (d_v − c0 for the last).
TTT_DEV int tile_cols(int dv, int c0, int w) { return dv - c0 < w ? dv - c0 : w; }
// Waits for the group staging this chunk; `next` says whether a later group (the next chunk's) was
// committed after it and may stay in flight.
TTT_DEV void wait_stage(bool next) {
  if (next) simt::cp_async_wait_group<1>();
  else simt::cp_async_wait_all();
}

// Row t of a shared [C, cols] tile (leading dimension ld) times s[t], in place.
TTT_DEV void scale_rows(float* x, int ld, int cols, const float* s) {
  for (int e = tid(); e < C * cols; e += THREADS) x[(e / cols) * ld + e % cols] *= s[e / cols];
}
// E_cj k_j: the rows of k as they enter the state update (Kd), in place from raw k rows and G.
TTT_DEV void decay_to_last(float* kd, int ld, const float* G, int dk) {
  for (int e = tid(); e < C * dk; e += THREADS) kd[(e / dk) * ld + e % dk] *= expf(G[C - 1] - G[e / dk]);
}

// T = (I + A)⁻¹ for a strictly lower A [C, C] (both of leading dimension LC) by forward
// substitution, one row at a time: T_ik = −A_ik − Σ_{k<j<i} A_ij T_jk for k < i, T_ii = 1.
TTT_DEV void unit_lower_inverse(float* T, const float* A) {
  for (int e = tid(); e < C * C; e += THREADS) T[(e / C) * LC + e % C] = (e / C == e % C) ? 1.f : 0.f;
  sync();
  for (int i = 1; i < C; ++i) {
    for (int k = tid(); k < i; k += THREADS) {
      float s = -A[i * LC + k];
      for (int j = k + 1; j < i; ++j) s = fmaf(-A[i * LC + j], T[j * LC + k], s);
      T[i * LC + k] = s;
    }
    sync();
  }
}

// --- forward blocks --------------------------------------------------------------------------------

// One chunk: G (the gates' cumulative sum), P, and with the erase term A, T (kept when p.T), W; then
// U0 = T diag(β) V (or diag(β) V) into p.U.
template <bool ERASE>
TTT_DEV void prep_block(const Params& p, int64_t block, char* smem) {
  const Chunk c = chunk_of_block(p, block);
  const int dk = p.dk_dim, lk = ld_k(dk), dv = p.dv_dim;
  const int64_t at = at_chunk(c, p);
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float *K = cv.take(C * lk), *X = cv.take(C * lk), *S = cv.take(C * LC), *Tm = cv.take(C * LC), *Vt = cv.take(C * LV);
  float *G = cv.take(C), *Bt = cv.take(C);
  load_qk(K, lk, p.k, p, c);
  load_qk(X, lk, p.q, p, c);
  load_tokens(G, p.g, p, c);
  load_tokens(Bt, p.beta, p, c);
  sync();
  if (tid() == 0)
    for (int i = 1; i < C; ++i) G[i] += G[i - 1];
  sync();
  copy_vec(p.G + at * C, G, C);
  // P = (Q Kᵀ) ∘ E, causal (j ≤ i)
  prod<false, true>(p, S, LC, X, lk, K, lk, C, C, dk, 1.f, 0.f);
  sync();
  for (int e = tid(); e < C * C; e += THREADS) {
    const int i = e / C, j = e % C;
    p.P[at * C * C + e] = j <= i ? S[i * LC + j] * expf(G[i] - G[j]) : 0.f;
  }
  if constexpr (ERASE) {
    sync();  // P has read S
    prod<false, true>(p, S, LC, K, lk, K, lk, C, C, dk, 1.f, 0.f);  // K Kᵀ
    sync();
    for (int e = tid(); e < C * C; e += THREADS) {
      const int i = e / C, j = e % C;
      S[i * LC + j] = j < i ? Bt[i] * expf(G[i] - G[j]) * S[i * LC + j] : 0.f;  // A
    }
    sync();
    unit_lower_inverse(Tm, S);
    if (p.T) copy_rows(p.T + at * C * C, C, Tm, LC, C, C);
    for (int e = tid(); e < C * dk; e += THREADS) {
      const int t = e / dk, i = t * lk + e % dk;
      X[i] = K[i] * Bt[t] * expf(G[t]);  // diag(βγ) K
    }
    sync();
    prod<false, false>(p, p.W + at * C * dk, dk, Tm, LC, X, lk, C, dk, C, 1.f, 0.f);
  }
  for (int c0 = 0; c0 < dv; c0 += VS) {
    sync();  // the previous tile's product has read Vt
    load_cols(Vt, LV, p.v, p, c, c0, VS);
    sync();
    scale_rows(Vt, LV, VS, Bt);  // diag(β) V
    sync();
    const int nc = tile_cols(dv, c0, VS);
    float* U0 = p.U + at * C * dv + c0;
    if constexpr (ERASE) {
      prod<false, false>(p, U0, dv, Tm, LC, Vt, LV, C, nc, C, 1.f, 0.f);
    } else {
      for (int e = tid(); e < C * VS; e += THREADS)
        if (e % VS < nc) U0[(e / VS) * dv + e % VS] = Vt[(e / VS) * LV + e % VS];
    }
  }
}

// The walk over the chunks of one (batch · head, value slice): the entering state of every chunk
// into p.states, U = U0 − W M in place of U0, and the final state into p.M_final when asked. The
// next chunk's W, k, G and U0 arrive (cp.async, two buffer sets) while this one's products run.
template <bool ERASE>
TTT_DEV void state_block(const Params& p, int64_t block, char* smem) {
  const int64_t bh = block / p.slices;
  const int c0 = static_cast<int>(block % p.slices) * VS, dk = p.dk_dim, lk = ld_k(dk), dv = p.dv_dim;
  const int nc = tile_cols(dv, c0, VS);
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float* M = cv.take(dk * LV);
  struct Stage {
    float *W, *K, *U, *G;
  };
  // Two sets, picked by value (registers; an indexed array would live in local memory).
  const Stage st0 = {cv.take(C * lk), cv.take(C * lk), cv.take(C * LV), cv.take(C)};
  const Stage st1 = {cv.take(C * lk), cv.take(C * lk), cv.take(C * LV), cv.take(C)};
  auto stage = [&](int n, Stage b) {
    const Chunk c = chunk_at(p, bh, n);
    const int64_t at = at_chunk(c, p);
    if constexpr (ERASE) copy_rows<true>(b.W, lk, p.W + at * C * dk, dk, C, dk);
    load_qk<true>(b.K, lk, p.k, p, c);
    copy_rows<true>(b.G, C, p.G + at * C, C, 1, C);
    tile_in<true>(b.U, LV, p.U + at * C * dv, C, dv, c0, VS);
    simt::cp_async_commit();
  };
  tile_in(M, LV, p.M0 ? p.M0 + bh * dk * dv : nullptr, dk, dv, c0, VS);
  stage(0, st0);
  for (int n = 0; n < p.chunks; ++n) {
    const Stage b = (n & 1) ? st1 : st0;
    const int64_t at = at_chunk(chunk_at(p, bh, n), p);
    sync();  // M is complete; the previous chunk's products are done with the other buffer set
    if (n + 1 < p.chunks) stage(n + 1, (n & 1) ? st0 : st1);
    wait_stage(n + 1 < p.chunks);
    sync();  // this chunk's buffers have arrived, every thread's copies
    tile_out(p.states + at * dk * dv, M, LV, dk, dv, c0, VS);
    decay_to_last(b.K, lk, b.G, dk);
    sync();
    if constexpr (ERASE) {
      prod<false, false>(p, b.U, LV, b.W, lk, M, LV, C, nc, dk, -1.f, 1.f);  // U = U0 − W M
    }
    sync();
    tile_out(p.U + at * C * dv, b.U, LV, C, dv, c0, VS);
    prod<true, false>(p, M, LV, b.K, lk, b.U, LV, dk, nc, C, 1.f, expf(b.G[C - 1]));  // M ← γ_c M + Kdᵀ U
  }
  sync();
  if (p.M_final) tile_out(p.M_final + bh * dk * dv, M, LV, dk, dv, c0, VS);
}

// One chunk's outputs, a value tile at a time: o = diag(γ) Q M + P U.
TTT_DEV void out_block(const Params& p, int64_t block, char* smem) {
  const Chunk c = chunk_of_block(p, block);
  const int dk = p.dk_dim, lk = ld_k(dk), dv = p.dv_dim;
  const int64_t at = at_chunk(c, p);
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float *Qg = cv.take(C * lk), *Pm = cv.take(C * LC), *Mt = cv.take(dk * LV), *Ut = cv.take(C * LV),
        *Ot = cv.take(C * LV), *G = cv.take(C);
  copy_vec(G, p.G + at * C, C);
  copy_rows(Pm, LC, p.P + at * C * C, C, C, C);
  sync();
  load_qk(Qg, lk, p.q, p, c);
  for (int t = tid(); t < C; t += THREADS) G[t] = expf(G[t]);  // γ
  sync();
  scale_rows(Qg, lk, dk, G);  // diag(γ) Q
  for (int c0 = 0; c0 < dv; c0 += VS) {
    const int nc = tile_cols(dv, c0, VS);
    tile_in(Mt, LV, p.states + at * dk * dv, dk, dv, c0, VS);
    tile_in(Ut, LV, p.U + at * C * dv, C, dv, c0, VS);
    sync();
    prod<false, false>(p, Ot, LV, Qg, lk, Mt, LV, C, nc, dk, 1.f, 0.f);
    prod<false, false>(p, Ot, LV, Pm, LC, Ut, LV, C, nc, C, 1.f, 1.f);
    sync();
    for (int e = tid(); e < C * VS; e += THREADS) {
      const int t = e / VS, j = c0 + e % VS;
      if (t < c.len && j < dv) p.o[tok(p, c, t) * dv + j] = Ot[t * LV + e % VS];
    }
    sync();  // Ot, Mt, Ut are refilled next
  }
}

}  // namespace ttt::cuda_impl::gdchunk
