// kernels/cuda/ttt_linear_replay.cuh — the first kernel of the fused TTT-Linear backward: the
// state entering every chunk, recomputed from the states the forward stored every G chunks
// (checkpointing through time), for all checkpoint groups at once.
//
// One thread block per (batch, head, checkpoint group g): from the stored state entering chunk
// k0 = g·G it runs the forward's state chain (Z1 = XK W + b, Gp = lr ⊙ LN-L2 gradient, W += tok_L
// XKᵀ (−Gp), b −= tok_L Σ Gp) over chunks k0 .. k1−2 and writes the state entering each chunk
// k0 .. k1−1 as its snapshot: W as product operands (bf16 or float32, row-major [F, F]) then b as
// float32 [F]. The reverse walk (ttt_linear_bwd.cuh) then reads chunk k's state from snapshot k.
//
// Why a kernel of its own (version 5, kernels/cuda/README.md): replaying a group inside the
// backward block put G − 1 forward chunks on the serial path of every group; the groups are
// independent given their stored states, so here they run side by side (B·H·NG blocks) in a
// fraction of that time, and the backward's serial path only has the reverse chunks left.
#pragma once

#include "kernels/cuda/ttt_linear_fwd.cuh"

namespace ttt::cuda_impl::tttk {

// --- the backward's workspace ------------------------------------------------------------------
// Per (b, h): NC snapshot slots (W as operands [F, F], then b as float32 [F]; NC·(F² + F) floats
// reserved), then, after those of every (b, h), the per-(b, h) partials of the parameter gradients.
template <class C>
constexpr int64_t snapshot_bytes() {
  return C::F * C::F * static_cast<int64_t>(sizeof(typename C::Op)) + 4 * C::F;
}
template <class C>
TTT_DEV char* snapshot(const Params& p, int bh, int k) {
  return reinterpret_cast<char*>(p.ws + static_cast<int64_t>(bh) * p.NC * (C::F * C::F + C::F)) +
         k * snapshot_bytes<C>();
}
// Chunk-parallel only (ttt_linear_chain.cuh), after the snapshots: per (b, h) and chunk the state
// gradient leaving the chunk (the snapshot layout), then per (b, h) and chunk the serial walk's
// inputs (chain_in_floats). The partials come last: [B·H, R] slots of F² + 3F + K floats.
TTT_HD int64_t chain_in_floats(int F) { return static_cast<int64_t>(F) * F + F + 3 * KP * F + KP; }
TTT_HD float* dsnap_base(const Params& p, int F) {
  return p.ws + static_cast<int64_t>(p.B) * p.H * p.NC * (F * F + F);
}
TTT_HD float* chain_in_base(const Params& p, int F) {
  return dsnap_base(p, F) + static_cast<int64_t>(p.B) * p.H * p.NC * (F * F + F);
}
TTT_HD float* partials_base(const Params& p, int F) {
  return p.par ? chain_in_base(p, F) + static_cast<int64_t>(p.B) * p.H * p.NC * chain_in_floats(F)
               : dsnap_base(p, F);
}
// Chunk-parallel, after the partials: per (b, h) and range two flags of the overlapped backward
// (ttt_linear_chain.cuh bwd_overlap_block): the direct pass has written the range's chain inputs,
// and the serial walk has written the range's state gradients. The launcher zeroes them.
TTT_HD unsigned* flags_base(const Params& p, int F) {
  return reinterpret_cast<unsigned*>(partials_base(p, F) +
                                     static_cast<int64_t>(p.B) * p.H * p.R * (F * F + 3 * F + p.K));
}
TTT_HD int64_t flag_count(const Params& p) { return 2 * static_cast<int64_t>(p.B) * p.H * p.R; }
TTT_HD unsigned* direct_done(const Params& p, int F, int bh, int r) { return flags_base(p, F) + 2 * (bh * p.R + r); }
TTT_HD unsigned* chain_done(const Params& p, int F, int bh, int r) { return direct_done(p, F, bh, r) + 1; }
template <class C>
TTT_DEV char* dsnap(const Params& p, int bh, int k) {
  return reinterpret_cast<char*>(dsnap_base(p, C::F) + static_cast<int64_t>(bh) * p.NC * (C::F * C::F + C::F)) +
         k * snapshot_bytes<C>();
}
template <class C>
TTT_DEV float* chain_in(const Params& p, int bh, int k) {
  return chain_in_base(p, C::F) + (static_cast<int64_t>(bh) * p.NC + k) * chain_in_floats(C::F);
}

// One [16, F] float32 tile of chunk rows t0.. into smem (row stride FS) by 16-byte cp.async from the
// (b, h) slice `base` (rows st apart); rows >= rows are 0.
template <class C>
TTT_DEV void tile_async(float* s, const float* base, int64_t st, int64_t t0, int rows) {
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int e = 4 * (tid() + j * C::THREADS), r = e / C::F, c = e % C::F;
    float* d = s + r * C::FS + c;
    if (r < rows) {
      simt::cp_async16(d, base + (t0 + r) * st + c);
    } else {
      *reinterpret_cast<Vec4*>(d) = Vec4{0.f, 0.f, 0.f, 0.f};
    }
  }
}

// bf16 storage (Cfg::BIO): a [16, F] tile lands by cp.async in a bf16 staging tile (row stride
// F + 8, one 16-byte piece per thread; rows >= rows are 0), and is widened into the float32 tile
// (and the operand copy) at the top of the chunk that uses it.
template <class C>
constexpr int stage_elems() {
  return C::BIO ? KP * (C::F + 8) : 8;
}
template <class C>
TTT_DEV void tile_async_bf16(uint16_t* s, const uint16_t* base, int64_t st, int64_t t0, int rows) {
  const int e = 8 * tid(), r = e / C::F, c = e % C::F;
  uint16_t* d = s + r * (C::F + 8) + c;
  if (r < rows) {
    simt::cp_async16(d, base + (t0 + r) * st + c);
  } else {
    *reinterpret_cast<U4*>(d) = U4{0, 0, 0, 0};
  }
}
template <class C>
TTT_DEV void widen_tile(const uint16_t* s, float* f, typename C::Op* op) {
  const int e = 8 * tid(), r = e / C::F, c = e % C::F;
  widen8<C>(*reinterpret_cast<const U4*>(s + r * (C::F + 8) + c), f + r * C::FS + c, op ? op + r * C::OS + c : nullptr);
}
// A tile of IO storage into smem by cp.async: float32 straight into the tile, bf16 into its staging.
template <class C>
TTT_DEV void tile_in_async(float* f, uint16_t* stage, const typename C::IO* base, int64_t st, int64_t t0, int rows) {
  if constexpr (C::BIO) tile_async_bf16<C>(stage, base, st, t0, rows);
  else tile_async<C>(f, base, st, t0, rows);
}

template <class C>
struct ReplaySmem {
  using Op = typename C::Op;
  alignas(16) float xk[2][KP * C::FS];  // double-buffered by cp.async one chunk ahead
  alignas(16) float xv[2][KP * C::FS];
  alignas(16) float lr[2][KP];
  alignas(16) float z[KP * C::FS];   // Z1
  alignas(16) float gp[KP * C::FS];  // Gp
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op ogp[KP * C::OS];    // −Gp
  alignas(16) Op ow[C::F * C::OS];   // W
  alignas(16) float b[C::F];
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  alignas(16) float tok[KP];
  alignas(16) uint16_t stage[2][2][stage_elems<C>()];  // [buffer][XK, XV] (bf16 storage only)
};

// Chunk k's XK, XV and lr into buffer `buf` (rows past the sequence are 0: the forward's state
// walk, ttt_linear_fwd_par.cuh, also reads a partial last chunk).
template <class C>
TTT_DEV void replay_prefetch(const Params& p, ReplaySmem<C>& S, const typename C::IO* xk, const typename C::IO* xv,
                             const float* lr, int buf, int k) {
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  tile_in_async<C>(S.xk[buf], S.stage[buf][0], xk, p.xk.st, t0, rows);
  tile_in_async<C>(S.xv[buf], S.stage[buf][1], xv, p.xv.st, t0, rows);
  if (tid() < KP) {
    if (tid() < rows) simt::cp_async4(&S.lr[buf][tid()], lr + (t0 + tid()) * p.lr.st);
    else S.lr[buf][tid()] = 0.f;
  }
  simt::cp_async_commit();
}

// The state (W: the warp's rows, b: S.b complete) as chunk k's snapshot.
template <class C>
TTT_DEV void write_snapshot(const Params& p, const ReplaySmem<C>& S, const Acc<C::F / 8>& W, int bh, int k) {
  char* snap = snapshot<C>(p, bh, k);
  store_op(W, reinterpret_cast<typename C::Op*>(snap), C::F, 16 * warp(), 0);
  float* b = reinterpret_cast<float*>(snap + C::F * C::F * sizeof(typename C::Op));
  for (int i = tid(); i < C::F; i += C::THREADS) b[i] = S.b[i];
}

// The chunk's XK and XV tiles of buffer buf widened (bf16 storage) and XK's operand copy in S.ok.
template <class C>
TTT_DEV void replay_tiles(ReplaySmem<C>& S, int buf) {
  if constexpr (C::BIO) {
    widen_tile<C>(S.stage[buf][0], S.xk[buf], S.ok);
    widen_tile<C>(S.stage[buf][1], S.xv[buf], nullptr);
  } else {
    for (int i = tid(); i < KP * C::F / 2; i += C::THREADS) {
      const int r = (2 * i) / C::F, c = (2 * i) % C::F;
      put_op2(S.ok + r * C::OS + c, S.xk[buf][r * C::FS + c], S.xk[buf][r * C::FS + c + 1]);
    }
  }
}

// The chunk's inner gradient from the state W (the warp's rows) and S.b: W's operand copy,
// Z1 = XK W + b, then the rows' Gp and −Gp (S.gp, S.ogp) for n rows.
template <class C>
TTT_DEV void replay_gradient(const Params& p, ReplaySmem<C>& S, const Acc<C::F / 8>& W, int buf, int n, int cw) {
  store_op(W, S.ow, C::OS, cw, 0);
  simt::sync();
  Acc<2> z1;
  xw_plus_b<C>(z1, S.ok, S.ow, S.b, cw);
  store_f32(z1, S.z, C::FS, 0, cw);
  simt::sync();
  inner_grad_rows<C>(p, S.z, S.xk[buf], S.xv[buf], S.lr[buf], S.lnw, S.lnb, n, S.gp, S.ogp, nullptr, nullptr,
                     nullptr, nullptr);
}

template <class C>
TTT_DEV void replay_block(const Params& p, int blk, char* smem) {
  auto& S = *reinterpret_cast<ReplaySmem<C>*>(smem);
  constexpr int F = C::F;
  const int bh = blk / p.NG, g = blk % p.NG, b = bh / p.H, h = bh % p.H, cw = 16 * warp();
  const int k0 = g * p.G, k1 = (g + 1) * p.G < p.NC ? (g + 1) * p.G : p.NC;
  const float tokL = p.tok[p.K - 1];
  using IO = typename C::IO;
  const IO *xk = p.xk.base<IO>(b, h), *xv = p.xv.base<IO>(b, h);
  const float* lr = p.lr.base(b, h);
  if (k0 + 1 < k1) replay_prefetch<C>(p, S, xk, xv, lr, 0, k0);
  load_head_constants<C>(p, h, S, nullptr);
  Acc<F / 8> W;
  const float* st = p.states + (static_cast<int64_t>(bh) * p.NG + g) * (F * F + F);
  load_state_rows<C>(W, st, cw);
  for (int i = tid(); i < F; i += C::THREADS) S.b[i] = st[F * F + i];
  simt::sync();
  write_snapshot<C>(p, S, W, bh, k0);
  for (int k = k0; k + 1 < k1; ++k) {
    const int buf = (k - k0) & 1;
    simt::cp_async_wait_all();
    simt::sync();  // the tiles have landed; the readers of the other buffer are done
    if (k + 2 < k1) replay_prefetch<C>(p, S, xk, xv, lr, buf ^ 1, k + 1);
    replay_tiles<C>(S, buf);
    replay_gradient<C>(p, S, W, buf, p.K, cw);
    simt::sync();
    Acc<F / 8> P;
    state_update_product<C>(P, S.ok, S.ogp, cw);
#pragma unroll
    for (int i = 0; i < F / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) W.v[i][e] += tokL * P.v[i][e];
    if (p.bias)
      for (int c = tid(); c < F; c += C::THREADS) S.b[c] -= tokL * gp_column_sum<C>(S.gp, c);
    simt::sync();  // S.b complete
    write_snapshot<C>(p, S, W, bh, k + 1);
  }
}

}  // namespace ttt::cuda_impl::tttk
