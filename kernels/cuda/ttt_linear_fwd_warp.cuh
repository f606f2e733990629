// kernels/cuda/ttt_linear_fwd_warp.cuh — the chunk-parallel forward's state walk with W in MMA
// accumulators (scan version 8; bf16 storage and products).
//
// Why: at batch 1 (prefill) the forward's time is this walk, one chunk after another: 1,024 chunks
// per (b, h) at 16k tokens. fwd_state_block (ttt_linear_fwd_par.cuh) takes ~4,400 cycles a chunk:
// five block barriers, and W through shared memory every chunk (stored by rows, read by columns).
// Here warp w holds rows 16w .. 16w + 15 of Wᵀ (W's columns: the features of Z1 it computes) as
// accumulator tiles, for every input feature (F/8 tiles: 32 registers a lane at F = 64), so that
//  - the accumulator layout of Wᵀ (rows g, g + 8; cols 2t, 2t + 1) is the B-fragment layout of W
//    (rows 2t, 2t + 1; col g): Z1's columns 16w .. = XK W + b pack W's fragments straight from the
//    registers (the FlashAttention-2 reuse of P as an operand), and go out as the chunk's snapshot
//    in that fragment order (snapshot_frag_offset: 16-byte stores; fwd_out_block loads its B
//    fragments from it directly);
//  - the update Wᵀ[16w ..] += (−tok_L Gp[:, 16w ..])ᵀ XK needs only the warp's own columns of Gp
//    (through a shared-memory tile and ldmatrix.trans, a __syncwarp) and XK;
//  - only the LN-L2 gradient's row statistics cross warps: two block barriers a chunk (mean and M2
//    merged with Chan's formula, then the two sums of the gradient's projection).
// The chunk tiles come by cp.async three chunks ahead into a ring of five.
//
// Math: that of fwd_state_block, except that tok_L is folded into the bf16 operand −tok_L Gp (the
// block walk multiplies the product of bf16(−Gp) by tok_L in float32), the row statistics sum in
// another order, and b's column sums of Gp are butterflies. float32 throughout but the operands.
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

// Which configurations walk with W in registers: bf16 storage (so bf16 products).
template <class C>
constexpr bool warp_walk() {
  return C::BIO;
}

// Byte offset, in a chunk's snapshot, of lane l's 16 bytes for k-step kk (W rows 16kk ..) and
// column pair jp (W columns 16jp .. 16jp + 15): its B fragments of X W, i.e. W rows 16kk + 2t, +1
// and 16kk + 8 + 2t, +1 at column 16jp + g, then the same at column 16jp + 8 + g (FragB's r[0..3]).
// F² bf16 in all, as the row-major snapshot.
TTT_HD int64_t snapshot_frag_offset(int F, int kk, int jp, int l) {
  return ((static_cast<int64_t>(kk) * (F / 16) + jp) * 32 + l) * 16;
}

// Chunk tiles in a ring: chunk k in buffer k % kWalkBufs, requested kWalkAhead chunks ahead. The
// buffer refilled at the top of chunk j last served chunk j − 2, which every warp finished before
// the first barrier of chunk j − 1.
constexpr int kWalkBufs = 5, kWalkAhead = 3;

template <class C>
struct WarpWalkSmem {
  static constexpr int S = C::F + 8;  // bf16 row stride: 16-byte rows, ldmatrix free of bank conflicts
  alignas(16) uint16_t xk[kWalkBufs][KP * S];
  alignas(16) uint16_t xv[kWalkBufs][KP * S];
  alignas(16) float lr[kWalkBufs][KP];
  alignas(16) uint16_t gp[KP * S];      // the update's operand c·Gp, row-major [token][feature]
  alignas(16) float red1[C::NW][KP][2];  // per warp and row: mean and M2 of its 16 columns
  alignas(16) float red2[C::NW][KP][2];  // per warp and row: Σ gx, Σ gx x̂ over its columns
};

// One warp's part of the state: wt[nj][e] = Wᵀ[16w + g + 8(e>>1)][8nj + 2t + (e&1)]
// = W[8nj + 2t + (e&1)][16w + g + 8(e>>1)], and b at the warp's columns: b[h][e] = b[16w + 8h + 2t + e].
template <class C>
struct WalkState {
  static constexpr int NN = C::F / 8;
  float wt[NN][4];
  float b[2][2];

  // Row-major [F, F] offset of W's element held at (nj, e).
  TTT_DEV static int w_index(int nj, int e) {
    const int g = lane() >> 2, t = lane() & 3;
    return (8 * nj + 2 * t + (e & 1)) * C::F + 16 * warp() + g + 8 * (e >> 1);
  }
  TTT_DEV static int b_index(int h, int e) { return 16 * warp() + 8 * h + 2 * (lane() & 3) + e; }
  TTT_DEV void load(const float* w, const float* bias) {
#pragma unroll
    for (int nj = 0; nj < NN; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e) wt[nj][e] = w[w_index(nj, e)];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) b[h][e] = bias ? bias[b_index(h, e)] : 0.f;
  }
  // W (row-major [F, F]) and b ([F]); tiles in this layout (Wᵀ, or the accumulators' transpose).
  TTT_DEV static void store_tiles(const float (&v)[NN][4], float* w) {
#pragma unroll
    for (int nj = 0; nj < NN; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e) w[w_index(nj, e)] = v[nj][e];
  }
  TTT_DEV static void store_b(const float (&v)[2][2], float* dst) {
    if ((lane() >> 2) == 0)
#pragma unroll
      for (int h = 0; h < 2; ++h) *reinterpret_cast<float2v*>(dst + b_index(h, 0)) = float2v{v[h][0], v[h][1]};
  }
  TTT_DEV void store(float* w, float* bias) const {
    if (w) store_tiles(wt, w);
    if (bias) store_b(b, bias);
  }
  // W's B fragment of X W for k-step kk and the warp's n-tile h: {W[16kk + 2t, +1][16w + 8h + g],
  // W[16kk + 8 + 2t, +1][16w + 8h + g]}.
  TTT_DEV void w_frag(int kk, int h, uint32_t (&f)[2]) const {
    f[0] = simt::pack_bf16(wt[2 * kk][2 * h], wt[2 * kk][2 * h + 1]);
    f[1] = simt::pack_bf16(wt[2 * kk + 1][2 * h], wt[2 * kk + 1][2 * h + 1]);
  }
};

// Chunk k's XK, XV (bf16, rows past the sequence 0) and lr (0 past it) into its ring buffer.
template <class C>
TTT_DEV void walk_prefetch(const Params& p, WarpWalkSmem<C>& S, const uint16_t* xk, const uint16_t* xv,
                           const float* lr, int k) {
  constexpr int F = C::F, SS = WarpWalkSmem<C>::S, pieces = KP * F / 8;
  const int buf = k % kWalkBufs;
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  for (int i = tid(); i < pieces; i += C::THREADS) {
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
  if (tid() < KP) {
    if (tid() < rows) simt::cp_async4(&S.lr[buf][tid()], lr + (t0 + tid()) * p.lr.st);
    else S.lr[buf][tid()] = 0.f;
  }
}

// Z1[:, 16w ..] = XK W + b of the chunk in buffer buf into z (n-tiles h = 0, 1), writing the warp's
// part of the state as the chunk's snapshot on the way.
template <class C>
TTT_DEV void walk_z1(const WarpWalkSmem<C>& S, const WalkState<C>& W, int buf, char* snap, float (&z)[2][4]) {
  constexpr int F = C::F, SS = WarpWalkSmem<C>::S;
  FragA<true> xa[F / 16];
#pragma unroll
  for (int kk = 0; kk < F / 16; ++kk) load_a(xa[kk], S.xk[buf], SS, 0, 16 * kk);
#pragma unroll
  for (int h = 0; h < 2; ++h) z[h][0] = z[h][2] = W.b[h][0], z[h][1] = z[h][3] = W.b[h][1];
#pragma unroll
  for (int kk = 0; kk < F / 16; ++kk) {
    uint32_t f0[2], f1[2];
    W.w_frag(kk, 0, f0);
    W.w_frag(kk, 1, f1);
    *reinterpret_cast<U4*>(snap + snapshot_frag_offset(F, kk, warp(), lane())) = U4{f0[0], f0[1], f1[0], f1[1]};
    simt::mma_bf16(z[0], xa[kk].r, f0);
    simt::mma_bf16(z[1], xa[kk].r, f1);
  }
  WalkState<C>::store_b(W.b, reinterpret_cast<float*>(snap + 2 * F * F));
}

// Sum over the quad (the four lanes holding one row of the warp's columns): every lane gets it.
TTT_DEV float quad_sum(float v) {
  v += simt::shfl_xor(v, 1);
  return v + simt::shfl_xor(v, 2);
}

// The chunk's row phase for the warp's columns and the rows g, g + 8 (index rh): c · lr ⊙ (the
// LN-L2 gradient of Z1, or Z1 − XV without LN) into S.gp (the warp's columns, bf16) and its column
// sums over the 16 rows (float32, every lane) into cs. Two block barriers (the row statistics).
// Before the second, the thread waits for its copies of chunk k + 1 (every thread reaches it).
template <class C>
TTT_DEV void walk_rows(const Params& p, WarpWalkSmem<C>& S, int buf, const float (&lw)[2][2], const float (&lb)[2][2],
                       const float (&z)[2][4], float c, float (&cs)[2][2]) {
  constexpr int F = C::F, SS = WarpWalkSmem<C>::S;
  const int g = lane() >> 2, t = lane() & 3, w = warp();
  FragA<true> fk, fv;  // XK, XV at the warp's columns: r[2h + rh] is (row g + 8rh, cols 16w + 8h + 2t, +1)
  load_a(fk, S.xk[buf], SS, 0, 16 * w);
  load_a(fv, S.xv[buf], SS, 0, 16 * w);
  float x[2][2][2], tg[2][2][2];  // [rh][h][e]
#pragma unroll
  for (int rh = 0; rh < 2; ++rh)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t wv = fv.r[2 * h + rh], wk = fk.r[2 * h + rh];
      tg[rh][h][0] = p.ln ? bf_lo(wv) - bf_lo(wk) : bf_lo(wv);
      tg[rh][h][1] = p.ln ? bf_hi(wv) - bf_hi(wk) : bf_hi(wv);
      x[rh][h][0] = z[h][2 * rh], x[rh][h][1] = z[h][2 * rh + 1];
    }
  // Round 1: each warp's mean and M2 over its 16 columns, merged over the warps (Chan et al.).
  float inv[2] = {1.f, 1.f};
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    const float m = quad_sum(x[rh][0][0] + x[rh][0][1] + x[rh][1][0] + x[rh][1][1]) * (1.f / 16);
    float m2 = 0;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) m2 += (x[rh][h][e] - m) * (x[rh][h][e] - m);
    m2 = quad_sum(m2);
    if (t == 0) *reinterpret_cast<float2v*>(S.red1[w][g + 8 * rh]) = float2v{m, m2};
  }
  simt::sync();
  float G[2][2][2];
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    const int r = g + 8 * rh;
    float mu = 0, m2 = 0;
#pragma unroll
    for (int v = 0; v < C::NW; ++v) mu += S.red1[v][r][0];
    mu *= 1.f / C::NW;
#pragma unroll
    for (int v = 0; v < C::NW; ++v) {
      const float d = S.red1[v][r][0] - mu;
      m2 += S.red1[v][r][1] + 16.f * d * d;
    }
    inv[rh] = 1.f / sqrtf(m2 * (1.f / F) + p.eps);
    float s1 = 0, s2 = 0;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (p.ln) {
          x[rh][h][e] = (x[rh][h][e] - mu) * inv[rh];                              // x̂
          G[rh][h][e] = (lw[h][e] * x[rh][h][e] + lb[h][e] - tg[rh][h][e]) * lw[h][e];  // gx
        } else {
          G[rh][h][e] = x[rh][h][e] - tg[rh][h][e];
        }
        s1 += G[rh][h][e];
        s2 += G[rh][h][e] * x[rh][h][e];
      }
    s1 = quad_sum(s1), s2 = quad_sum(s2);
    if (t == 0) *reinterpret_cast<float2v*>(S.red2[w][r]) = float2v{s1, s2};
  }
  simt::cp_async_wait_group<kWalkAhead - 1>();  // this thread's copies of the next chunk have landed
  simt::sync();  // ... everyone's too; the row sums are in
#pragma unroll
  for (int h = 0; h < 2; ++h) cs[h][0] = cs[h][1] = 0.f;
#pragma unroll
  for (int rh = 0; rh < 2; ++rh) {
    const int r = g + 8 * rh;
    float m1 = 0, m2 = 0;
#pragma unroll
    for (int v = 0; v < C::NW; ++v) m1 += S.red2[v][r][0], m2 += S.red2[v][r][1];
    m1 *= 1.f / F, m2 *= 1.f / F;
    const float scale = c * S.lr[buf][r];  // rows past the chunk have lr 0
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float gr = p.ln ? (G[rh][h][e] - m1 - x[rh][h][e] * m2) * inv[rh] : G[rh][h][e];
        v[e] = scale * gr;
        cs[h][e] += v[e];
      }
      *reinterpret_cast<uint32_t*>(S.gp + r * SS + 16 * w + 8 * h + 2 * t) = simt::pack_bf16(v[0], v[1]);
    }
  }
#pragma unroll
  for (int m = 4; m < 32; m <<= 1)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) cs[h][e] += simt::shfl_xor(cs[h][e], m);
}

// acc (the warp's Wᵀ rows) += (S.gp[:, 16w ..])ᵀ XK over the chunk's 16 rows.
template <class C>
TTT_DEV void walk_update(const WarpWalkSmem<C>& S, int buf, float (&acc)[C::F / 8][4]) {
  constexpr int F = C::F, SS = WarpWalkSmem<C>::S;
  FragA<true> ga;
  FragB<true> xb[F / 16];
  load_at(ga, S.gp, SS, 16 * warp(), 0);
#pragma unroll
  for (int i = 0; i < F / 16; ++i) load_b(xb[i], S.xk[buf], SS, 0, 16 * i);
#pragma unroll
  for (int nj = 0; nj < F / 8; ++nj) {
    const uint32_t bb[2] = {xb[nj >> 1].r[2 * (nj & 1)], xb[nj >> 1].r[2 * (nj & 1) + 1]};
    simt::mma_bf16(acc[nj], ga.r, bb);
  }
}

// The walk of one (b, h) (block = its C::NW warps): what fwd_state_block stores (the states every G
// chunks, the final state, a partial last chunk's accumulators), the snapshots in fragment order,
// and the overlapped grid's per-range flags.
template <class C>
TTT_DEV void fwd_state_regs(const Params& p, int bh, char* smem) {
  static_assert(warp_walk<C>(), "the register walk needs bf16 storage");
  auto& S = *reinterpret_cast<WarpWalkSmem<C>*>(smem);
  constexpr int F = C::F;
  const int b = bh / p.H, h = bh % p.H, i0 = p.init_bh ? bh : h;
  const uint16_t *xk = p.xk.base<uint16_t>(b, h), *xv = p.xv.base<uint16_t>(b, h);
  const float* lr = p.lr.base(b, h);
  for (int j = 0; j < kWalkAhead; ++j) {  // one commit group each, empty past the last chunk
    if (j < p.NC) walk_prefetch<C>(p, S, xk, xv, lr, j);
    simt::cp_async_commit();
  }
  WalkState<C> W;
  W.load(p.w0 + static_cast<int64_t>(i0) * F * F, p.bias ? p.b0 + static_cast<int64_t>(i0) * F : nullptr);
  float lw[2][2], lb[2][2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = WalkState<C>::b_index(hh, e);
      lw[hh][e] = p.ln ? p.lnw[h * F + col] : 1.f;
      lb[hh][e] = p.ln ? p.lnb[h * F + col] : 0.f;
    }
  const float tokL = p.tok[p.K - 1];
  simt::cp_async_wait_group<kWalkAhead - 1>();
  simt::sync();  // chunk 0's tiles
  PhaseClock clk(p, bh);  // probe slot 5: the block's total (as fwd_state_block)
  LocalPhases<4> ph(p, bh);  // slots 0..3: top, Z1, rows (the barriers' waits included), update
  for (int k = 0; k < p.NC; ++k) {
    const int buf = k % kWalkBufs;
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    const bool commit = n == p.K;
    // A range that ended with the chunk before: its snapshots were stored before that chunk's first
    // barrier, and thread 0's own stores (the fence waits for them) have had a chunk to land.
    if (p.overlap && k > 0 && (k - 1) % p.Q == p.Q - 1 && tid() == 0) simt::flag_set(fwd_done(p, F, bh, (k - 1) / p.Q));
    if (p.states && k % p.G == 0) {  // the state entering this chunk, for the backward's replay
      float* st = p.states + (static_cast<int64_t>(bh) * p.NG + k / p.G) * (F * F + F);
      W.store(st, st + F * F);
    }
    ph.mark(0);
    float z[2][4];
    walk_z1<C>(S, W, buf, snapshot<C>(p, bh, k), z);
    // The copies of a later chunk, issued while Z1's products run (the row phase waits for them).
    if (k + kWalkAhead < p.NC) walk_prefetch<C>(p, S, xk, xv, lr, k + kWalkAhead);
    simt::cp_async_commit();
    ph.mark(1);
    float cs[2][2];
    walk_rows<C>(p, S, buf, lw, lb, z, commit ? -tokL : 1.f, cs);  // its first barrier orders the snapshot
    if (p.overlap && k == p.NC - 1 && tid() == 0) simt::flag_set(fwd_done(p, F, bh, k / p.Q));  // the last range
    simt::syncwarp();  // the warp's columns of S.gp are complete
    ph.mark(2);
    if (commit) {
      walk_update<C>(S, buf, W.wt);
      if (p.bias)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh)
#pragma unroll
          for (int e = 0; e < 2; ++e) W.b[hh][e] += cs[hh][e];
      ph.mark(3);
      continue;
    }
    // A partial chunk (the last): the state stays; its accumulators XKᵀ Gp, Σ Gp when asked for.
    W.store(p.w_final ? p.w_final + static_cast<int64_t>(bh) * F * F : nullptr,
            p.b_final ? p.b_final + static_cast<int64_t>(bh) * F : nullptr);
    if (p.acc_w) {
      float acc[F / 8][4] = {};
      walk_update<C>(S, buf, acc);
      WalkState<C>::store_tiles(acc, p.acc_w + static_cast<int64_t>(bh) * F * F);
    }
    if (p.acc_b) {
      float ab[2][2];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
#pragma unroll
        for (int e = 0; e < 2; ++e) ab[hh][e] = p.bias ? cs[hh][e] : 0.f;
      WalkState<C>::store_b(ab, p.acc_b + static_cast<int64_t>(bh) * F);
    }
    ph.flush(0);
    clk.total(5);
    return;
  }
  // Every chunk committed: the final state, and zero accumulators.
  W.store(p.w_final ? p.w_final + static_cast<int64_t>(bh) * F * F : nullptr,
          p.b_final ? p.b_final + static_cast<int64_t>(bh) * F : nullptr);
  for (int i = tid(); i < F; i += C::THREADS)
    if (p.acc_b) p.acc_b[static_cast<int64_t>(bh) * F + i] = 0.f;
  if (p.acc_w)
    for (int i = tid(); i < F * F; i += C::THREADS) p.acc_w[static_cast<int64_t>(bh) * F * F + i] = 0.f;
  ph.flush(0);
  clk.total(5);
}

}  // namespace ttt::cuda_impl::tttk
