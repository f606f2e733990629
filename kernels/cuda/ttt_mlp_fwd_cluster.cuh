// kernels/cuda/ttt_mlp_fwd_cluster.cuh — the fused TTT-MLP forward (and the backward's replay) with a
// head's hidden units split over a thread block cluster of NCTA blocks (sm_90). Math:
// kernels/ttt_mlp_scan.h; the one-block version and its phase list: ttt_mlp_fwd.cuh.
//
// Why: one block a (batch, head) walks every chunk in a row, and a chunk is a chain of small
// dependent products and row phases. At 2 × 8192 (24 heads) only 24 of the H200's 132 SMs work, and
// each of them runs 16 warps through the chain. With NCTA blocks a head, block r owns hidden units
// HDL r .. HDL (r + 1) − 1 (HDL = 4F / NCTA): its warps hold those columns of W1 and rows of W2
// in registers, as the one-block kernel's warps do, on NCTA SMs instead of one.
//
// What crosses blocks: the products that contract over the hidden units. Z2 = X2 W2 and
// Z̄2 = X̄2 W2 are sums of the blocks' slice partials ([16, F] each) and X̄2 X2ᵀ of the warps'
// partials ([16, 16]); blocks write their partials into the shared memory of the blocks that read
// them (distributed shared memory). An exchange completes in one of two ways (C::XASYNC):
//  - barrier (TTT_MLP_SCAN_EXCHANGE=barrier): plain stores, then a cluster barrier that every
//    block waits at;
//  - async (the default): asynchronous stores that count their bytes on the receiver's transaction
//    barrier (simt_async.cuh), which only the receiver waits for; no cluster barrier inside the
//    walk. Measured on an H100 (BENCHMARKS.md, session 26) 3% (clusters of 2) to 7% (of 4) faster
//    than barrier mode for one 125M layer at 2 × 8192. The SIMT emulator's `blocks` schedule
//    catches a buffer rewritten too early and its late stores a barrier's phases mixing: with one
//    F2 barrier instead of two, the cluster tests fail.
// The row phases (the LN-L2 gradient G2, Mt1, the output LayerNorm) are computed by every block
// for all 16 rows from the summed partials: that costs no exchange, and each block needs G2, Gp2 and
// Mt1 whole for its own columns. Block 0 writes the outputs and b2, so only it receives Z̄2's and
// X̄2 X2ᵀ's partials.
//
// Per chunk, 2 exchanges: with 4 block barriers and 2 cluster barriers (barrier mode) or 5 block
// barriers (async), block 0 one more after O (the one-block kernel: 6 block barriers).
//   top  the chunk's tiles into smem; barrier; the state stored every G chunks
//   F1   warp: Z1, Zq, X2 (its columns); last warp: S1 = XQ XKᵀ; barrier
//   F2   warps: slice partials of X2 W2 → every block's `part[j % 2]` (j: the chunks walked
//        before); wait for the cluster's partials
//   F3   rows: Z2, G2, Gp2, Mt1 (all rows, every block); barrier
//   F4   warp: G1, Gp1, Z̄1, X̄2, its partial of X̄2 X2ᵀ → block 0's `mpart`; the state update;
//        barrier
//   F5   warps: slice partials of X̄2 W2 → block 0's `partb[j % 2]`; barrier (F6 rewrites W2's
//        operand) (barrier mode: the cluster barrier)
//   F6   the new W2 operand, b2
//   O    block 0's output rows of chunk j (Mt2, Z̄2, out), deferred into F2 of chunk j + 1 (or after
//        the last chunk): after block 0's F2 sends, before its F2 wait, then a block barrier (F3
//        rewrites Gp2, which the rows read). Done in F6, they held up every block: the others wait
//        at F2 for block 0's partials, which it sent only after the rows; now they fill block 0's
//        own wait. Async mode: block 0 waits for `xlead[j % 2]` (F4's and F5's partials) there.
// Why no block overwrites a partial that another still reads, in either mode (the exchange order;
// "r sent E" means r finished every phase before E):
//  - part[j % 2]: written in F2 of chunk j + 2, after its writer's F2 wait of chunk j + 1, which
//    needs every block's F2 of j + 1, sent after that block's F3 of chunk j read part[j % 2].
//  - partb[j % 2], mpart[j % 2] (block 0 reads them in O of chunk j, inside F2 of j + 1): written in
//    F4 / F5 of chunk j + 2, after the writer's F2 wait of j + 2, which needs block 0's F2 of j + 2,
//    sent after its O of j + 1 and so after its O of j.
// The same order keeps a transaction barrier's phases apart (simt_async.cuh): a block sends a
// phase's bytes only after a wait that needs the receiver to be past its wait for the phase before.
// Hence two barriers for F2, alternating as `part` does (with one, a block could send chunk j + 1's
// partials to a block still waiting for a third block's partials of chunk j), and two for F4 / F5
// (`xlead[j % 2]`): chunk j + 2's bytes come after the wait for block 0's F2 of j + 2, past its wait
// in O of chunk j.
// The replay (no F5, F6) exchanges `part` alone.
#pragma once

#include "kernels/cuda/simt_async.cuh"
#include "kernels/cuda/ttt_mlp_fwd.cuh"

namespace ttt::cuda_impl::tttm {

// F: head_dim (hidden 4F); MMA: bf16 tensor-core products; NCTA: blocks of the cluster (1, 2 or 4);
// XASYNC: exchanges signalled through transaction barriers instead of cluster barriers.
// The members the shared helpers read (ttt_mlp_common.cuh, ttt_linear_common.cuh) describe one
// block: NW its warps, HS its [16, HDL] operand tiles, THREADS its threads; NKS, CB, KSPAN the
// [16, F] products over all hidden units.
template <int F_, bool MMA_, int NCTA_, bool XASYNC_ = false>
struct ClusterCfg {
  static constexpr int F = F_;
  static constexpr int HD = 4 * F_;
  static constexpr int NCTA = NCTA_;
  static constexpr bool XASYNC = XASYNC_;
  static constexpr int HDL = HD / NCTA;  // hidden units of one block
  static constexpr bool MMA = MMA_;
  static constexpr bool BIO = false;
  using IO = float;
  static constexpr int NWT = HD / 16;      // warps of the cluster: 16 hidden units each
  static constexpr int NW = NWT / NCTA;    // warps of a block
  static constexpr int THREADS = 32 * NW;
  // Row phases: LPR lanes a row, CPL (a multiple of 4: 16-byte vectors) columns a lane; every thread
  // a row lane where CPL allows (at F = 64: 8 lanes a row with 4 blocks, 16 with 2).
  static constexpr int LPR = THREADS / KP < F / 4 ? THREADS / KP : F / 4;
  static constexpr int CPL = F / LPR;
  static constexpr int RW = KP * LPR / 32;
  static constexpr int FS = F + 4;
  static constexpr int OS = MMA ? F + 8 : F + 4;
  static constexpr int HS = MMA ? HDL + 8 : HDL + 4;
  static constexpr int KS = MMA ? KP + 8 : KP + 4;
  static constexpr int CB = F / 16;
  static constexpr int NKS = NWT / CB;   // contraction slices of a product over HD, all blocks (4)
  static constexpr int NKSL = NW / CB;   // the slices of one block
  static constexpr int KSPAN = HD / NKS;
  using Op = std::conditional_t<MMA, uint16_t, float>;
  static_assert(F == 16 || F == 32 || F == 64, "head_dim 16, 32 or 64");
  static_assert(NCTA == 1 || NCTA == 2 || NCTA == 4, "clusters of 1, 2 or 4 blocks");
  static_assert(NW % CB == 0, "a block holds whole contraction slices");
  static_assert(LPR >= 1 && LPR <= 32 && CPL % 4 == 0 && KP * LPR <= THREADS, "row mapping");
};

template <class C>
struct ClusterFwdSmem {
  using Op = typename C::Op;
  alignas(16) float xq[2][KP * C::FS];  // double-buffered: F6 of chunk k reads what the top of k+1 writes
  alignas(16) float tgt[KP * C::FS];
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op ow1[C::F * C::HS];    // W1[:, the block's hidden units]
  alignas(16) Op ow2[C::HDL * C::OS];  // W2[the block's hidden units, :]
  alignas(16) Op ox2[KP * C::HS];      // X2 (the block's columns)
  alignas(16) Op oxb2[KP * C::HS];     // X̄2
  alignas(16) Op ogp1[KP * C::HS];     // −Gp1
  alignas(16) Op og2[KP * C::OS];      // G2
  alignas(16) Op ogp2[KP * C::OS];     // −Gp2
  alignas(16) Op omt1[KP * C::KS];     // Mt1
  alignas(16) float part[2][C::NKS * KP * C::FS];  // every slice's partial of X2 W2 (slot: the slice), chunks alternating
  alignas(16) float partb[2][C::NKS * KP * C::FS];  // every slice's partial of X̄2 W2 (block 0), chunks alternating
  alignas(16) float mpart[2][C::NWT * KP * SP];     // every warp's partial of X̄2 X2ᵀ (slot: the warp), likewise
  alignas(16) float s1[KP * SP];                 // XQ XKᵀ
  alignas(16) float mt2[KP * SP];                // Mt2 (block 0)
  alignas(16) float gp2[KP * C::FS];             // Gp2
  alignas(16) float b1[C::HDL];
  alignas(16) float b2[2][C::F];  // double-buffered: F6 updates it while reading it
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  float tok[KP], lr[KP];
  alignas(8) uint64_t xpart[2];  // F2's exchange into part[j % 2] (every block; async mode)
  alignas(8) uint64_t xlead[2];  // F4 and F5's exchange into partb[j % 2], mpart[j % 2] (block 0; async mode)
};

// The bytes of n [16, 16] float32 tiles: what a receiver expects when n warps send it one each.
constexpr uint32_t tile_bytes(int n) { return static_cast<uint32_t>(n) * KP * 16 * sizeof(float); }

// Writes a warp's [16, 16] partial tile (columns col, row stride ld) into slot `slot` (tile floats
// apart) of buf in blocks r0 .. r0 + nr − 1 of the cluster: async mode, each store counted on that
// block's transaction barrier xbar (simt_async.cuh); barrier mode, plain stores. Two floats a store
// where ld is even (8-byte aligned), as every store to another block's shared memory is a
// transaction of its own on the SM-to-SM network; single floats otherwise.
template <class C>
TTT_DEV void send_tile(const Acc<2>& acc, float* buf, int slot, int ld, int tile, int col, uint64_t* xbar,
                       int r0 = 0, int nr = C::NCTA) {
  float* const s = buf + slot * tile;
  for (int rank = r0; rank < r0 + nr; ++rank) {
    float* const remote = C::XASYNC ? s : simt::map_rank(s, rank);  // barrier mode: mapped once a block
    const auto one = [&](int off, float v) {
      if constexpr (C::XASYNC) simt::st_async(s + off, rank, v, xbar);
      else remote[off] = v;
    };
    const auto two = [&](int off, float v0, float v1) {
      if constexpr (C::XASYNC) simt::st_async2(s + off, rank, v0, v1, xbar);
      else *reinterpret_cast<tttk::float2v*>(remote + off) = {v0, v1};
    };
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      const int r = acc_row(0, 0), c = acc_col(col, n, 0);
      if (ld % 2 == 0) {
        two(r * ld + c, acc.v[n][0], acc.v[n][1]);
        two((r + 8) * ld + c, acc.v[n][2], acc.v[n][3]);
      } else {
        one(r * ld + c, acc.v[n][0]);
        one(r * ld + c + 1, acc.v[n][1]);
        one((r + 8) * ld + c, acc.v[n][2]);
        one((r + 8) * ld + c + 1, acc.v[n][3]);
      }
    }
  }
}

// The warp's slice partial of X W2 (X the block's [16, HDL] operand tile, W2 the block's [HDL, F]
// operand rows) into slot (the slice) of buf in blocks r0 .. r0 + nr − 1 (send_tile).
template <class C>
TTT_DEV void send_x_w2_partial(const typename C::Op* x, const typename C::Op* ow2, float* buf, uint64_t* xbar,
                               int r0 = 0, int nr = C::NCTA) {
  const Split<C> sp;
  send_tile<C>(hidden_xw_partial<C>(x, ow2, C::OS, sp), buf, simt::cluster_rank() * C::NKSL + sp.ks, C::FS,
               KP * C::FS, sp.col(), xbar, r0, nr);
}

// Async mode: arms the block's transaction barrier xbar for `bytes` (one thread), after its
// previous wait.
template <class C>
TTT_DEV void expect_bytes(uint64_t* xbar, uint32_t bytes) {
  if constexpr (C::XASYNC)
    if (tid() == 0) simt::xbar_expect(xbar, bytes);
}

// The end of an exchange, called by every block: async mode, a block barrier first where
// `block_sync` (for what the block's own warps read and write around it), then the receiver's wait
// for phase `parity` of xbar; barrier mode, the cluster barrier.
template <class C>
TTT_DEV void exchange_done(uint64_t* xbar, uint32_t parity, bool receiver, bool block_sync) {
  if constexpr (C::XASYNC) {
    if (block_sync) simt::sync();
    if (receiver) simt::xbar_wait(xbar, parity);
  } else {
    simt::cluster_sync();
  }
}

// The block's first state: its columns of W1 and rows of W2 (registers), its part of b1, and b2.
template <class C>
TTT_DEV void load_first_state(const Params& p, int bh, int h0, const float* snap, StateRegs<C>& W, float* b1,
                              float* b2) {
  const int h = bh % p.H;
  if (snap) {
    W.load(snap, h0);
    for (int i = tid(); i < C::HDL; i += C::THREADS) b1[i] = snap[off_b1(C::F) + h0 + i];
    for (int i = tid(); i < C::F; i += C::THREADS) b2[i] = snap[off_b2(C::F) + i];
    return;
  }
  for (int i = tid(); i < C::HDL; i += C::THREADS) b1[i] = p.bias ? p.b1[h * C::HD + h0 + i] : 0.f;
  for (int i = tid(); i < C::F; i += C::THREADS) b2[i] = p.bias ? p.b2[h * C::F + i] : 0.f;
  W.load(p.w1 + static_cast<int64_t>(h) * C::F * C::HD, p.w2 + static_cast<int64_t>(h) * C::HD * C::F, h0);
}

// A chunk whose output rows block 0 has yet to compute (O): its first token, rows, and the buffers
// of its XQ, b2, partb and mpart (chunk parity j % 2).
struct OutputRows {
  bool due = false;
  int64_t t0 = 0;
  int n = 0, qb = 0, bb = 0, j = 0;
};

// O: block 0's output rows of chunk q (every thread of the block): async mode, the wait for its
// partials first; Mt2 from the warps' partials of X̄2 X2ᵀ, Z̄2 = b2 + Σ partb − Mt2 Gp2, then the LN
// + residual, out.
template <class C>
TTT_DEV void cluster_output_rows(const Params& p, ClusterFwdSmem<C>& S, const IORows& out, const OutputRows& q) {
  if constexpr (C::XASYNC) simt::xbar_wait(&S.xlead[q.j & 1], (q.j >> 1) & 1);
  const RowLane<C> rl;
  const int r = rl.rg, o = r * C::FS + rl.c0;
  if (r < KP) causal_row<C>(S.mpart[q.j & 1], C::NWT, S.tok, r, q.n, p.bias ? 1.f : 0.f, nullptr, S.mt2, nullptr);
  simt::syncwarp();  // row r's Mt2 comes from the LPR lanes of its group (one warp)
  if (r < KP) {
    float z[C::CPL], y[C::CPL];
    zbar2_row<C>(S.b2[q.bb], S.partb[q.j & 1], S.mt2, S.gp2, r, rl.c0, z);
    tttk::ln_residual_row<C>(p.ln, p.eps, z, S.xq[q.qb] + o, S.lnw + rl.c0, S.lnb + rl.c0, y);
    if (r < q.n) out.store(q.t0 + r, rl.c0, y);
  }
}

template <class C>
TTT_DEV void cluster_fwd_range(const Params& p, int bh, char* smem, FwdMode mode) {
  auto& S = *reinterpret_cast<ClusterFwdSmem<C>*>(smem);
  constexpr int F = C::F;
  const int rank = simt::cluster_rank(), h0 = rank * C::HDL;
  const bool lead = rank == 0;
  const int b = bh / p.H, h = bh % p.H, hw = 16 * warp();
  const float tokL = p.tok[p.K - 1], beta = p.bias ? 1.f : 0.f;
  const int64_t SS = state_size(F);
  float* const acc = p.acc ? p.acc + static_cast<int64_t>(bh) * SS : nullptr;
  const int k0 = mode.replay ? mode.group * p.G : 0;
  const int k1 = mode.replay ? ((mode.group + 1) * p.G < p.NC ? (mode.group + 1) * p.G : p.NC) : p.NC;
  load_ln_tok<C>(p, h, S);
  StateRegs<C> W;
  load_first_state<C>(p, bh, h0, mode.replay ? stored_state(p, F, bh, mode.group) : nullptr, W, S.b1, S.b2[0]);
  W.store_w1_op(S.ow1, C::HS);
  W.store_w2_op(S.ow2);
  const InBases hb(p, b, h);
  const IORows out(p.out, p.bio, b, h);  // unused by the replay
  ChunkRegs<C> next;
  if (k0 < k1) next.load(p, hb, k0);
  const RowLane<C> rl;
  bool committed_last = true;
  int bb = 0;  // the b2 buffer holding the state's b2
  OutputRows pending;  // block 0: the chunk whose output rows are due (O)
  if (C::XASYNC && tid() == 0) {
    simt::xbar_init(&S.xpart[0]);
    simt::xbar_init(&S.xpart[1]);
    simt::xbar_init(&S.xlead[0]);
    simt::xbar_init(&S.xlead[1]);
    simt::xbar_init_fence();
  }
  // Every block of the cluster has started, and its barriers are set up, before any writes to
  // another's smem.
  simt::cluster_sync();

  for (int k = k0; k < k1; ++k) {
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = chunk_rows(p, k);
    const bool commit = n == p.K, accumulate = !mode.replay && !commit && acc && k == p.NC - 1;
    const int qb = k & 1;
    // top
    next.q.store(S.xq[qb], S.oq);
    next.k.store(nullptr, S.ok);
    store_target(next.k, next.v, p.ln, S.tgt);
    if (tid() < KP) S.lr[tid()] = next.lr;
    simt::sync();
    if (k + 1 < k1) next.load(p, hb, k + 1);
    if (!mode.replay && k % p.G == 0) store_state_part<C>(W, S.b1, S.b2[bb], h0, stored_state(p, F, bh, k / p.G));
    if (mode.replay && k > k0) store_snapshot_part<C>(W, S.b1, S.b2[bb], h0, replay_snapshot<C>(p, bh, k));
    if (mode.replay && k + 1 == k1) break;  // the group's last chunk is the reverse walk's
    // F1
    Acc<2> z1, zq;
    first_phase<C>(z1, zq, S.ok, S.oq, S.ow1, C::HS, S.b1, S.ox2, S.s1);
    simt::sync();
    // F2
    const int j = k - k0;  // the chunks this kernel walked before
    float* const part = S.part[j & 1];
    uint64_t* const xpart = &S.xpart[j & 1];
    expect_bytes<C>(xpart, tile_bytes(C::NWT));
    send_x_w2_partial<C>(S.ox2, S.ow2, part, xpart);
    if (lead && pending.due) {  // O of the chunk before
      cluster_output_rows<C>(p, S, out, pending);
      pending.due = false;
      simt::sync();  // F3 rewrites Gp2
    }
    exchange_done<C>(xpart, (j >> 1) & 1, true, false);
    // F3
    inner_grad_rows<C>(p, part, S.b2[bb], S.tgt, S.lr, S.lnw, S.lnb, n, S.gp2, S.og2, S.ogp2, nullptr);
    if (rl.rg < KP) causal_row<C>(S.s1, 1, S.tok, rl.rg, n, beta, S.omt1, nullptr, nullptr);
    simt::sync();
    // F4: G1 = (G2 W2ᵀ) ⊙ gelu'(Z1), Gp1 = lr ⊙ G1 (−Gp1 as the operand), b1's step
    {
      Acc<2> g1;
      neg_gp1<C>(g1, S.og2, S.ow2, C::OS, S.lr, z1);
      store_op(g1, S.ogp1, C::HS, 0, hw);
      if (commit || accumulate) b1_step<C>(p, g1, commit, tokL, h0, S.b1, acc ? acc + off_b1(F) : nullptr);
    }
    simt::syncwarp();
    // Z̄1 = Zq + Mt1 (−Gp1), X̄2 = gelu(Z̄1), the warp's partial of X̄2 X2ᵀ to every block
    if (!mode.replay) {
      xy<C, 1>(zq, S.omt1, C::KS, 0, S.ogp1, C::HS, 0, hw);
      gelu_tile<C>(zq, S.oxb2, nullptr);
      simt::syncwarp();
      Acc<2> m;
      m.fill(0.f);
      xyt<C, 1>(m, S.oxb2, C::HS, hw, S.ox2, C::HS, hw, 0);
      if (lead) expect_bytes<C>(&S.xlead[j & 1], tile_bytes(2 * C::NWT));  // mpart and partb
      send_tile<C>(m, S.mpart[j & 1], rank * C::NW + warp(), SP, KP * SP, 0, &S.xlead[j & 1], 0, 1);
    }
    if (commit || accumulate) {  // the accumulators of a partial last chunk: XKᵀ Gp1, X2ᵀ Gp2 = −P
      update_state<C>(W, S.ok, S.ogp1, S.ox2, S.ogp2, tokL, commit ? nullptr : acc, h0);
      if (commit) W.store_w1_op(S.ow1, C::HS);  // only this warp reads its columns of W1
    }
    committed_last = commit;
    simt::sync();
    if (mode.replay) {  // the state update's b2 (the output path is the forward's only)
      if (commit) W.store_w2_op(S.ow2);
      b2_step<C>(p, S.gp2, S.b2[bb], commit, tokL, S.b2[bb ^ 1], nullptr);
      bb ^= 1;
      continue;
    }
    // F5
    send_x_w2_partial<C>(S.oxb2, S.ow2, S.partb[j & 1], &S.xlead[j & 1], 0, 1);
    if constexpr (C::XASYNC)
      simt::sync();  // F6 rewrites W2's operand; block 0 waits for the partials in O
    else
      simt::cluster_sync();
    // F6
    if (commit) W.store_w2_op(S.ow2);
    b2_step<C>(p, S.gp2, S.b2[bb], commit, tokL, S.b2[bb ^ 1], accumulate && lead ? acc + off_b2(F) : nullptr);
    pending = {true, t0, n, qb, bb, j};
    bb ^= 1;
  }
  if (!mode.replay) {
    if (lead && pending.due) cluster_output_rows<C>(p, S, out, pending);
    simt::sync();
    finish_forward<C>(p, bh, W, S.b1, S.b2[bb], committed_last, rank, C::NCTA);
  }
  simt::cluster_sync();  // no block leaves while another's stores to it may be in flight
}

// Cluster c (blocks c·NCTA .. c·NCTA + NCTA − 1) runs (batch, head) c.
template <class C>
TTT_DEV void cluster_fwd_block(const Params& p, int cluster, char* smem) {
  cluster_fwd_range<C>(p, cluster, smem, FwdMode{});
}

// The backward's replay of checkpoint group g of (batch, head) bh (cluster index bh · NG + g).
template <class C>
TTT_DEV void cluster_replay_block(const Params& p, int cluster, char* smem) {
  cluster_fwd_range<C>(p, cluster / p.NG, smem, FwdMode{true, cluster % p.NG});
}

}  // namespace ttt::cuda_impl::tttm
