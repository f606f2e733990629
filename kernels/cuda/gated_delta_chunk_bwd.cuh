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
  return carve_floats(dk * VS) + carve_floats(C * VS) + carve_floats(C) +
         2 * (3 * carve_floats(C * dk) + carve_floats(C * C) + carve_floats(C * VS) + carve_floats(C));
}
// The tile region of grads_block: the value tiles in the loop over d_v, then Y [C, d_k].
constexpr int grads_tiles_floats(int dk) { return 4 * carve_floats(C * TV) + 2 * carve_floats(dk * TV); }
constexpr int grads_smem_floats(int dk) {
  return 5 * carve_floats(C * dk) + 4 * carve_floats(C * C) + grads_tiles_floats(dk) + 7 * carve_floats(C) +
         carve_floats(THREADS);
}

// The next chunk's (in reverse) W, k, q, P, dO and G arrive (cp.async, two buffer sets) while this
// one's products run.
template <bool ERASE>
TTT_DEV void dstate_block(const Params& p, int64_t block, char* smem) {
  const int64_t bh = block / p.slices;
  const int c0 = static_cast<int>(block % p.slices) * VS, dk = p.dk_dim, dv = p.dv_dim;
  const int nc = dv - c0 < VS ? dv - c0 : VS;
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float *D = cv.take(dk * VS), *dUt = cv.take(C * VS), *gam = cv.take(C);
  struct Stage {
    float *W, *K, *Q, *P, *dO, *G;
  };
  // Two sets, picked by value (registers; an indexed array would live in local memory).
  const Stage st0 = {cv.take(C * dk), cv.take(C * dk), cv.take(C * dk), cv.take(C * C), cv.take(C * VS), cv.take(C)};
  const Stage st1 = {cv.take(C * dk), cv.take(C * dk), cv.take(C * dk), cv.take(C * C), cv.take(C * VS), cv.take(C)};
  auto stage = [&](int n, const Stage& b) {
    const Chunk c = chunk_at(p, bh, n);
    const int64_t at = at_chunk(c, p);
    if constexpr (ERASE) copy_async(b.W, p.W + at * C * dk, C * dk);
    load_qk_async(b.K, p.k, p, c);
    load_qk_async(b.Q, p.q, p, c);
    copy_async(b.P, p.P + at * C * C, C * C);
    load_cols_async(b.dO, p.d_o, p, c, c0);
    copy_async(b.G, p.G + at * C, C);
    simt::cp_async_commit();
  };
  tile_in(D, p.dM_final ? p.dM_final + bh * dk * dv : nullptr, dk, dv, c0);
  stage(p.chunks - 1, st0);
  for (int i = 0; i < p.chunks; ++i) {
    const int n = p.chunks - 1 - i;
    const Stage b = (i & 1) ? st1 : st0;
    const int64_t at = at_chunk(chunk_at(p, bh, n), p);
    sync();  // D is complete; the previous step's products are done with the other buffer set
    if (n > 0) stage(n - 1, (i & 1) ? st0 : st1);
    wait_stage(n > 0);
    sync();  // this chunk's buffers have arrived, every thread's copies
    tile_out(p.dstates + at * dk * dv, D, dk, dv, c0);
    for (int t = tid(); t < C; t += THREADS) gam[t] = expf(b.G[t]);
    decay_to_last(b.K, b.G, dk);
    sync();
    for (int e = tid(); e < C * dk; e += THREADS) b.Q[e] *= gam[e / dk];  // diag(γ) Q
    blk::mm<true, false>(dUt, VS, b.P, C, b.dO, VS, C, nc, C, 1.f, 0.f);  // Pᵀ dO
    blk::mm<false, false>(dUt, VS, b.K, dk, D, VS, C, nc, dk, 1.f, 1.f);  // + Kd D
    sync();
    tile_out(p.dU + at * C * dv, dUt, C, dv, c0);
    blk::mm<true, false>(D, VS, b.Q, dk, b.dO, VS, dk, nc, C, 1.f, gam[C - 1]);  // γ_c D + (diag(γ) Q)ᵀ dO
    if constexpr (ERASE) blk::mm<true, false>(D, VS, b.W, dk, dUt, VS, dk, nc, C, -1.f, 1.f);  // − Wᵀ dU
  }
  sync();
  if (p.dM0) tile_out(p.dM0 + bh * dk * dv, D, dk, dv, c0);
}

// Per row i of the chunk: out[i] (+)= Σ_j f(i, j) over j in the row (by_row) or over i in column j
// (the transpose), one thread a row; f sees i, j. Caller syncs after.
template <class F> TTT_DEV void row_sums(float* out, bool by_row, float sign, F f) {
  for (int a = tid(); a < C; a += THREADS) {
    float s = 0.f;
    for (int b = 0; b < C; ++b) s += by_row ? f(a, b) : f(b, a);
    out[a] += sign * s;
  }
}

template <bool ERASE>
TTT_DEV void grads_block(const Params& p, int64_t block, char* smem) {
  const Chunk c = chunk_at(p, block / p.chunks, static_cast<int>(block % p.chunks));
  const int dk = p.dk_dim, dv = p.dv_dim;
  const int64_t at = at_chunk(c, p);
  blk::Carve cv{reinterpret_cast<float*>(smem)};
  float *K = cv.take(C * dk), *Q = cv.take(C * dk), *dQ = cv.take(C * dk), *dK = cv.take(C * dk), *dW = cv.take(C * dk);
  float *Tm = cv.take(C * C), *dP = cv.take(C * C), *dT = cv.take(C * C), *S = cv.take(C * C);
  float* tiles = cv.take(grads_tiles_floats(dk));
  float *Dt = tiles, *Ut = Dt + C * TV, *dUt = Ut + C * TV, *Vt = dUt + C * TV, *Mt = Vt + C * TV, *dMt = Mt + dk * TV;
  float* Y = tiles;  // after the loop over d_v
  float *G = cv.take(C), *gam = cv.take(C), *Bt = cv.take(C), *dG = cv.take(C), *dB = cv.take(C), *r1 = cv.take(C),
        *r2 = cv.take(C), *red = cv.take(THREADS);
  load_qk(K, p.k, p, c);
  load_qk(Q, p.q, p, c);
  copy(G, p.G + at * C, C);
  load_tokens(Bt, p.beta, p, c);
  if constexpr (ERASE) copy(Tm, p.T + at * C * C, C * C);
  for (int t = tid(); t < C; t += THREADS) dB[t] = 0.f;
  sync();
  for (int t = tid(); t < C; t += THREADS) gam[t] = expf(G[t]);
  // Products over d_v, a tile at a time: dQ = dO Mᵀ, dK = U Dᵀ, dW = dU Mᵀ, dP = dO Uᵀ, dT = dU Vᵀ,
  // <M, D>; and dV, the V part of dβ.
  float mdm = 0.f;
  for (int c0 = 0; c0 < dv; c0 += TV) {
    const int nc = dv - c0 < TV ? dv - c0 : TV;
    const float acc = c0 > 0 ? 1.f : 0.f;
    load_cols(Dt, p.d_o, p, c, c0, TV);
    tile_in(Ut, p.U + at * C * dv, C, dv, c0, TV);
    tile_in(dUt, p.dU + at * C * dv, C, dv, c0, TV);
    load_cols(Vt, p.v, p, c, c0, TV);
    tile_in(Mt, p.states + at * dk * dv, dk, dv, c0, TV);
    tile_in(dMt, p.dstates + at * dk * dv, dk, dv, c0, TV);
    sync();
    blk::mm<false, true>(dQ, dk, Dt, TV, Mt, TV, C, dk, nc, 1.f, acc);
    blk::mm<false, true>(dK, dk, Ut, TV, dMt, TV, C, dk, nc, 1.f, acc);
    if constexpr (ERASE) blk::mm<false, true>(dW, dk, dUt, TV, Mt, TV, C, dk, nc, 1.f, acc);
    blk::mm<false, true>(dP, C, Dt, TV, Ut, TV, C, C, nc, 1.f, acc);
    if constexpr (ERASE) blk::mm<false, true>(dT, C, dUt, TV, Vt, TV, C, C, nc, 1.f, acc);
    for (int e = tid(); e < dk * TV; e += THREADS) mdm = fmaf(Mt[e], dMt[e], mdm);
    sync();
    float* dU0 = dUt;  // d(diag(β) V): Tᵀ dU, or dU itself without the erase term
    if constexpr (ERASE) {
      blk::mm<true, false>(Ut, TV, Tm, C, dUt, TV, C, nc, C, 1.f, 0.f);
      dU0 = Ut;
      sync();
    }
    for (int e = tid(); e < C * TV; e += THREADS) {
      const int t = e / TV, j = c0 + e % TV;
      if (t < c.len && j < dv) p.dv[tok(p, c, t) * dv + j] = Bt[t] * dU0[e];
    }
    blk::row_dots(dB, Vt, TV, dU0, TV, C, TV, true);
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
  blk::row_dots(r1, Q, dk, dQ, dk, C, dk, false);
  blk::row_dots(r2, K, dk, dK, dk, C, dk, false);
  sync();
  for (int t = tid(); t < C; t += THREADS) dG[t] = gam[t] * r1[t] - expf(G[C - 1] - G[t]) * r2[t];
  for (int e = tid(); e < C * dk; e += THREADS) {
    const int t = e / dk;
    dQ[e] *= gam[t];
    dK[e] *= expf(G[C - 1] - G[t]);
  }
  sync();
  if (tid() == 0) {
    float s = gam[C - 1] * red[0];
    for (int t = 0; t < C; ++t) s += expf(G[C - 1] - G[t]) * r2[t];
    dG[C - 1] += s;
  }
  // (b) the intra-chunk outputs: P = (Q Kᵀ) ∘ E.
  blk::mm<false, true>(S, C, Q, dk, K, dk, C, C, dk, 1.f, 0.f);
  sync();
  for (int e = tid(); e < C * C; e += THREADS) {
    const int i = e / C, j = e % C;
    dP[e] = j <= i ? dP[e] * expf(G[i] - G[j]) : 0.f;
  }
  sync();
  row_sums(dG, true, 1.f, [&](int i, int j) { return dP[i * C + j] * S[i * C + j]; });
  sync();
  row_sums(dG, false, -1.f, [&](int i, int j) { return dP[i * C + j] * S[i * C + j]; });
  blk::mm<false, false>(dQ, dk, dP, C, K, dk, C, dk, C, 1.f, 1.f);
  blk::mm<true, false>(dK, dk, dP, C, Q, dk, C, dk, C, 1.f, 1.f);
  sync();
  if constexpr (ERASE) {
    // (c) W = T diag(βγ) K, U0 = T diag(β) V and T = (I + A)⁻¹.
    for (int e = tid(); e < C * dk; e += THREADS) Q[e] = K[e] * Bt[e / dk] * gam[e / dk];  // X = diag(βγ) K
    for (int e = tid(); e < C * C; e += THREADS) dT[e] *= Bt[e % C];                     // dU Vᵀ diag(β)
    sync();
    blk::mm<false, true>(dT, C, dW, dk, Q, dk, C, C, dk, -1.f, 1.f);  // + dW_true Xᵀ, dW_true = −dW
    blk::mm<true, false>(Y, dk, Tm, C, dW, dk, C, dk, C, -1.f, 0.f);  // Y = Tᵀ dW_true
    sync();
    blk::row_dots(r1, K, dk, Y, dk, C, dk, false);
    blk::mm<true, false>(S, C, Tm, C, dT, C, C, C, C, 1.f, 0.f);  // Tᵀ dT
    sync();
    for (int t = tid(); t < C; t += THREADS) {
      dB[t] += gam[t] * r1[t];
      dG[t] += Bt[t] * gam[t] * r1[t];
    }
    for (int e = tid(); e < C * dk; e += THREADS) dK[e] = fmaf(Bt[e / dk] * gam[e / dk], Y[e], dK[e]);
    blk::mm<false, true>(dP, C, S, C, Tm, C, C, C, C, -1.f, 0.f);  // dA = −Tᵀ dT Tᵀ (lower part used)
    sync();
    blk::mm<false, true>(S, C, K, dk, K, dk, C, C, dk, 1.f, 0.f);  // K Kᵀ
    sync();
    // A_ij = β_i E_ij (K Kᵀ)_ij for i > j
    auto dA_A = [&](int i, int j) { return j < i ? dP[i * C + j] * Bt[i] * expf(G[i] - G[j]) * S[i * C + j] : 0.f; };
    row_sums(dG, true, 1.f, dA_A);
    row_sums(dB, true, 1.f, [&](int i, int j) { return j < i ? dP[i * C + j] * expf(G[i] - G[j]) * S[i * C + j] : 0.f; });
    sync();
    row_sums(dG, false, -1.f, dA_A);
    sync();
    for (int e = tid(); e < C * C; e += THREADS) {
      const int i = e / C, j = e % C;
      dP[e] = j < i ? dP[e] * Bt[i] * expf(G[i] - G[j]) : 0.f;  // dKK
    }
    sync();
    blk::mm<false, false>(dK, dk, dP, C, K, dk, C, dk, C, 1.f, 1.f);
    blk::mm<true, false>(dK, dk, dP, C, K, dk, C, dk, C, 1.f, 1.f);
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
    (shared_qk ? p.part_dq : p.dq)[o] = dQ[e];
    (shared_qk ? p.part_dk : p.dk)[o] = dK[e];
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
