// kernels/cuda/ttt_linear_fwd_warp.cuh — the chunk-parallel forward's state walk in one warp
// (scan version 8; bf16 storage and products, head_dim <= 64).
//
// Why: at batch 1 (prefill) the forward's time is this walk, one chunk after another: 1,024 chunks
// per (b, h) at 16k tokens. fwd_state_block (ttt_linear_fwd_par.cuh) takes ~4,000 cycles a chunk:
// four warps, five block barriers, W through shared memory every chunk. Here one warp holds the
// whole state, as Wᵀ in MMA accumulator tiles (F/16 × F/8 tiles: 128 registers a lane at F = 64):
//  - the accumulator layout of Wᵀ (rows g, g + 8; cols 2t, 2t + 1) is the B-fragment layout of W
//    (rows 2t, 2t + 1; col g), so Z1 = XK W + b packs W's fragments straight from the registers
//    (the FlashAttention-2 reuse of P as an operand);
//  - Z1's rows (tokens g, g + 8) lie within the four lanes of a quad: the LN-L2 gradient's row
//    sums are two shuffles, with no barrier;
//  - the update Wᵀ += (−tok_L Gp)ᵀ XK accumulates into the same registers (A = Gpᵀ through one
//    shared-memory tile and ldmatrix.trans, B = XK by ldmatrix.trans);
// and nothing waits on a block barrier (only __syncwarp). The state entering each chunk goes out
// as its snapshot in fragment order (snapshot_frag_offset: 16-byte stores; the output blocks load
// their B fragments from it directly, fwd_out_block).
//
// Math: that of fwd_state_block, except that tok_L is folded into the bf16 operand −tok_L Gp (the
// four-warp walk multiplies the product of bf16(−Gp) by tok_L in float32), the row statistics sum
// in another order, and b's column sums of Gp are butterflies. float32 throughout but the operands.
#pragma once

#include "kernels/cuda/ttt_linear_replay.cuh"

namespace ttt::cuda_impl::tttk {

// The chunk-parallel forward's workspace: the snapshots (ttt_linear_replay.cuh snapshot()), then the
// overlapped forward's flags, one per (b, h, range) (the launcher zeroes them).
TTT_HD int64_t fwd_snapshot_floats(const Params& p, int F) {
  return static_cast<int64_t>(p.B) * p.H * p.NC * (F * F + F);
}
TTT_HD unsigned* fwd_done(const Params& p, int F, int bh, int r) {
  return reinterpret_cast<unsigned*>(p.ws + fwd_snapshot_floats(p, F)) + static_cast<int64_t>(bh) * p.R + r;
}

// Which configurations walk in one warp: bf16 storage (so bf16 products) and Wᵀ within registers.
template <class C>
constexpr bool warp_walk() {
  return C::BIO && C::F <= 64;
}

// Byte offset, in a chunk's snapshot, of lane l's 16 bytes for k-step kk (W rows 16kk ..) and
// column pair jp (W columns 16jp .. 16jp + 15): its B fragments of X W, i.e. W rows 16kk + 2t, +1
// and 16kk + 8 + 2t, +1 at column 16jp + g, then the same at column 16jp + 8 + g (FragB's r[0..3]).
// F² bf16 in all, as the row-major snapshot.
TTT_HD int64_t snapshot_frag_offset(int F, int kk, int jp, int l) {
  return ((static_cast<int64_t>(kk) * (F / 16) + jp) * 32 + l) * 16;
}

// Chunk tiles in a ring: chunk k in buffer k % kWalkBufs, requested kWalkBufs − 1 chunks ahead.
constexpr int kWalkBufs = 4;

template <class C>
struct WarpWalkSmem {
  static constexpr int S = C::F + 8;  // bf16 row stride: 16-byte rows, ldmatrix free of bank conflicts
  alignas(16) uint16_t xk[kWalkBufs][KP * S];
  alignas(16) uint16_t xv[kWalkBufs][KP * S];
  alignas(16) float lr[kWalkBufs][KP];
  alignas(16) uint16_t gp[KP * S];  // the update's operand c·Gp, row-major [token][feature]
  alignas(16) float b[C::F];
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
};

// The warp's registers: Wᵀ as accumulator tiles. wt[mi][nj][e] is Wᵀ[16mi + g + 8(e>>1)][8nj + 2t +
// (e&1)] = W[8nj + 2t + (e&1)][16mi + g + 8(e>>1)].
template <class C>
struct WalkState {
  static constexpr int NM = C::F / 16, NN = C::F / 8;
  float wt[NM][NN][4];

  // Index of W[row][col] held at (mi, nj, e), as a flat row-major offset: loads and stores of W.
  TTT_DEV static int w_index(int mi, int nj, int e) {
    const int g = lane() >> 2, t = lane() & 3;
    return (8 * nj + 2 * t + (e & 1)) * C::F + 16 * mi + g + 8 * (e >> 1);
  }
  TTT_DEV void load(const float* w) {
#pragma unroll
    for (int mi = 0; mi < NM; ++mi)
#pragma unroll
      for (int nj = 0; nj < NN; ++nj)
#pragma unroll
        for (int e = 0; e < 4; ++e) wt[mi][nj][e] = w[w_index(mi, nj, e)];
  }
  TTT_DEV void store(float* w) const { store_tiles(wt, w); }
  // Any [NM][NN][4] tile set in this layout (Wᵀ or the accumulators' transpose) as row-major [F, F].
  TTT_DEV static void store_tiles(const float (&v)[NM][NN][4], float* w) {
#pragma unroll
    for (int mi = 0; mi < NM; ++mi)
#pragma unroll
      for (int nj = 0; nj < NN; ++nj)
#pragma unroll
        for (int e = 0; e < 4; ++e) w[w_index(mi, nj, e)] = v[mi][nj][e];
  }
  // W's B fragment of X W for k-step kk and n-tile jn: {W[16kk + 2t, +1][8jn + g], W[16kk + 8 + 2t, +1][8jn + g]}.
  TTT_DEV void w_frag(int kk, int jn, uint32_t (&b)[2]) const {
    const int mi = jn >> 1, h = 2 * (jn & 1);
    b[0] = simt::pack_bf16(wt[mi][2 * kk][h], wt[mi][2 * kk][h + 1]);
    b[1] = simt::pack_bf16(wt[mi][2 * kk + 1][h], wt[mi][2 * kk + 1][h + 1]);
  }
};

// The two bf16 halves of a packed register as floats.
TTT_DEV float bf_lo(uint32_t w) { return bf16{static_cast<uint16_t>(w & 0xffffu)}.to_float(); }
TTT_DEV float bf_hi(uint32_t w) { return bf16{static_cast<uint16_t>(w >> 16)}.to_float(); }

// Chunk k's XK, XV (bf16, rows past the sequence 0) and lr (0 past it) into ring buffer buf; one commit group.
template <class C>
TTT_DEV void walk_prefetch(const Params& p, WarpWalkSmem<C>& S, const uint16_t* xk, const uint16_t* xv,
                           const float* lr, int k) {
  constexpr int F = C::F, SS = WarpWalkSmem<C>::S, pieces = KP * F / 8;
  const int buf = k % kWalkBufs;
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  for (int i = lane(); i < pieces; i += 32) {
    const int r = i / (F / 8), c = 8 * (i % (F / 8));
    uint16_t *dk = S.xk[buf] + r * SS + c, *dv = S.xv[buf] + r * SS + c;
    if (r < rows) {
      simt::cp_async16(dk, xk + (t0 + r) * p.xk.st + c);
      simt::cp_async16(dv, xv + (t0 + r) * p.xv.st + c);
    } else {
      *reinterpret_cast<U4*>(dk) = U4{0, 0, 0, 0};
      *reinterpret_cast<U4*>(dv) = U4{0, 0, 0, 0};
    }
  }
  if (lane() < KP) {
    if (lane() < rows) simt::cp_async4(&S.lr[buf][lane()], lr + (t0 + lane()) * p.lr.st);
    else S.lr[buf][lane()] = 0.f;
  }
}

// Z1 = XK W + b of chunk k (buffer buf) into z (n-tile jn: features 8jn ..), writing the state W
// (fragment order) and b as the chunk's snapshot on the way; XK's A fragments stay in xa.
template <class C>
TTT_DEV void walk_z1(const Params& p, const WarpWalkSmem<C>& S, const WalkState<C>& W, int buf, char* snap,
                     FragA<true> (&xa)[C::F / 16], float (&z)[C::F / 8][4]) {
  constexpr int F = C::F, NM = F / 16, NN = F / 8, SS = WarpWalkSmem<C>::S;
  const int t = lane() & 3;
#pragma unroll
  for (int kk = 0; kk < NM; ++kk) load_a(xa[kk], S.xk[buf], SS, 0, 16 * kk);
#pragma unroll
  for (int jn = 0; jn < NN; ++jn) {
    const float2v b = *reinterpret_cast<const float2v*>(S.b + 8 * jn + 2 * t);
    z[jn][0] = b.x, z[jn][1] = b.y, z[jn][2] = b.x, z[jn][3] = b.y;
  }
#pragma unroll
  for (int kk = 0; kk < NM; ++kk)
#pragma unroll
    for (int jp = 0; jp < NN / 2; ++jp) {
      uint32_t f0[2], f1[2];
      W.w_frag(kk, 2 * jp, f0);
      W.w_frag(kk, 2 * jp + 1, f1);
      *reinterpret_cast<U4*>(snap + snapshot_frag_offset(F, kk, jp, lane())) = U4{f0[0], f0[1], f1[0], f1[1]};
      simt::mma_bf16(z[2 * jp], xa[kk].r, f0);
      simt::mma_bf16(z[2 * jp + 1], xa[kk].r, f1);
    }
  float* sb = reinterpret_cast<float*>(snap + 2 * F * F);
  for (int i = lane(); i < F / 4; i += 32) *reinterpret_cast<Vec4*>(sb + 4 * i) = *reinterpret_cast<const Vec4*>(S.b + 4 * i);
}

// Sum over the quad (the four lanes holding one row): every lane gets it.
TTT_DEV float quad_sum(float v) {
  v += simt::shfl_xor(v, 1);
  return v + simt::shfl_xor(v, 2);
}

// The row phase: for the chunk's rows g and g + 8, c · lr ⊙ (the LN-L2 gradient of Z1) (or of
// Z1 − XV without LN) into S.gp as the update's bf16 operand; its column sums over the 16 rows
// (float32, every lane) into cs.
template <class C>
TTT_DEV void walk_rows(const Params& p, WarpWalkSmem<C>& S, int buf, const FragA<true> (&xa)[C::F / 16],
                       const float (&z)[C::F / 8][4], float c, float (&cs)[C::F / 8][2]) {
  constexpr int F = C::F, NM = F / 16, NN = F / 8, SS = WarpWalkSmem<C>::S;
  const int g = lane() >> 2, t = lane() & 3;
  FragA<true> va[NM];  // XV in the same layout as XK's fragments
#pragma unroll
  for (int kk = 0; kk < NM; ++kk) load_a(va[kk], S.xv[buf], SS, 0, 16 * kk);
#pragma unroll
  for (int jn = 0; jn < NN; ++jn) cs[jn][0] = cs[jn][1] = 0.f;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = g + 8 * h;
    float tg[NN][2], x[NN][2];
#pragma unroll
    for (int jn = 0; jn < NN; ++jn) {
      const int reg = 2 * (jn & 1) + h;  // A fragment: r[0] rows g, r[1] rows g + 8, r[2], r[3] the same 8 columns on
      const uint32_t wv = va[jn >> 1].r[reg], wk = xa[jn >> 1].r[reg];
      tg[jn][0] = p.ln ? bf_lo(wv) - bf_lo(wk) : bf_lo(wv);
      tg[jn][1] = p.ln ? bf_hi(wv) - bf_hi(wk) : bf_hi(wv);
      x[jn][0] = z[jn][2 * h], x[jn][1] = z[jn][2 * h + 1];
    }
    float G[NN][2];
    if (p.ln) {
      float s = 0;
#pragma unroll
      for (int jn = 0; jn < NN; ++jn) s += x[jn][0] + x[jn][1];
      const float mu = quad_sum(s) * (1.f / F);
      float v = 0;
#pragma unroll
      for (int jn = 0; jn < NN; ++jn)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          x[jn][e] -= mu;
          v += x[jn][e] * x[jn][e];
        }
      const float inv = 1.f / sqrtf(quad_sum(v) * (1.f / F) + p.eps);
      float s1 = 0, s2 = 0;
#pragma unroll
      for (int jn = 0; jn < NN; ++jn) {
        const float2v w2 = *reinterpret_cast<const float2v*>(S.lnw + 8 * jn + 2 * t);
        const float2v b2 = *reinterpret_cast<const float2v*>(S.lnb + 8 * jn + 2 * t);
        const float w[2] = {w2.x, w2.y}, be[2] = {b2.x, b2.y};
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          x[jn][e] *= inv;  // x̂
          G[jn][e] = (w[e] * x[jn][e] + be[e] - tg[jn][e]) * w[e];  // gx
          s1 += G[jn][e];
          s2 += G[jn][e] * x[jn][e];
        }
      }
      const float m1 = quad_sum(s1) * (1.f / F), m2 = quad_sum(s2) * (1.f / F);
#pragma unroll
      for (int jn = 0; jn < NN; ++jn)
#pragma unroll
        for (int e = 0; e < 2; ++e) G[jn][e] = (G[jn][e] - m1 - x[jn][e] * m2) * inv;
    } else {
#pragma unroll
      for (int jn = 0; jn < NN; ++jn)
#pragma unroll
        for (int e = 0; e < 2; ++e) G[jn][e] = x[jn][e] - tg[jn][e];
    }
    const float scale = c * S.lr[buf][r];  // rows past the chunk have lr 0
#pragma unroll
    for (int jn = 0; jn < NN; ++jn) {
      const float v0 = scale * G[jn][0], v1 = scale * G[jn][1];
      *reinterpret_cast<uint32_t*>(S.gp + r * SS + 8 * jn + 2 * t) = simt::pack_bf16(v0, v1);
      cs[jn][0] += v0;
      cs[jn][1] += v1;
    }
  }
#pragma unroll
  for (int m = 4; m < 32; m <<= 1)
#pragma unroll
    for (int jn = 0; jn < NN; ++jn)
#pragma unroll
      for (int e = 0; e < 2; ++e) cs[jn][e] += simt::shfl_xor(cs[jn][e], m);
}

// acc (Wᵀ-shaped tiles) += (S.gp)ᵀ XK over the chunk's 16 rows.
template <class C>
TTT_DEV void walk_update(const WarpWalkSmem<C>& S, int buf, float (&acc)[C::F / 16][C::F / 8][4]) {
  constexpr int NM = C::F / 16, NN = C::F / 8, SS = WarpWalkSmem<C>::S;
  FragA<true> ga[NM];
  FragB<true> xb[NM];
#pragma unroll
  for (int i = 0; i < NM; ++i) {
    load_at(ga[i], S.gp, SS, 16 * i, 0);
    load_b(xb[i], S.xk[buf], SS, 0, 16 * i);
  }
#pragma unroll
  for (int mi = 0; mi < NM; ++mi)
#pragma unroll
    for (int nj = 0; nj < NN; ++nj) {
      const uint32_t bb[2] = {xb[nj >> 1].r[2 * (nj & 1)], xb[nj >> 1].r[2 * (nj & 1) + 1]};
      simt::mma_bf16(acc[mi][nj], ga[mi].r, bb);
    }
}

// The walk of one (b, h), run by warp 0 of its block alone (the other warps return at once):
// what fwd_state_block stores (the states every G chunks, the final state, a partial last chunk's
// accumulators), the snapshots in fragment order, and the overlapped grid's per-range flags.
template <class C>
TTT_DEV void fwd_state_warp(const Params& p, int bh, char* smem) {
  static_assert(warp_walk<C>(), "the one-warp walk needs bf16 storage and head_dim <= 64");
  auto& S = *reinterpret_cast<WarpWalkSmem<C>*>(smem);
  constexpr int F = C::F, NM = F / 16, NN = F / 8;
  const int b = bh / p.H, h = bh % p.H, i0 = p.init_bh ? bh : h;
  const uint16_t *xk = p.xk.base<uint16_t>(b, h), *xv = p.xv.base<uint16_t>(b, h);
  const float* lr = p.lr.base(b, h);
  for (int j = 0; j < kWalkBufs - 1; ++j) {  // one commit group each, empty past the last chunk
    if (j < p.NC) walk_prefetch<C>(p, S, xk, xv, lr, j);
    simt::cp_async_commit();
  }
  for (int i = lane(); i < F; i += 32) {
    S.b[i] = p.bias ? p.b0[static_cast<int64_t>(i0) * F + i] : 0.f;
    S.lnw[i] = p.ln ? p.lnw[h * F + i] : 1.f;
    S.lnb[i] = p.ln ? p.lnb[h * F + i] : 0.f;
  }
  WalkState<C> W;
  W.load(p.w0 + static_cast<int64_t>(i0) * F * F);
  const float tokL = p.tok[p.K - 1];
  PhaseClock clk(p, bh);  // probe slot 5: the block's total (as fwd_state_block)
  for (int k = 0; k < p.NC; ++k) {
    const int buf = k % kWalkBufs;
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    const bool commit = n == p.K;
    simt::cp_async_wait_group<kWalkBufs - 2>();
    simt::syncwarp();  // chunk k's tiles have landed; every lane is done with the buffer refilled next
    if (k + kWalkBufs - 1 < p.NC) walk_prefetch<C>(p, S, xk, xv, lr, k + kWalkBufs - 1);
    simt::cp_async_commit();
    if (p.states && k % p.G == 0) {  // the state entering this chunk, for the backward's replay
      float* st = p.states + (static_cast<int64_t>(bh) * p.NG + k / p.G) * (F * F + F);
      W.store(st);
      for (int i = lane(); i < F; i += 32) st[F * F + i] = S.b[i];
    }
    FragA<true> xa[NM];
    float z[NN][4];
    walk_z1<C>(p, S, W, buf, snapshot<C>(p, bh, k), xa, z);
    if (p.overlap && (k % p.Q == p.Q - 1 || k == p.NC - 1)) {  // the range's snapshots are written
      simt::syncwarp();
      if (lane() == 0) simt::flag_set(fwd_done(p, F, bh, k / p.Q));
    }
    float cs[NN][2];
    walk_rows<C>(p, S, buf, xa, z, commit ? -tokL : 1.f, cs);
    simt::syncwarp();  // S.gp complete
    if (commit) {
      walk_update<C>(S, buf, W.wt);
      if (p.bias && lane() < 4)
#pragma unroll
        for (int jn = 0; jn < NN; ++jn)
#pragma unroll
          for (int e = 0; e < 2; ++e) S.b[8 * jn + 2 * lane() + e] += cs[jn][e];
      simt::syncwarp();  // S.b updated
      continue;
    }
    // A partial chunk (the last): the state stays; its accumulators XKᵀ Gp, Σ Gp when asked for.
    if (p.w_final) W.store(p.w_final + static_cast<int64_t>(bh) * F * F);
    for (int i = lane(); i < F; i += 32)
      if (p.b_final) p.b_final[static_cast<int64_t>(bh) * F + i] = S.b[i];
    if (p.acc_w) {
      float acc[NM][NN][4] = {};
      walk_update<C>(S, buf, acc);
      WalkState<C>::store_tiles(acc, p.acc_w + static_cast<int64_t>(bh) * F * F);
    }
    if (p.acc_b && lane() < 4)
#pragma unroll
      for (int jn = 0; jn < NN; ++jn)
#pragma unroll
        for (int e = 0; e < 2; ++e) p.acc_b[static_cast<int64_t>(bh) * F + 8 * jn + 2 * lane() + e] = p.bias ? cs[jn][e] : 0.f;
    clk.total(5);
    return;
  }
  // Every chunk committed: the final state, and zero accumulators.
  if (p.w_final) W.store(p.w_final + static_cast<int64_t>(bh) * F * F);
  for (int i = lane(); i < F; i += 32) {
    if (p.b_final) p.b_final[static_cast<int64_t>(bh) * F + i] = S.b[i];
    if (p.acc_b) p.acc_b[static_cast<int64_t>(bh) * F + i] = 0.f;
  }
  if (p.acc_w)
    for (int i = lane(); i < F * F; i += 32) p.acc_w[static_cast<int64_t>(bh) * F * F + i] = 0.f;
  clk.total(5);
}

}  // namespace ttt::cuda_impl::tttk
