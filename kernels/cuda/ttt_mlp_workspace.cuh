// kernels/cuda/ttt_mlp_workspace.cuh — where the fused TTT-MLP kernels keep state between their
// launches and blocks (kernels/ttt_mlp_scan.h; TTTMLPScanBackward::workspace_bytes sizes it): the
// forward's stored states (float32, every G-th chunk), and in the backward's workspace the per-(b, h)
// parameter-gradient partials, the replay's snapshots (the state entering every other chunk, as the
// reverse walk reads it) and the overlapped backward's flags; how the walk reads a state.
#pragma once

#include "kernels/cuda/ttt_mlp_common.cuh"

namespace ttt::cuda_impl::tttm {

// Floats of one (b, h)'s parameter-gradient partials in the backward's workspace (ttt_mlp_bwd.cuh),
// rounded up to 4 so that the snapshots after them start 16-byte aligned.
TTT_HD int64_t partial_size(int F, int K) { return state_size(F) + 2 * F + (K + 3) / 4 * 4; }

// The state stored every G chunks (the forward writes it, float32, flat), entering chunk k = g·G.
TTT_HD float* stored_state(const Params& p, int F, int bh, int g) {
  return p.states + (static_cast<int64_t>(bh) * p.NG + g) * state_size(F);
}

// A replay snapshot (TTTMLPScanShape::replay_snapshot_bytes): the state entering a chunk inside a
// checkpoint group as the reverse walk reads it: W1 [F, HD] and W2 [HD, F] as product operands
// (C::Op: bf16 with tensor-core products), then b1 [HD] and b2 [F] in float32. Every part starts
// 16-byte aligned. The workspace holds G − 1 of them per group (chunks k0 + 1 .. k0 + G − 1),
// replay_slots() per (b, h), after the per-(b, h) partials.
template <class C>
constexpr int64_t snapshot_bytes() {
  return 8 * int64_t{C::F} * C::F * sizeof(typename C::Op) + 5 * int64_t{C::F} * sizeof(float);
}
TTT_HD int64_t replay_slots(const Params& p) { return p.G > 1 ? static_cast<int64_t>(p.NG) * (p.G - 1) : 0; }
// Where the snapshots start (after every (b, h)'s partials) and, past all of them, the flags.
TTT_HD char* snapshots_base(const Params& p, int F) {
  return reinterpret_cast<char*>(p.ws + static_cast<int64_t>(p.B) * p.H * partial_size(F, p.K));
}
template <class C>
TTT_HD char* replay_snapshot(const Params& p, int bh, int k) {
  const int64_t slot = static_cast<int64_t>(k / p.G) * (p.G - 1) + k % p.G - 1;
  return snapshots_base(p, C::F) + (bh * replay_slots(p) + slot) * snapshot_bytes<C>();
}

// The blocks of a unit of work: C::NCTA for a cluster configuration, else one.
template <class C>
constexpr int blocks_of_unit() {
  if constexpr (is_cluster_cfg<C>::value)
    return C::NCTA;
  else
    return 1;
}

// The overlapped backward's flags (ttt_mlp_bwd_overlap.cuh), after the replay snapshots in the
// workspace: one per replay block ((b, h), group, rank; room for 4 blocks a unit,
// TTTMLPScanBackward::workspace_bytes), zeroed before the grid starts.
template <class C>
TTT_HD unsigned* replay_flags(const Params& p) {
  return reinterpret_cast<unsigned*>(snapshots_base(p, C::F) +
                                     static_cast<int64_t>(p.B) * p.H * replay_slots(p) * snapshot_bytes<C>());
}
TTT_HD int64_t replay_flag_count(const Params& p) { return static_cast<int64_t>(p.B) * p.H * p.NG * 4; }
template <class C>
TTT_HD unsigned* replay_done(const Params& p, int bh, int g, int rank) {
  return replay_flags<C>(p) + (static_cast<int64_t>(bh) * p.NG + g) * 4 + rank;
}

// Called by every thread of a reverse walk's block before chunk k (overlapped backward only): where k
// is the last chunk of its group and the group has chunks from snapshots, waits until every block of
// the group's replay has set its flag.
template <class C>
TTT_DEV void wait_for_replay(const Params& p, int bh, int k) {
  if (!p.overlap || k % p.G == 0 || (k != p.NC - 1 && k % p.G != p.G - 1)) return;
  for (int r = 0; r < blocks_of_unit<C>(); ++r) simt::flag_wait(replay_done<C>(p, bh, k / p.G, r));
}

// A state's parts where the reverse walk reads them: W1, W2 of element type T (float: a stored state;
// C::Op: a replay snapshot), b1, b2 float32.
template <class T>
struct StateView {
  const T *w1, *w2;
  const float *b1, *b2;
};
TTT_HD StateView<float> stored_view(const float* st, int F) {
  return {st, st + off_w2(F), st + off_b1(F), st + off_b2(F)};
}
template <class C>
TTT_HD StateView<typename C::Op> snapshot_view(const char* snap) {
  using Op = typename C::Op;
  const Op* w1 = reinterpret_cast<const Op*>(snap);
  const float* b1 = reinterpret_cast<const float*>(w1 + 8 * C::F * C::F);
  return {w1, w1 + 4 * C::F * C::F, b1, b1 + C::HD};
}

// The block's part of chunk k's replay snapshot (h0: its first hidden unit; b2 by the block holding
// unit 0), from the warps' registers: the operands rounded as the walk's products would round them.
template <class C>
TTT_DEV void store_snapshot_part(const StateRegs<C>& W, const float* b1, const float* b2, int h0, char* snap) {
  using Op = typename C::Op;
  Op* const w1 = reinterpret_cast<Op*>(snap);
  Op* const w2 = w1 + 4 * C::F * C::F;
  float* const sb1 = reinterpret_cast<float*>(w2 + 4 * C::F * C::F);
  const int hw = h0 + 16 * warp();
#pragma unroll
  for (int mt = 0; mt < C::F / 16; ++mt) store_op(W.w1[mt], w1, C::HD, 16 * mt, hw);
  store_op(W.w2, w2, C::F, hw, 0);
  for (int i = tid(); i < C::HDL; i += C::THREADS) sb1[h0 + i] = b1[i];
  if (h0 == 0)
    for (int i = tid(); i < C::F; i += C::THREADS) sb1[C::HD + i] = b2[i];
}

// The block's partials of the parameter gradients: dW1, db1, dW2, db2 (a flat state), dln_w, dln_b,
// dtok; after those, the replay's snapshots (replay_snapshot() above).
TTT_HD float* partials(const Params& p, int F, int bh) { return p.ws + static_cast<int64_t>(bh) * partial_size(F, p.K); }

// Eight consecutive operands at dst (op_at keeps an 8-aligned piece contiguous under the swizzle)
// from a state's W: float32 (a stored state: two 16-byte loads) or operands already (a replay
// snapshot: one 16-byte load, no conversion).
template <class OpT>
TTT_DEV void put_ops8(OpT* dst, const float* src) {
  const tttk::Vec4 a = reinterpret_cast<const tttk::Vec4*>(src)[0], b = reinterpret_cast<const tttk::Vec4*>(src)[1];
  put_op2(dst, a.x, a.y);
  put_op2(dst + 2, a.z, a.w);
  put_op2(dst + 4, b.x, b.y);
  put_op2(dst + 6, b.z, b.w);
}
// Operands already: one asynchronous 16-byte copy (cp.async), so that every copy of the thread is
// in flight at once; the caller waits for them (load_w_ops_wait) before the block barrier that
// publishes them.
TTT_DEV void put_ops8(uint16_t* dst, const uint16_t* src) { simt::cp_async16(dst, src); }

// rows × cols of a row-major W (row stride ld_src, cols a multiple of 8) into the operand matrix m
// (row stride ld: a pointer or SwizzledOps), several 16-byte loads in flight per thread; from a
// replay snapshot the copies are asynchronous, and load_w_ops_wait() ends them.
template <class C, class M, class T>
TTT_DEV void load_w_ops(M m, int ld, const T* src, int ld_src, int rows, int cols) {
#pragma unroll 4
  for (int i = tid(); i < rows * cols / 8; i += C::THREADS) {
    const int r = 8 * i / cols, c = 8 * i % cols;
    put_ops8(op_at(m, ld, r, c), src + static_cast<int64_t>(r) * ld_src + c);
  }
}

// The calling thread's copies of load_w_ops done (a no-op after a float32 source).
TTT_DEV void load_w_ops_wait() {
  simt::cp_async_commit();
  simt::cp_async_wait_all();
}

// Calls fn(view) with chunk k's state as the reverse walk reads it: the stored state at a group
// boundary, else the replay's snapshot.
template <class C, class Fn>
TTT_DEV void with_walk_state(const Params& p, int bh, int k, Fn&& fn) {
  if (k % p.G == 0)
    fn(stored_view(stored_state(p, C::F, bh, k / p.G), C::F));
  else
    fn(snapshot_view<C>(replay_snapshot<C>(p, bh, k)));
}

// Asks L2 for `bytes` from base, one 128-byte line a thread and step (no registers or shared memory
// held; a line fetched before its writer wrote it is harmless: the writes update L2).
template <class C>
TTT_DEV void prefetch_bytes(const char* base, int64_t bytes) {
  for (int64_t i = int64_t{tid()} * 128; i < bytes; i += int64_t{C::THREADS} * 128) simt::prefetch_l2(base + i);
}

// Asks L2 for chunk k's state (stored state or snapshot: one contiguous range) a chunk before the
// walk loads it, so that load_chunk's reads come from L2 instead of HBM. One 128-byte line a thread
// and step; no registers or shared memory held. A line fetched before the replay wrote it is
// harmless: the replay's writes update L2, where the walk's loads read them.
template <class C>
TTT_DEV void prefetch_walk_state(const Params& p, int bh, int k) {
  with_walk_state<C>(p, bh, k, [&](const auto& st) {
    const char* const base = reinterpret_cast<const char*>(st.w1);
    prefetch_bytes<C>(base, reinterpret_cast<const char*>(st.b2 + C::F) - base);
  });
}

}  // namespace ttt::cuda_impl::tttm
