// kernels/cuda/ttt_mlp_bwd_cluster.cuh — the fused TTT-MLP backward's reverse walk with a head's
// hidden units split over a thread block cluster of NCTA blocks (sm_90), as the forward in
// ttt_mlp_fwd_cluster.cuh. The one-block walk and its phase list: ttt_mlp_bwd.cuh; this follows it
// phase for phase.
//
// Block r holds hidden units h0 = HDL r .. of the state and of the state's gradient dS (dW1's
// columns, dW2's rows, db1 in its registers and smem), the chunk's [16, HDL] intermediates, and
// computes every row phase for all 16 rows (as the forward does). What crosses blocks, each an
// exchange through distributed shared memory completed by a cluster barrier or (C::XASYNC) by the
// receiving block's transaction barrier (ttt_mlp_fwd_cluster.cuh says how):
//   E1  R2  slice partials of Z2 = X2 W2                        (xd; every block)
//   E2  R5  slice partials of X̄2 W2 and of X̄2 X2ᵀ              (xb, mpart; every block)
//   E3  B1  slice partials of U2 = X2 dW2' (chunks that commit) (xc; every block)
//   E4  B3  the warps' parts of dlr                             (dlrp; block 0)
//       B4  slice partials of dP W2 and of dMt1                 (xa, mpart; every block)
//   E5  B7  slice partials of dXQ                               (xb; block 0)
//   E6  B7  slice partials of dXK                               (xc; the last block)
// A partial last chunk (no U2) has a cluster barrier in E3's place.
// Why no block overwrites a buffer another still reads ("r sent E" means r is past every read
// before E in its program; the exchanges to every block, E1–E4, order the blocks' chunks):
//  - xd: read in R3, next written in E1 of the chunk before, after its writer's wait for E2–E4,
//    which every block sends after R3. xa: read in B5, next written in E4 of the chunk before, after
//    the writer's wait for E1 of that chunk, which every block sends after B5 (xa and xd are two
//    buffers because a block that is not block 0 waits for nothing between B5 and the next E1).
//  - xb: read in B0 (every block) and in B7 (block 0); written in E5 after the writer's wait for
//    E3 / E4 (sent after B0), and in E2 of the chunk before, after the wait for E1 (sent after B7).
//    xc likewise: read in B2 and (the last block) B7; written in E6 (after E4's wait) and E3 (after
//    E1's).
//  - mpart: read in B0 and B5; written in E4 after the wait for E3 or the cluster barrier (every
//    block is past B0), and in E2 of the chunk before, after E1's wait (past B5).
//  - dlrp: read by block 0 in B5, written in B3 of the chunk before, after E1's wait.
// The transaction barriers' phases stay apart the same way (simt_async.cuh): a block sends a
// chunk's bytes of an exchange only after a wait that needs the receiver past its wait for the same
// exchange of the chunk before: E1's after E2's wait (the receiver sends E2 after its E1 wait),
// E2–E4's (dlrp included) after E1's (sent after the E2–E4 waits of the chunk before), E5's and E6's
// after E4's (sent after the E5 / E6 waits of the chunk before).
// Block 0 writes dXQ, dXV, dlr and the parameter-gradient partials of b2, the LN and tok, the last
// block dXK (one block less on the critical path with clusters > 1); each block its part of dW1,
// db1, dW2.
#pragma once

#include "kernels/cuda/ttt_mlp_bwd_phases.cuh"
#include "kernels/cuda/ttt_mlp_fwd_cluster.cuh"

namespace ttt::cuda_impl::tttm {

template <class C>
struct ClusterBwdSmem {
  using Op = typename C::Op;
  static constexpr int W1S = C::HS;  // W1, dW1' [F, HDL]: padded rows (they fit; no swizzle)
  static constexpr int WS = C::OS;   // W2, dW2' [HDL, F]
  alignas(16) Op ow1[C::F * W1S];
  alignas(16) Op ow2[C::HDL * WS];
  alignas(16) Op odw1[C::F * W1S];  // dW1' (the gradient of the state leaving the chunk)
  alignas(16) Op odw2[C::HDL * WS];
  alignas(16) Op ox2[KP * C::HS];   // X2
  alignas(16) Op oxb2[KP * C::HS];  // X̄2, then dP (B3), then dZ1 (B6)
  alignas(16) Op ogp1[KP * C::HS];  // −Gp1
  alignas(16) Op odzb1[KP * C::HS]; // dZ̄1
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op og2[KP * C::OS];
  alignas(16) Op ogp2[KP * C::OS];
  alignas(16) Op odzb2[KP * C::OS];  // dZ̄2, then dZ2
  alignas(16) Op omt1[KP * C::KS];   // Mt1, then dS1
  alignas(16) Op omt2[KP * C::KS];   // Mt2, then dS2
  alignas(16) float tgt[KP * C::FS];
  alignas(16) float z2[KP * C::FS];  // Z2, then dtgt
  alignas(16) float gp2[KP * C::FS];
  alignas(16) float dgp2[KP * C::FS];
  alignas(16) float xd[C::NKS * KP * C::FS];  // the exchange buffers (slot: the slice)
  alignas(16) float xa[C::NKS * KP * C::FS];
  alignas(16) float xb[C::NKS * KP * C::FS];
  alignas(16) float xc[C::NKS * KP * C::FS];
  alignas(16) float mpart[C::NKS * KP * SP];  // slice partials of X̄2 X2ᵀ, then of dMt1
  alignas(16) float s1[KP * SP];              // XQ XKᵀ, then tril(X̄2 X2ᵀ + β)
  alignas(16) float m1raw[KP * SP];
  alignas(16) float mt2[KP * SP];             // Mt2, then dMt2
  alignas(16) float colpart[C::RW * C::F];
  alignas(16) float dlnw[C::RW * C::F];
  alignas(16) float dlnb[C::RW * C::F];
  alignas(16) float dlrp[C::NWT * KP];  // block 0: every warp's part of dlr
  alignas(16) float b1[C::HDL];
  alignas(16) float db1[C::HDL];
  alignas(16) float db1p[C::HDL];
  alignas(16) float b2[C::F];
  alignas(16) float db2[C::F];
  alignas(16) float db2p[C::F];
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  alignas(16) float red[2 * C::THREADS];
  float tok[KP], lr[KP], dtok[KP];
  float dtokc[C::NCTA];  // block 0: each block's update-path part of dtok[K − 1]
  alignas(8) uint64_t xbar[6];  // E1 .. E6's transaction barriers (E5: block 0's alone, E6: the last block's)
  TTT_DEV Op* w1() { return ow1; }
  TTT_DEV Op* dw1() { return odw1; }
  TTT_DEV Op* w2() { return ow2; }
  TTT_DEV Op* dw2() { return odw2; }
  TTT_DEV Op* ods1() { return omt1; }
  TTT_DEV Op* ods2() { return omt2; }
  TTT_DEV float* m2raw() { return s1; }
  TTT_DEV float* dmt2() { return mt2; }
};

// The chunk's tiles and the block's part of its state.
template <class C>
TTT_DEV void load_chunk_part(const Params& p, const InBases& hb, ClusterBwdSmem<C>& S, int bh, int k, int n, int h0) {
  constexpr int F = C::F, HD = C::HD, HDL = C::HDL;
  load_chunk_tiles<C>(p, hb, S, k, n);
  using SM = ClusterBwdSmem<C>;
  with_walk_state<C>(p, bh, k, [&](const auto& st) {
    load_w_ops<C>(S.ow1, SM::W1S, st.w1 + h0, HD, F, HDL);                        // W1[:, h0 ..]
    load_w_ops<C>(S.ow2, SM::WS, st.w2 + static_cast<int64_t>(h0) * F, F, HDL, F);  // W2[h0 .., :]
    for (int i = tid(); i < HDL; i += C::THREADS) S.b1[i] = st.b1[h0 + i];
    for (int i = tid(); i < F; i += C::THREADS) S.b2[i] = st.b2[i];
  });
}

// A thread's parts of dtok.
struct DtokParts {
  float row = 0;        // the row phases' part (every block computes it; block 0's counts)
  float rows_last = 0;  // B2's part of dtok[K − 1] (likewise)
  float cols_last = 0;  // B3's part of dtok[K − 1]: the block's hidden units (summed over the cluster)
};

// The phases of the block's transaction barriers: bit e flips with each wait for exchange e.
struct XPhases {
  uint32_t bits = 0;
  TTT_DEV uint32_t next(int e) {
    const uint32_t parity = (bits >> e) & 1u;
    bits ^= 1u << e;
    return parity;
  }
};

// Exchange e of the walk done (exchange_done; its bytes armed on xbar[e] by expect_bytes).
template <class C>
TTT_DEV void exchange_wait(ClusterBwdSmem<C>& S, XPhases& ph, int e, bool receiver = true, bool block_sync = false) {
  exchange_done<C>(&S.xbar[e], ph.next(e), receiver, block_sync);
}

template <class C>
TTT_DEV void cluster_bwd_chunk(const Params& p, const InBases& hb, const BwdBases& bb, ClusterBwdSmem<C>& S, int bh,
                               int k, StateRegs<C>& dW, DtokParts& dt, XPhases& ph) {
  enum { E1, E2, E3, E4, E5, E6 };
  const int rank = simt::cluster_rank(), h0 = rank * C::HDL;
  const bool lead = rank == 0;
  const int gw = rank * C::NW + warp();
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int n = chunk_rows(p, k);
  const bool commit = n == p.K;
  const float tokL = p.tok[p.K - 1], beta = p.bias ? 1.f : 0.f;
  const Split<C> sp;
  const int slice = rank * C::NKSL + sp.ks;  // the warp's contraction slice over all blocks
  const RowLane<C> rl;
  constexpr uint32_t all_tiles = tile_bytes(C::NWT), slice_tiles = tile_bytes(C::NKS);
  // top
  simt::sync();
  load_chunk_part<C>(p, hb, S, bh, k, n, h0);
  if (k > 0) {
    prefetch_walk_state<C>(p, bh, k - 1);
    prefetch_chunk_rows<C>(p, hb, bb, k - 1);
  }
  load_w_ops_wait();
  simt::sync();
  // R1
  Acc<2> z1, zq;
  first_phase<C>(z1, zq, S.ok, S.oq, S.w1(), ClusterBwdSmem<C>::W1S, S.b1, S.ox2, S.s1);
  simt::sync();
  // R2 (E1)
  expect_bytes<C>(&S.xbar[E1], all_tiles);
  send_x_w2_partial<C>(S.ox2, S.ow2, S.xd, &S.xbar[E1]);
  exchange_wait(S, ph, E1);
  // R3
  inner_grad_rows<C>(p, S.xd, S.b2, S.tgt, S.lr, S.lnw, S.lnb, n, S.gp2, S.og2, S.ogp2, S.z2);
  if (rl.rg < KP) causal_row<C>(S.s1, 1, S.tok, rl.rg, n, beta, S.omt1, nullptr, S.m1raw);
  simt::sync();
  // R4
  recompute_xbar2<C>(S, z1, zq);
  simt::sync();
  // R5 (E2)
  expect_bytes<C>(&S.xbar[E2], all_tiles + slice_tiles);
  send_x_w2_partial<C>(S.oxb2, S.ow2, S.xb, &S.xbar[E2]);
  if (sp.cb == 0)
    send_tile<C>(hidden_abt_partial<C>(S.oxb2, S.ox2, sp), S.mpart, slice, SP, KP * SP, 0, &S.xbar[E2]);
  exchange_wait(S, ph, E2);
  // B0
  output_rows<C>(p, bb, S, S.xb, t0, n);
  simt::sync();
  // B1 (E3)
  if (commit) expect_bytes<C>(&S.xbar[E3], all_tiles);
  dzbar2_products<C>(p, S, dW, sp);
  if (commit) {
    send_x_w2_partial<C>(S.ox2, S.dw2(), S.xc, &S.xbar[E3]);  // U2 = X2 dW2'
    exchange_wait(S, ph, E3, true, true);  // the block barrier: B2 rewrites what B1's warps read (dS2 over Mt2)
  } else {
    simt::cluster_sync();  // B4 rewrites mpart, which B0 of a block behind may still read
  }
  // B2
  ds2_rows<C>(S, S.xc, n, commit, tokL, dt.row, dt.rows_last);
  simt::sync();
  // B3 (dlr's hidden parts: every warp's to block 0, counted on its E4)
  expect_bytes<C>(&S.xbar[E4], all_tiles + slice_tiles + (lead ? C::NWT * KP * sizeof(float) : 0));
  Acc<2> P;
  float* const dlrp = S.dlrp + gw * KP;
  uint64_t* const x4 = &S.xbar[E4];
  dzbar1_products<C>(p, S, z1, zq, commit, tokL, dW, P, dt.cols_last, [dlrp, x4](int r, float v) {
    if constexpr (C::XASYNC)
      simt::st_async(dlrp + r, 0, v, x4);
    else
      simt::map_rank(dlrp, 0)[r] = v;
  });
  simt::sync();
  // B4 (E4)
  send_x_w2_partial<C>(S.oxb2, S.w2(), S.xa, &S.xbar[E4]);  // dP W2
  if (sp.cb == 0)
    send_tile<C>(hidden_abt_partial<C>(S.odzb1, S.ogp1, sp), S.mpart, slice, SP, KP * SP, 0, &S.xbar[E4]);
  xty<C, C::F / 8>(dW.w2, S.oxb2, C::HS, 16 * warp(), S.og2, C::OS, 0);
  exchange_wait(S, ph, E4, true, true);
  // B5
  inner_grad_backward_rows<C>(p, bb, S, S.xa, t0, n, dt.row, lead, C::NWT);
  simt::sync();
  // B6
  dz1_products<C>(p, S, z1, dW, P);
  simt::sync();
  // B7: dXQ (dS1 XK once: the first slice of block 0) to block 0 (E5), dXK (dS1ᵀ XQ once) to the
  // last block (E6)
  const bool last = rank == C::NCTA - 1;
  if (lead) expect_bytes<C>(&S.xbar[E5], all_tiles);
  if (last) expect_bytes<C>(&S.xbar[E6], all_tiles);
  send_tile<C>(dxq_partial<C>(S, sp, slice == 0), S.xb, slice, C::FS, KP * C::FS, sp.col(), &S.xbar[E5], 0, 1);
  send_tile<C>(dxk_partial<C>(S, sp, commit, tokL, slice == 0), S.xc, slice, C::FS, KP * C::FS, sp.col(),
               &S.xbar[E6], C::NCTA - 1, 1);
  // (the block barrier: publish_state_grad rewrites dW1', which the dXK partials read)
  exchange_wait(S, ph, E5, lead, true);
  if (lead) store_dxq_rows<C>(p, bb, S.xb, t0, n);
  if constexpr (C::XASYNC) exchange_wait(S, ph, E6, last);  // barrier mode: done with E5's
  if (last) store_sum_rows<C>(S.xc, S.z2, -1.f, bb.dxk, t0, n);  // − dtgt
  publish_state_grad<C>(S, dW);
}

// Cluster c = (batch, head): the reverse walk, then the parameter-gradient partials.
template <class C>
TTT_DEV void cluster_bwd_block(const Params& p, int bh, char* smem) {
  using SM = ClusterBwdSmem<C>;
  auto& S = *reinterpret_cast<SM*>(smem);
  constexpr int F = C::F;
  const int rank = simt::cluster_rank(), h0 = rank * C::HDL;
  const bool lead = rank == 0;
  const int b = bh / p.H, h = bh % p.H;
  load_ln_tok<C>(p, h, S);
  for (int i = tid(); i < C::HDL; i += C::THREADS) S.db1[i] = S.db1p[i] = 0.f;
  for (int i = tid(); i < F; i += C::THREADS) S.db2[i] = S.db2p[i] = 0.f;
  for (int i = tid(); i < C::RW * F; i += C::THREADS) S.dlnw[i] = S.dlnb[i] = 0.f;
  for (int i = tid(); i < F * SM::W1S; i += C::THREADS) put_op(S.odw1 + i, 0.f);
  for (int i = tid(); i < C::HDL * SM::WS; i += C::THREADS) put_op(S.odw2 + i, 0.f);
  StateRegs<C> dW;
  dW.fill(0.f);
  DtokParts dt;
  const InBases hb(p, b, h);
  const BwdBases bb(p, b, h);
  if (C::XASYNC && tid() == 0) {
    for (uint64_t& x : S.xbar) simt::xbar_init(&x);
    simt::xbar_init_fence();
  }
  // Every block of the cluster has started, and its barriers are set up, before any writes to
  // another's smem.
  simt::cluster_sync();
  XPhases ph;
  for (int k = p.NC - 1; k >= 0; --k) {
    wait_for_replay<C>(p, bh, k);
    cluster_bwd_chunk<C>(p, hb, bb, S, bh, k, dW, dt, ph);
  }
  // The partials: each block its hidden units' dW1, db1, dW2; block 0 the rest. dtok's update-path
  // parts summed in thread order, the hidden units' part of every block on block 0 in rank order.
  simt::sync();
  float* out = partials(p, F, bh);
  write_partials<C>(p, S, dW, dt.row, h0, lead, out);
  S.red[tid()] = dt.rows_last;
  S.red[C::THREADS + tid()] = dt.cols_last;
  simt::sync();
  if (tid() == 0) {
    float s = 0;
    for (int i = 0; i < C::THREADS; ++i) s += S.red[C::THREADS + i];
    simt::map_rank(S.dtokc, 0)[rank] = s;
  }
  simt::cluster_sync();
  if (lead && tid() == 0) {
    float s = 0;
    for (int i = 0; i < C::THREADS; ++i) s += S.red[i];
    for (int r = 0; r < C::NCTA; ++r) s += S.dtokc[r];
    for (int i = 0; i < p.K; ++i) out[state_size(F) + 2 * F + i] = S.dtok[i] + (i == p.K - 1 ? s : 0.f);
  }
}

}  // namespace ttt::cuda_impl::tttm
