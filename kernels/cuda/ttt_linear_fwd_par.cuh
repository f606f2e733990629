// kernels/cuda/ttt_linear_fwd_par.cuh — the chunk-parallel TTT-Linear forward (TTTLinearScanPlan):
// a serial walk that carries only the state, then the outputs of every chunk side by side.
//
// The walk of ttt_linear_fwd.cuh computes per chunk the state update (Z1 = XK W + b, the LN-L2
// gradient Gp, W += tok_L XKᵀ(−Gp)) and the output (Zq = XQ W + b, Mt = diag(tok) tril(XQ XKᵀ + β),
// Z̄ = Zq + Mt(−Gp), out = XQ + LN(Z̄)). Only the first part is a recurrence. So:
//  - the state walk (fwd_state_block, one block per (b, h), ReplaySmem): the replay kernel's chain
//    from W0, b0 over every chunk, storing what the walk stores (the state entering every G-th
//    chunk, the final state, the accumulators of a partial last chunk) and the state entering every
//    chunk as a snapshot (W as product operands, b as float32: ttt_linear_replay.cuh's layout) in a
//    workspace the launcher allocates; with bf16 storage the walk keeps W in MMA accumulators instead
//    (ttt_linear_fwd_warp.cuh: W's snapshot in fragment order, which fwd_out_block reads as such);
//  - the outputs (fwd_out_block, B·H·R blocks of Q chunks, FwdSmem): each chunk's F1..F4 from its
//    snapshot, the same operands the walk multiplies (so the same results).
// Overlapped (p.overlap, the default): one grid, the B·H walks first, then the output blocks in
// range order (range 0 of every (b, h) first); a walk sets a flag per range once the range's
// snapshots are written, and the range's output block waits for it (fwd_overlap_block).
#pragma once

#include "kernels/cuda/ttt_linear_bwd.cuh"
#include "kernels/cuda/ttt_linear_fwd_warp.cuh"

namespace ttt::cuda_impl::tttk {

template <class C>
TTT_DEV void fwd_state_block(const Params& p, int bh, char* smem) {
  if constexpr (warp_walk<C>()) {  // ttt_linear_fwd_warp.cuh
    static_assert(sizeof(WarpWalkSmem<C>) <= sizeof(ReplaySmem<C>), "the launchers size the walk's smem as ReplaySmem");
    return fwd_state_regs<C>(p, bh, smem);
  }
  auto& S = *reinterpret_cast<ReplaySmem<C>*>(smem);
  constexpr int F = C::F;
  const int b = bh / p.H, h = bh % p.H, cw = 16 * warp();
  using IO = typename C::IO;
  const IO *xk = p.xk.base<IO>(b, h), *xv = p.xv.base<IO>(b, h);
  const float* lr = p.lr.base(b, h);
  replay_prefetch<C>(p, S, xk, xv, lr, 0, 0);
  Acc<F / 8> W;
  load_initial_state<C>(p, bh, S, W, cw);
  bool committed_last = true;
  PhaseClock clk(p, bh);  // probe slot 5: the block's total
  for (int k = 0; k < p.NC; ++k) {
    const int buf = k & 1;
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    const bool commit = n == p.K;
    simt::cp_async_wait_all();
    simt::sync();  // the tiles have landed; the readers of the other buffer and of S.b are done
    if (k + 1 < p.NC) replay_prefetch<C>(p, S, xk, xv, lr, buf ^ 1, k + 1);
    replay_tiles<C>(S, buf);
    if (k % p.G == 0) {  // the state entering this chunk, for the backward's replay
      float* st = p.states + (static_cast<int64_t>(bh) * p.NG + k / p.G) * (F * F + F);
      store_state_rows<C>(W, st, cw);
      for (int i = tid(); i < F; i += C::THREADS) st[F * F + i] = S.b[i];
    }
    write_snapshot<C>(p, S, W, bh, k);
    replay_gradient<C>(p, S, W, buf, n, cw);
    simt::sync();
    if (p.overlap && (k % p.Q == p.Q - 1 || k == p.NC - 1) && tid() == 0) simt::flag_set(fwd_done(p, F, bh, k / p.Q));
    commit_chunk<C>(p, S, W, bh, k, n, cw);
    committed_last = commit;
  }
  finish_state<C>(p, S, W, bh, committed_last, cw);  // S.b's owner threads wrote it last
  clk.total(5);
}

// The outputs of chunks r·Q .. r·Q + Q − 1 of one (b, h) (block = (b, h, r)); each chunk's tiles
// come into registers one chunk ahead, its state snapshot by cp.async.
template <class C>
TTT_DEV void fwd_out_block(const Params& p, int blk, char* smem) {
  auto& S = *reinterpret_cast<FwdSmem<C>*>(smem);
  const int bh = blk / p.R, r = blk % p.R, b = bh / p.H, h = bh % p.H, cw = 16 * warp();
  const int lo = r * p.Q, hi = lo + p.Q < p.NC ? lo + p.Q : p.NC;
  load_head_constants<C>(p, h, S, nullptr);
  const HeadBases<C> hb(p, b, h);
  ChunkRegs<C> next;
  next.load(p, hb, lo);
  if (p.overlap) simt::flag_wait(fwd_done(p, C::F, bh, r));  // the range's snapshots are written
  const RowLane<C> rl;
  PhaseClock clk(p, blk);  // probe slot 6: the block's total
  for (int k = lo; k < hi; ++k) {
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    simt::sync();  // the previous chunk's readers are done
    FragB<C::MMA> wf[C::F / 16];  // the register walk's snapshot: this warp's B fragments of W
    if constexpr (warp_walk<C>()) {
      const char* snap = snapshot<C>(p, bh, k);
#pragma unroll
      for (int kk = 0; kk < C::F / 16; ++kk) {
        const U4 u = *reinterpret_cast<const U4*>(snap + snapshot_frag_offset(C::F, kk, warp(), lane()));
        wf[kk].r[0] = u.x, wf[kk].r[1] = u.y, wf[kk].r[2] = u.z, wf[kk].r[3] = u.w;
      }
      for (int i = tid(); i < C::F / 4; i += C::THREADS) simt::cp_async16(S.b + 4 * i, snap + 2 * C::F * C::F + 16 * i);
    } else {
      state_in_async<C>(snapshot<C>(p, bh, k), S.ow, S.b);
    }
    simt::cp_async_commit();
    next.q.store(S.xq[0], S.oq);
    next.k.store(S.xk[0], S.ok);
    next.v.store(S.xv[0], nullptr);
    if (tid() < KP) S.lr[tid()] = next.lr;
    if (k + 1 < hi) next.load(p, hb, k + 1);
    simt::cp_async_wait_all();
    simt::sync();
    // F1
    Acc<2> z1, zq;
    if constexpr (warp_walk<C>())
      xw_pair<C>(z1, zq, S.ok, S.oq, S.b, cw, [&](FragB<C::MMA>& bb, int k0) { bb = wf[k0 / 16]; });
    else
      xw_pair<C>(z1, zq, S.ok, S.oq, S.b, cw, [&](FragB<C::MMA>& bb, int k0) { load_b(bb, S.ow, C::OS, k0, cw); });
    store_f32(z1, S.z, C::FS, 0, cw);
    attention_partial<C>(S.oq, S.ok, S.spart);
    simt::sync();
    // F2
    inner_grad_rows<C>(p, S.z, S.xk[0], S.xv[0], S.lr, S.lnw, S.lnb, n, S.gp, S.ogp, nullptr, nullptr, nullptr,
                       nullptr, S.spart, S.tok, S.omt, nullptr);
    simt::sync();
    // F3: Z̄ = Zq + Mt (−Gp)
    add_mt_gp<C>(zq, S.omt, S.ogp, cw);
    store_f32(zq, S.zb, C::FS, 0, cw);
    simt::sync();
    // F4
    output_rows<C>(p, S, rl, S.xq[0], hb.out, t0, n);
  }
  clk.total(6);
}

// One block of the overlapped forward grid: [0, B·H) the walks, then B·H·R output blocks, range 0
// of every (b, h) first, the order in which the walks finish ranges.
TTT_HD int64_t fwd_overlap_blocks(const Params& p) { return static_cast<int64_t>(p.B) * p.H * (1 + p.R); }
template <class C>
TTT_DEV void fwd_overlap_block(const Params& p, int blk, char* smem) {
  const int n = p.B * p.H;
  if (blk < n) return fwd_state_block<C>(p, blk, smem);
  const int i = blk - n;
  fwd_out_block<C>(p, (i % n) * p.R + i / n, smem);  // (b, h) = i % n, range i / n
}

}  // namespace ttt::cuda_impl::tttk
