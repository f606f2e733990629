// kernels/cuda/ttt_mlp_bwd_overlap.cuh — the TTT-MLP backward's replay and reverse walk as one grid
// (with checkpoint groups > 1), so that the walks start as soon as their last group is replayed and
// the other groups replay on the SMs the walks leave free, instead of a replay launch that every walk
// waits for in full.
//
// Units (a block, or a cluster of C::NCTA blocks, each as the two-launch backward runs it) in grid
// order: the replays of every (b, h)'s last group, then the B·H reverse walks, then the replays of
// groups NG − 2 .. 0. Every replay block sets a flag when its part of the snapshots is written
// (replay_done); a walk block waits, before the first chunk of a group it reads snapshots of, for the
// flags of every block of that group's replay (its own part of W1, W2, b1 and block 0's b2). Only
// walks wait, and only for replays, which wait for nothing: while the walks leave an SM free
// (scan_launch::leaves_sm_free) the grid progresses in any dispatch order (the TTT-Linear
// chunk-parallel backward's overlapped grid, ttt_linear_chain.cuh, relies on the same argument).
// The flags (flag_set / flag_wait, simt.cuh) follow CUTLASS's split-k semaphore: a block barrier,
// then one thread's release; each waiting thread's own acquire.
//
// Results are bit for bit those of the two launches: the same blocks compute the same values.
#pragma once

#include "kernels/cuda/ttt_mlp_bwd.cuh"
#include "kernels/cuda/ttt_mlp_bwd_cluster.cuh"

namespace ttt::cuda_impl::tttm {

// Units of the grid: B·H walks and B·H·NG replays.
TTT_HD int64_t overlap_units(const Params& p) { return static_cast<int64_t>(p.B) * p.H * (p.NG + 1); }

struct OverlapUnit {
  bool replay;
  int bh, group;
};
TTT_HD OverlapUnit overlap_unit(const Params& p, int u) {
  const int n = p.B * p.H;
  if (u < n) return {true, u, p.NG - 1};
  if (u < 2 * n) return {false, u - n, 0};
  u -= 2 * n;
  return {true, u % n, p.NG - 2 - u / n};
}

// Unit u of the grid (C a Cfg: one block; a ClusterCfg: the cluster's block of rank cluster_rank()).
// ptxas at head_dim 64 (one block a unit): 356 bytes of spill stores in the one kernel, where the
// walk's kernel alone spills 224 and the replay's 32 (the two programs share one register
// allocation). On an H100 the grid still beats the two launches: one 125M layer at 8 × 2048 5.14
// against 5.52 ms fwd + bwd (BENCHMARKS.md, session 23).
template <class C>
TTT_DEV void overlap_bwd_unit(const Params& p, int u, char* smem) {
  const OverlapUnit w = overlap_unit(p, u);
  if (!w.replay) {
    if constexpr (is_cluster_cfg<C>::value)
      cluster_bwd_block<C>(p, w.bh, smem);
    else
      bwd_block<C>(p, w.bh, smem);
    return;
  }
  if constexpr (is_cluster_cfg<C>::value)
    cluster_replay_block<C>(p, w.bh * p.NG + w.group, smem);
  else
    replay_block<C>(p, w.bh * p.NG + w.group, smem);
  simt::sync();  // the block's snapshot writes, then the flag
  if (tid() == 0) simt::flag_set(replay_done<C>(p, w.bh, w.group, blocks_of_unit<C>() > 1 ? simt::cluster_rank() : 0));
}

}  // namespace ttt::cuda_impl::tttm
