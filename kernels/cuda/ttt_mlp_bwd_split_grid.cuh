// kernels/cuda/ttt_mlp_bwd_split_grid.cuh — the split TTT-MLP backward (ttt_mlp_bwd_split.cuh,
// ttt_mlp_bwd_chain.cuh) as one grid: the chains (one block a head) start as soon as their last
// chunk's test path is written, and the replays and test paths of the other chunks run on the SMs
// the chains leave free, instead of three launches each waiting for the one before in full.
//
// Units (one block each, the launches' blocks) in grid order: the replays of every (b, h)'s last
// group (with groups > 1), the B·H chains, then per group g = NG − 1 .. 0 the replays of group g − 1
// and the test paths of group g's chunks (last chunk first). A replay block sets its flag when its
// snapshots are written (replay_done), a test-path block its own when its record is (prep_done); a
// test path waits for its group's replay (chunks that read a snapshot), a chain for the test path of
// each chunk before reading its record. Replays wait for nothing and every test path waits only for
// a replay earlier in the grid, so while the chains leave an SM free (scan_launch::leaves_sm_free)
// the grid progresses in any dispatch order (the argument of ttt_mlp_bwd_overlap.cuh). Results are
// those of the launches bit for bit: the same blocks compute the same values.
#pragma once

#include "kernels/cuda/ttt_mlp_bwd_chain.cuh"

namespace ttt::cuda_impl::tttm {

TTT_HD int64_t split_units(const Params& p) {
  const int64_t n = static_cast<int64_t>(p.B) * p.H;
  return n * (p.NC + 1) + (p.G > 1 ? n * p.NG : 0);
}

enum class SplitRole { replay, chain, prep };
struct SplitUnit {
  SplitRole role;
  int bh, at;  // at: the group (replay) or the chunk (prep)
};
TTT_HD SplitUnit split_unit(const Params& p, int64_t u) {
  const int64_t n = static_cast<int64_t>(p.B) * p.H;
  const bool replays = p.G > 1;
  if (replays) {
    if (u < n) return {SplitRole::replay, static_cast<int>(u), p.NG - 1};
    u -= n;
  }
  if (u < n) return {SplitRole::chain, static_cast<int>(u), 0};
  u -= n;
  for (int g = p.NG - 1; g >= 0; --g) {
    if (replays && g >= 1) {
      if (u < n) return {SplitRole::replay, static_cast<int>(u), g - 1};
      u -= n;
    }
    const int k1 = (g + 1) * p.G < p.NC ? (g + 1) * p.G - 1 : p.NC - 1, chunks = k1 - g * p.G + 1;
    if (u < n * chunks) return {SplitRole::prep, static_cast<int>(u % n), k1 - static_cast<int>(u / n)};
    u -= n * chunks;
  }
  return {SplitRole::chain, -1, -1};  // past the grid: not reached
}

// Unit u of the grid (C: one block a unit).
template <class C>
TTT_DEV void split_bwd_unit(const Params& p, int64_t u, char* smem) {
  const SplitUnit w = split_unit(p, u);
  if (w.role == SplitRole::chain) return chain_block<C>(p, w.bh, smem);
  if (w.role == SplitRole::replay) {
    replay_block<C>(p, w.bh * p.NG + w.at, smem);
    simt::sync();  // the block's snapshot writes, then the flag
    if (tid() == 0) simt::flag_set(replay_done<C>(p, w.bh, w.at, 0));
    return;
  }
  if (p.G > 1 && w.at % p.G != 0) simt::flag_wait(replay_done<C>(p, w.bh, w.at / p.G, 0));
  prep_block<C>(p, w.bh * p.NC + w.at, smem);
  simt::sync();  // the block's record writes, then the flag
  if (tid() == 0) simt::flag_set(prep_done<C>(p, w.bh, w.at));
}

}  // namespace ttt::cuda_impl::tttm
