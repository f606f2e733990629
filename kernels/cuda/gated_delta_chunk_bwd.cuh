// kernels/cuda/gated_delta_chunk_bwd.cuh — the backward blocks of the chunked gated delta rule
// (math and forward in gated_delta_chunk.cuh; fla's chunk_gated_delta_rule_bwd has the same steps).
// The launcher first re-runs prep_block (keeping T) and state_block (keeping the entering states
// and U), then:
//  - dstate_block, one block a (batch · head, value slice), over the chunks in reverse, with the
//    adjoint D = dL/dM of the state leaving the chunk:
//      dU = Pᵀ dO + Kd D,   D ← γ_c D + (diag(γ) Q)ᵀ dO − Wᵀ dU       (Kd_j = E_cj k_j)
//    keeping D (as it enters each chunk's step) and dU; the last D is dM0.
//  - grads_block, one block a chunk: with M (entering) and D (leaving) of the chunk,
//      dQ = diag(γ) dO Mᵀ + (dP ∘ E) K,  dP = dO Uᵀ
//      dK = diag(E_c·) U Dᵀ + (dP ∘ E)ᵀ Q + diag(βγ) Y + dKK K + dKKᵀ K
//      Y = Tᵀ dW, dW = −dU Mᵀ;  dV = diag(β) Tᵀ dU;  dT = dW (diag(βγ) K)ᵀ + dU (diag(β) V)ᵀ
//      dA = −Tᵀ dT Tᵀ (strictly lower), dKK_ij = dA_ij β_i E_ij
//    dβ and dG (the gradient w.r.t. the cumulative gates) collect every term in which β, γ, E enter;
//    dg is dG's reverse cumulative sum in the chunk. Without the erase term T = I, W = 0 and the
//    T, W, A terms vanish (U = diag(β) V).
//  - with groups of heads sharing q and k, dq and dk of each head go to a buffer and reduce_at adds
//    them in head order (no atomics: runs reproduce bit for bit).
#pragma once

#include "kernels/cuda/gated_delta_chunk.cuh"

namespace ttt::cuda_impl::gdchunk {

constexpr int dstate_smem_floats(int dk) {
  return carve_floats(dk * LV) + carve_floats(C * LV) + carve_floats(C) +
         2 * (3 * carve_floats(C * ld_k(dk)) + carve_floats(C * LC) + carve_floats(C * LV) + carve_floats(C));
}
// The tile region of grads_block: the value tiles in the loop over d_v, then Y [C, d_k].
constexpr int grads_tiles_floats(int dk) { return 4 * carve_floats(C * LT) + 2 * carve_floats(dk * LT); }
constexpr int grads_smem_floats(int dk) {
  return 5 * carve_floats(C * ld_k(dk)) + 4 * carve_floats(C * LC) + grads_tiles_floats(dk) + 7 * carve_floats(C) +
         carve_floats(THREADS);
}
static_assert(grads_tiles_floats(1) >= C * ld_k(1) && grads_tiles_floats(MAX_DK) >= C * ld_k(MAX_DK),
              "Y [C, d_k] fits the tile region");

// The next chunk's (in reverse) W, k, q, P, dO and G arrive (cp.async, two buffer sets) while this
// one's products run.
template <bool ERASE>
TTT_DEV void dstate_block(const Params& p, int64_t block, char* smem) {
  const int64_t bh = block / p.slices;
  const int c0 = static_cast<int>(block % p.slices) * VS, dk = p.dk_dim, lk = ld_k(dk), dv = p.dv_dim;
  const int nc = tile_cols(dv, c0, VS);
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float *D = cv.take(dk * LV), *dUt = cv.take(C * LV), *gam = cv.take(C);
  struct Stage {
    float *W, *K, *Q, *P, *dO, *G;
  };
  // Two sets, picked by value (registers; an indexed array would live in local memory).
  const Stage st0 = {cv.take(C * lk), cv.take(C * lk), cv.take(C * lk), cv.take(C * LC), cv.take(C * LV), cv.take(C)};
  const Stage st1 = {cv.take(C * lk), cv.take(C * lk), cv.take(C * lk), cv.take(C * LC), cv.take(C * LV), cv.take(C)};
  auto stage = [&](int n, Stage b) {
    const Chunk c = chunk_at(p, bh, n);
    const int64_t at = at_chunk(c, p);
    if constexpr (ERASE) copy_rows<true>(b.W, lk, p.W + at * C * dk, dk, C, dk);
    load_qk<true>(b.K, lk, p.k, p, c);
    load_qk<true>(b.Q, lk, p.q, p, c);
    copy_rows<true>(b.P, LC, p.P + at * C * C, C, C, C);
    load_cols<true>(b.dO, LV, p.d_o, p, c, c0, VS);
    copy_rows<true>(b.G, C, p.G + at * C, C, 1, C);
    simt::cp_async_commit();
  };
  tile_in(D, LV, p.dM_final ? p.dM_final + bh * dk * dv : nullptr, dk, dv, c0, VS);
  stage(p.chunks - 1, st0);
  for (int i = 0; i < p.chunks; ++i) {
    const int n = p.chunks - 1 - i;
    const Stage b = (i & 1) ? st1 : st0;
    const int64_t at = at_chunk(chunk_at(p, bh, n), p);
    sync();  // D is complete; the previous step's products are done with the other buffer set
    if (n > 0) stage(n - 1, (i & 1) ? st0 : st1);
    wait_stage(n > 0);
    sync();  // this chunk's buffers have arrived, every thread's copies
    tile_out(p.dstates + at * dk * dv, D, LV, dk, dv, c0, VS);
    for (int t = tid(); t < C; t += THREADS) gam[t] = expf(b.G[t]);
    decay_to_last(b.K, lk, b.G, dk);
    sync();
    scale_rows(b.Q, lk, dk, gam);  // diag(γ) Q
    prod<true, false>(p, dUt, LV, b.P, LC, b.dO, LV, C, nc, C, 1.f, 0.f);  // Pᵀ dO
    prod<false, false>(p, dUt, LV, b.K, lk, D, LV, C, nc, dk, 1.f, 1.f);  // + Kd D
    sync();
    tile_out(p.dU + at * C * dv, dUt, LV, C, dv, c0, VS);
    prod<true, false>(p, D, LV, b.Q, lk, b.dO, LV, dk, nc, C, 1.f, gam[C - 1]);  // γ_c D + (diag(γ) Q)ᵀ dO
    if constexpr (ERASE) prod<true, false>(p, D, LV, b.W, lk, dUt, LV, dk, nc, C, -1.f, 1.f);  // − Wᵀ dU
  }
  sync();
  if (p.dM0) tile_out(p.dM0 + bh * dk * dv, D, LV, dk, dv, c0, VS);
}

// Per row a of the chunk: out[a] (+)= sign · Σ_b f(a, b) (by_row) or Σ_b f(b, a) (the column),
// one thread a row. Caller syncs after.
template <class F> TTT_DEV void row_sums(float* out, bool by_row, float sign, F f) {
  for (int a = tid(); a < C; a += THREADS) {
    float s = 0.f;
    for (int b = 0; b < C; ++b) s += by_row ? f(a, b) : f(b, a);
    out[a] += sign * s;
  }
}

template <bool ERASE>
TTT_DEV void grads_block(const Params& p, int64_t block, char* smem) {
  const Chunk c = chunk_of_block(p, block);
  const int dk = p.dk_dim, lk = ld_k(dk), dv = p.dv_dim;
  const int64_t at = at_chunk(c, p);
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float *K = cv.take(C * lk), *Q = cv.take(C * lk), *dQ = cv.take(C * lk), *dK = cv.take(C * lk), *dW = cv.take(C * lk);
  float *Tm = cv.take(C * LC), *dP = cv.take(C * LC), *dT = cv.take(C * LC), *S = cv.take(C * LC);
  float* tiles = cv.take(grads_tiles_floats(dk));
  float *Dt = tiles, *Ut = Dt + C * LT, *dUt = Ut + C * LT, *Vt = dUt + C * LT, *Mt = Vt + C * LT, *dMt = Mt + dk * LT;
  float* Y = tiles;  // [C, d_k] (leading dimension lk) after the loop over d_v
  float *G = cv.take(C), *gam = cv.take(C), *Bt = cv.take(C), *dG = cv.take(C), *dB = cv.take(C), *r1 = cv.take(C),
        *r2 = cv.take(C), *red = cv.take(THREADS);
  // Element e of a [C, d_k] tile: its row and its offset in shared memory.
  auto row_k = [&](int e) { return e / dk; };
  auto at_k = [&](int e) { return (e / dk) * lk + e % dk; };
  auto E = [&](int i, int j) { return expf(G[i] - G[j]); };
  load_qk(K, lk, p.k, p, c);
  load_qk(Q, lk, p.q, p, c);
  copy_vec(G, p.G + at * C, C);
  load_tokens(Bt, p.beta, p, c);
  if constexpr (ERASE) copy_rows(Tm, LC, p.T + at * C * C, C, C, C);
  for (int t = tid(); t < C; t += THREADS) dB[t] = 0.f;
  sync();
  for (int t = tid(); t < C; t += THREADS) gam[t] = expf(G[t]);
  // Products over d_v, a tile at a time: dQ = dO Mᵀ, dK = U Dᵀ, dW = dU Mᵀ, dP = dO Uᵀ, dT = dU Vᵀ,
  // <M, D>; and dV, the V part of dβ.
  float mdm = 0.f;
  for (int c0 = 0; c0 < dv; c0 += TV) {
    const int nc = tile_cols(dv, c0, TV);
    const float acc = c0 > 0 ? 1.f : 0.f;
    load_cols(Dt, LT, p.d_o, p, c, c0, TV);
    tile_in(Ut, LT, p.U + at * C * dv, C, dv, c0, TV);
    tile_in(dUt, LT, p.dU + at * C * dv, C, dv, c0, TV);
    load_cols(Vt, LT, p.v, p, c, c0, TV);
    tile_in(Mt, LT, p.states + at * dk * dv, dk, dv, c0, TV);
    tile_in(dMt, LT, p.dstates + at * dk * dv, dk, dv, c0, TV);
    sync();
    prod<false, true>(p, dQ, lk, Dt, LT, Mt, LT, C, dk, nc, 1.f, acc);
    prod<false, true>(p, dK, lk, Ut, LT, dMt, LT, C, dk, nc, 1.f, acc);
    if constexpr (ERASE) prod<false, true>(p, dW, lk, dUt, LT, Mt, LT, C, dk, nc, 1.f, acc);
    prod<false, true>(p, dP, LC, Dt, LT, Ut, LT, C, C, nc, 1.f, acc);
    if constexpr (ERASE) prod<false, true>(p, dT, LC, dUt, LT, Vt, LT, C, C, nc, 1.f, acc);
    for (int e = tid(); e < dk * TV; e += THREADS) {
      const int o = (e / TV) * LT + e % TV;
      mdm = fmaf(Mt[o], dMt[o], mdm);
    }
    sync();
    float* dU0 = dUt;  // d(diag(β) V): Tᵀ dU, or dU itself without the erase term
    if constexpr (ERASE) {
      prod<true, false>(p, Ut, LT, Tm, LC, dUt, LT, C, nc, C, 1.f, 0.f);
      dU0 = Ut;
      sync();
    }
    for (int e = tid(); e < C * TV; e += THREADS) {
      const int t = e / TV, j = c0 + e % TV;
      if (t < c.len && j < dv) p.dv[tok(p, c, t) * dv + j] = Bt[t] * dU0[t * LT + e % TV];
    }
    blk::row_dots(dB, Vt, LT, dU0, LT, C, TV, true);
    sync();  // the next tile overwrites the buffers
  }
  red[tid()] = mdm;
  sync();
  if (tid() == 0) {
    float s = 0.f;
    for (int i = 0; i < THREADS; ++i) s += red[i];
    red[0] = s;  // <M, D>
  }
  // (a) dQ = diag(γ) dO Mᵀ and dK = diag(E_c·) U Dᵀ, with their gate terms.
  blk::row_dots(r1, Q, lk, dQ, lk, C, dk, false);
  blk::row_dots(r2, K, lk, dK, lk, C, dk, false);
  sync();
  for (int t = tid(); t < C; t += THREADS) dG[t] = gam[t] * r1[t] - E(C - 1, t) * r2[t];
  for (int e = tid(); e < C * dk; e += THREADS) {
    dQ[at_k(e)] *= gam[row_k(e)];
    dK[at_k(e)] *= E(C - 1, row_k(e));
  }
  sync();
  if (tid() == 0) {
    float s = gam[C - 1] * red[0];
    for (int t = 0; t < C; ++t) s += E(C - 1, t) * r2[t];
    dG[C - 1] += s;
  }
  // (b) the intra-chunk outputs: P = (Q Kᵀ) ∘ E.
  prod<false, true>(p, S, LC, Q, lk, K, lk, C, C, dk, 1.f, 0.f);
  sync();
  for (int e = tid(); e < C * C; e += THREADS) {
    const int i = e / C, j = e % C;
    dP[i * LC + j] = j <= i ? dP[i * LC + j] * E(i, j) : 0.f;
  }
  sync();
  auto dP_S = [&](int i, int j) { return dP[i * LC + j] * S[i * LC + j]; };
  row_sums(dG, true, 1.f, dP_S);
  sync();
  row_sums(dG, false, -1.f, dP_S);
  prod<false, false>(p, dQ, lk, dP, LC, K, lk, C, dk, C, 1.f, 1.f);
  prod<true, false>(p, dK, lk, dP, LC, Q, lk, C, dk, C, 1.f, 1.f);
  sync();
  if constexpr (ERASE) {
    // (c) W = T diag(βγ) K, U0 = T diag(β) V and T = (I + A)⁻¹.
    for (int e = tid(); e < C * dk; e += THREADS) Q[at_k(e)] = K[at_k(e)] * Bt[row_k(e)] * gam[row_k(e)];  // X
    for (int e = tid(); e < C * C; e += THREADS) dT[(e / C) * LC + e % C] *= Bt[e % C];  // dU Vᵀ diag(β)
    sync();
    prod<false, true>(p, dT, LC, dW, lk, Q, lk, C, C, dk, -1.f, 1.f);  // + dW_true Xᵀ, dW_true = −dW
    prod<true, false>(p, Y, lk, Tm, LC, dW, lk, C, dk, C, -1.f, 0.f);  // Y = Tᵀ dW_true
    sync();
    blk::row_dots(r1, K, lk, Y, lk, C, dk, false);
    prod<true, false>(p, S, LC, Tm, LC, dT, LC, C, C, C, 1.f, 0.f);  // Tᵀ dT
    sync();
    for (int t = tid(); t < C; t += THREADS) {
      dB[t] += gam[t] * r1[t];
      dG[t] += Bt[t] * gam[t] * r1[t];
    }
    for (int e = tid(); e < C * dk; e += THREADS) dK[at_k(e)] = fmaf(Bt[row_k(e)] * gam[row_k(e)], Y[at_k(e)], dK[at_k(e)]);
    prod<false, true>(p, dP, LC, S, LC, Tm, LC, C, C, C, -1.f, 0.f);  // dA = −Tᵀ dT Tᵀ (lower part used)
    sync();
    prod<false, true>(p, S, LC, K, lk, K, lk, C, C, dk, 1.f, 0.f);  // K Kᵀ
    sync();
    // A_ij = β_i E_ij (K Kᵀ)_ij for i > j
    auto dA_A = [&](int i, int j) { return j < i ? dP[i * LC + j] * Bt[i] * E(i, j) * S[i * LC + j] : 0.f; };
    row_sums(dG, true, 1.f, dA_A);
    row_sums(dB, true, 1.f, [&](int i, int j) { return j < i ? dP[i * LC + j] * E(i, j) * S[i * LC + j] : 0.f; });
    sync();
    row_sums(dG, false, -1.f, dA_A);
    sync();
    for (int e = tid(); e < C * C; e += THREADS) {
      const int i = e / C, j = e % C;
      dP[i * LC + j] = j < i ? dP[i * LC + j] * Bt[i] * E(i, j) : 0.f;  // dKK
    }
    sync();
    prod<false, false>(p, dK, lk, dP, LC, K, lk, C, dk, C, 1.f, 1.f);
    prod<true, false>(p, dK, lk, dP, LC, K, lk, C, dk, C, 1.f, 1.f);
    sync();
  }
  if (tid() == 0)
    for (int t = C - 2; t >= 0; --t) dG[t] += dG[t + 1];  // dg_s = Σ_{t ≥ s} dG_t
  sync();
  const bool shared_qk = p.heads_per_group > 1;
  for (int e = tid(); e < C * dk; e += THREADS) {
    const int t = e / dk, i = e % dk;
    if (t >= c.len) continue;
    const int64_t o = (shared_qk ? tok(p, c, t) : tok_qk(p, c, t)) * dk + i;
    (shared_qk ? p.part_dq : p.dq)[o] = dQ[at_k(e)];
    (shared_qk ? p.part_dk : p.dk)[o] = dK[at_k(e)];
  }
  for (int t = tid(); t < c.len; t += THREADS) {
    p.dg[tok(p, c, t)] = dG[t];
    p.dbeta[tok(p, c, t)] = dB[t];
  }
}

// With groups of heads sharing q and k: element e of dq and dk [B, T, qk_heads, d_k] is the sum of
// its heads' parts, in head order.
inline int64_t reduce_elems(const Params& p) { return p.batch * p.len * p.qk_heads * p.dk_dim; }
TTT_DEV void reduce_at(const Params& p, int64_t e) {
  const int64_t i = e % p.dk_dim, row_group = e / p.dk_dim;
  const int64_t row = row_group / p.qk_heads, group = row_group % p.qk_heads;
  float q = 0.f, k = 0.f;
  for (int hh = 0; hh < p.heads_per_group; ++hh) {
    const int64_t at = (row * p.heads + group * p.heads_per_group + hh) * p.dk_dim + i;
    q += p.part_dq[at];
    k += p.part_dk[at];
  }
  p.dq[e] = q;
  p.dk[e] = k;
}

}  // namespace ttt::cuda_impl::gdchunk
