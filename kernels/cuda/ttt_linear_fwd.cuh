// kernels/cuda/ttt_linear_fwd.cuh — the fused TTT-Linear forward: one thread block per (batch,
// head) runs every chunk of the sequence (math: kernels/ttt_linear_scan.h). The state W lives in
// registers for the whole sequence (warp w: rows 16w .. 16w+15, MMA accumulator layout), b in
// shared memory.
//
// Per chunk k (4 barriers):
//   top  store chunk k's tiles (loaded into registers during chunk k−1) to smem; barrier;
//        issue the global loads of chunk k+1; store the state every G chunks (for the backward)
//   F1   Z1 = XK W + b (→ smem), Zq = XQ W + b (registers), Mt = diag(tok) tril(XQ XKᵀ + β)
//   F2   rows: Gp = lr ⊙ LN-L2 gradient of Z1 (float32 and the operand −Gp)
//   F3   Z̄ = Zq + Mt (−Gp) (→ smem); W += tok_L XKᵀ (−Gp), b −= tok_L Σ Gp (or the accumulators
//        of a partial last chunk)
//   F4   rows: out = XQ + LN(Z̄) (or Z̄)
// The fp32 tiles are double-buffered so the next chunk's top does not wait for F4's readers.
#pragma once

#include "kernels/cuda/ttt_linear_common.cuh"

namespace ttt::cuda_impl::tttk {

template <class C>
struct FwdSmem {
  using Op = typename C::Op;
  alignas(16) float xq[2][KP * C::FS];
  alignas(16) float xk[2][KP * C::FS];
  alignas(16) float xv[2][KP * C::FS];
  alignas(16) float z[KP * C::FS];   // Z1
  alignas(16) float zb[KP * C::FS];  // Z̄
  alignas(16) float gp[KP * C::FS];  // Gp
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op ogp[KP * C::OS];    // −Gp
  alignas(16) Op ow[C::F * C::OS];   // W
  alignas(16) Op omt[KP * C::KS];    // Mt
  alignas(16) float spart[C::NW * KP * (KP + 1)];  // the warps' partial XQ XKᵀ
  float lr[KP], tok[KP];
  alignas(16) float b[C::F];  // (the chunk-parallel outputs copy it in by cp.async)
  float lnw[C::F], lnb[C::F];
};

// The (b, h) slices of the block's inputs and output (computed once: rows are base + t · st).
template <class C>
struct HeadBases {
  using IO = typename C::IO;
  const IO *xq, *xk, *xv;
  const float* lr;
  IO* out;
  TTT_DEV HeadBases(const Params& p, int b, int h)
      : xq(p.xq.base<IO>(b, h)), xk(p.xk.base<IO>(b, h)), xv(p.xv.base<IO>(b, h)), lr(p.lr.base(b, h)),
        out(p.out.base<IO>(b, h)) {}
};

// The chunk tiles a block needs next, held in registers between chunks.
template <class C>
struct ChunkRegs {
  TileIn<C> q, k, v;
  float lr = 0;
  TTT_DEV void load(const Params& p, const HeadBases<C>& hb, int chunk) {
    const int64_t t0 = static_cast<int64_t>(chunk) * p.K;
    const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    q.load(hb.xq, p.xq.st, t0, rows);
    k.load(hb.xk, p.xk.st, t0, rows);
    v.load(hb.xv, p.xv.st, t0, rows);
    lr = tid() < rows ? hb.lr[(t0 + tid()) * p.lr.st] : 0.f;
  }
};

// W (the warp's rows) from a row-major [F, F] float32 matrix, and back.
template <class C>
TTT_DEV void load_state_rows(Acc<C::F / 8>& W, const float* src, int r0) {
#pragma unroll
  for (int n = 0; n < C::F / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) W.v[n][e] = src[acc_row(r0, e) * C::F + acc_col(0, n, e)];
}
template <class C>
TTT_DEV void store_state_rows(const Acc<C::F / 8>& W, float* dst, int r0, float scale = 1.f) {
  store_f32(W, dst, C::F, r0, 0, scale);
}

// Per-head constants into smem: b0 (or 0) of initial state i0, the LN weight/bias (or 1/0), tok
// (0 past K).
template <class C, class S>
TTT_DEV void load_head_constants(const Params& p, int h, S& sm, float* b, int i0 = -1) {
  if (i0 < 0) i0 = h;
  for (int i = tid(); i < C::F; i += C::THREADS) {
    if (b) b[i] = p.bias ? p.b0[static_cast<int64_t>(i0) * C::F + i] : 0.f;
    sm.lnw[i] = p.ln ? p.lnw[h * C::F + i] : 1.f;
    sm.lnb[i] = p.ln ? p.lnb[h * C::F + i] : 0.f;
  }
  for (int i = tid(); i < KP; i += C::THREADS) sm.tok[i] = i < p.K ? p.tok[i] : 0.f;
}

// The state a forward walk of block bh starts from: W0 into the warp's register rows (rows cw..),
// b0 and the head's constants into smem; W0, b0 per sequence and head with p.init_bh, else per head.
template <class C, class S>
TTT_DEV void load_initial_state(const Params& p, int bh, S& sm, Acc<C::F / 8>& W, int cw) {
  const int h = bh % p.H, i0 = p.init_bh ? bh : h;
  load_head_constants<C>(p, h, sm, sm.b, i0);
  load_state_rows<C>(W, p.w0 + static_cast<int64_t>(i0) * C::F * C::F, cw);
}

// S = XQ XKᵀ (16 x 16) is split over the warps by the contraction: warp w multiplies feature
// columns 16w .. 16w+15 (one MMA k-step) and stores its partial product; the row phase after it
// sums the F/16 partials while it forms Mt. This keeps the products off any single warp's path.
constexpr int SP = KP + 1;  // row stride of the partials and of the raw/masked [16, 16] tiles
template <class C>
TTT_DEV void attention_partial(const typename C::Op* oq, const typename C::Op* ok, float* spart) {
  FragA<C::MMA> a;
  FragB<C::MMA> b;
  const int k0 = 16 * warp();
  load_a(a, oq, C::OS, 0, k0);
  load_bt(b, ok, C::OS, k0, 0);
  Acc<2> s;
  s.fill(0.f);
  mma(s.v[0], a, b, 0);
  mma(s.v[1], a, b, 1);
  float* dst = spart + warp() * KP * SP;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dst[acc_row(0, e) * SP + acc_col(0, nt, e)] = s.v[nt][e];
}

// Row r of Mt = diag(tok) tril(S + β) over the first n rows/columns (0 elsewhere) from the warps'
// partials, by the row group of row r (columns li, li + LPR, ...); the masked raw tril(S + β) goes to
// mraw when non-null (the backward's dtok).
template <class C>
TTT_DEV void attention_row(const float* spart, const float* tok, int r, int n, float beta, typename C::Op* omt,
                           float* mraw) {
  for (int j = tid() % C::LPR; j < KP; j += C::LPR) {
    float s = beta;
#pragma unroll
    for (int w = 0; w < C::NW; ++w) s += spart[w * KP * SP + r * SP + j];
    const float m = (j <= r && r < n) ? s : 0.f;
    put_op(omt + r * C::KS + j, tok[r] * m);
    if (mraw) mraw[r * SP + j] = m;
  }
}

// Rows of F2: Gp = lr ⊙ G (float32) and −Gp (operand); rows >= n are 0. G, x̂ and gx go to the
// optional buffers (the backward keeps them), σ to sig. One row per row group (RPP >= 16).
// With spart non-null the row group also forms row r of Mt (attention_row).
template <class C>
TTT_DEV void inner_grad_rows(const Params& p, const float* z, const float* xk, const float* xv, const float* lr,
                             const float* lnw, const float* lnb, int n, float* gp, typename C::Op* ogp, float* g_out,
                             float* xh_out, float* gx_out, float* sig_out, const float* spart = nullptr,
                             const float* tok = nullptr, typename C::Op* omt = nullptr, float* mraw = nullptr) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  if (spart) attention_row<C>(spart, tok, r, n, p.bias ? 1.f : 0.f, omt, mraw);
  float zr[C::CPL], k[C::CPL], tgt[C::CPL], xh[C::CPL], gx[C::CPL], G[C::CPL], w[C::CPL], be[C::CPL];
  const int o = r * C::FS + rl.c0;
  load_vec(zr, z + o);
  load_vec(tgt, xv + o);
  load_vec(w, lnw + rl.c0);
  load_vec(be, lnb + rl.c0);
  float sig = 1.f;
  if (p.ln) {
    load_vec(k, xk + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) tgt[j] -= k[j];
    sig = ln_l2_grad<C>(zr, tgt, w, be, p.eps, xh, gx, G);
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) G[j] = zr[j] - tgt[j], xh[j] = 0.f, gx[j] = 0.f;
  }
  const bool live = r < n;
  const float l = live ? lr[r] : 0.f;
  float g[C::CPL];
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) g[j] = l * G[j];
  store_vec(gp + o, g);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(ogp + r * C::OS + rl.c0 + j, -g[j], -g[j + 1]);
  if (g_out) {
    if (!live)
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) G[j] = 0.f;
    store_vec(g_out + o, G);
    store_vec(xh_out + o, xh);
    store_vec(gx_out + o, gx);
    if (rl.first()) sig_out[r] = sig;
  }
}

// Z1 = XK W + b and Zq = XQ W + b (the warp's 16 columns cw..), W's fragments loaded once by
// load_w(frag, k0) (from the operand state in smem, or from registers).
template <class C, class LW>
TTT_DEV void xw_pair(Acc<2>& z1, Acc<2>& zq, const typename C::Op* ok, const typename C::Op* oq, const float* b, int cw,
                     LW&& load_w) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) z1.v[nt][e] = zq.v[nt][e] = b[acc_col(cw, nt, e)];
  gemm_tile_pair<C, C::F / 16>(
      z1, zq, [&](FragA<C::MMA>& a, int k0) { load_a(a, ok, C::OS, 0, k0); },
      [&](FragA<C::MMA>& a, int k0) { load_a(a, oq, C::OS, 0, k0); }, load_w);
}

// Z (the warp's 16 columns cw..) = X W + b, X an operand tile, W the operand state.
template <class C>
TTT_DEV void xw_plus_b(Acc<2>& z, const typename C::Op* ox, const typename C::Op* ow, const float* b, int cw) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) z.v[nt][e] = b[acc_col(cw, nt, e)];
  gemm_tile<C, C::F / 16>(z, [&](FragA<C::MMA>& a, int k0) { load_a(a, ox, C::OS, 0, k0); },
               [&](FragB<C::MMA>& bb, int k0, int n0) { load_b(bb, ow, C::OS, k0, cw + n0); });
}

// P (the warp's W rows cw..) = XKᵀ (−Gp) over the chunk's 16 rows.
template <class C>
TTT_DEV void state_update_product(Acc<C::F / 8>& P, const typename C::Op* ok, const typename C::Op* ogp, int cw) {
  P.fill(0.f);
  gemm_tile<C, 1>(P, [&](FragA<C::MMA>& a, int k0) { load_at(a, ok, C::OS, cw, k0); },
               [&](FragB<C::MMA>& bb, int k0, int n0) { load_b(bb, ogp, C::OS, k0, n0); });
}

// Column sums Σ_r Gp[r][c] (threads c < F).
template <class C>
TTT_DEV float gp_column_sum(const float* gp, int c) {
  float s = 0;
  for (int r = 0; r < KP; ++r) s += gp[r * C::FS + c];
  return s;
}

// F3's product Z̄ = Zq + Mt (−Gp) (the warp's 16 columns cw.., in zq).
template <class C>
TTT_DEV void add_mt_gp(Acc<2>& zq, const typename C::Op* omt, const typename C::Op* ogp, int cw) {
  FragA<C::MMA> a;
  FragB<C::MMA> bb;
  load_a(a, omt, C::KS, 0, 0);
  load_b(bb, ogp, C::OS, 0, cw);
  mma(zq.v[0], a, bb, 0);
  mma(zq.v[1], a, bb, 1);
}

// F3's state part for chunk k (n rows): a full chunk commits W += tok_L XKᵀ (−Gp) (the warp's rows)
// and b −= tok_L Σ Gp (S.b, threads c < F); a partial last chunk writes the accumulators XKᵀ Gp,
// Σ Gp instead (when asked for). Reads S.ok, S.ogp, S.gp.
template <class C, class Smem>
TTT_DEV void commit_chunk(const Params& p, Smem& S, Acc<C::F / 8>& W, int bh, int k, int n, int cw) {
  constexpr int F = C::F;
  const bool commit = n == p.K;
  const float tokL = p.tok[p.K - 1];
  if (commit || (p.acc_w && k == p.NC - 1)) {
    Acc<F / 8> P;
    state_update_product<C>(P, S.ok, S.ogp, cw);
    if (commit) {
#pragma unroll
      for (int i = 0; i < F / 8; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) W.v[i][e] += tokL * P.v[i][e];
    } else {  // accumulators of the partial last chunk: XKᵀ Gp = −P
      store_state_rows<C>(P, p.acc_w + static_cast<int64_t>(bh) * F * F, cw, -1.f);
    }
  }
  for (int c = tid(); c < F; c += C::THREADS) {
    const float s = gp_column_sum<C>(S.gp, c);
    if (commit) {
      if (p.bias) S.b[c] -= tokL * s;  // without an inner bias b stays 0
    } else if (p.acc_b) {
      p.acc_b[static_cast<int64_t>(bh) * F + c] = p.bias ? s : 0.f;
    }
  }
}

// After the last chunk (S.b complete): the final state, and zero accumulators when the last chunk
// committed.
template <class C, class Smem>
TTT_DEV void finish_state(const Params& p, const Smem& S, const Acc<C::F / 8>& W, int bh, bool committed_last, int cw) {
  constexpr int F = C::F;
  if (p.w_final) store_state_rows<C>(W, p.w_final + static_cast<int64_t>(bh) * F * F, cw);
  for (int i = tid(); i < F; i += C::THREADS) {
    if (p.b_final) p.b_final[static_cast<int64_t>(bh) * F + i] = S.b[i];
    if (committed_last && p.acc_b) p.acc_b[static_cast<int64_t>(bh) * F + i] = 0.f;
  }
  if (committed_last && p.acc_w)
    for (int i = tid(); i < F * F; i += C::THREADS) p.acc_w[static_cast<int64_t>(bh) * F * F + i] = 0.f;
}

// F4: out = XQ + LN(Z̄) (or Z̄) for rows < n of the chunk at t0, from S.zb and the float32 XQ tile
// xq. Every row group runs its row's sums, so whole warps take part in the shuffles.
template <class C, class Smem>
TTT_DEV void output_rows(const Params& p, const Smem& S, const RowLane<C>& rl, const float* xq, typename C::IO* out,
                         int64_t t0, int n) {
  if (rl.rg >= KP) return;
  const int r = rl.rg, o = r * C::FS + rl.c0;
  float zr[C::CPL], y[C::CPL];
  load_vec(zr, S.zb + o);
  ln_residual_row<C>(p.ln, p.eps, zr, xq + o, S.lnw + rl.c0, S.lnb + rl.c0, y);
  if (r < n) store_io(out + (t0 + r) * p.out.st + rl.c0, y);
}

template <class C>
TTT_DEV void fwd_block(const Params& p, int bh, char* smem) {
  auto& S = *reinterpret_cast<FwdSmem<C>*>(smem);
  constexpr int F = C::F;
  const int b = bh / p.H, h = bh % p.H, cw = 16 * warp();
  Acc<F / 8> W;
  load_initial_state<C>(p, bh, S, W, cw);
  store_op(W, S.ow, C::OS, cw, 0);
  const HeadBases<C> hb(p, b, h);
  ChunkRegs<C> next;
  next.load(p, hb, 0);
  const RowLane<C> rl;
  bool committed_last = true;
  PhaseClock clk(p, bh);  // slots: 0 top, 1 F1, 2 F2, 3 F3, 4 F4

  for (int k = 0; k < p.NC; ++k) {
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    const bool commit = n == p.K;
    const int buf = k & 1;
    next.q.store(S.xq[buf], S.oq);
    next.k.store(S.xk[buf], S.ok);
    next.v.store(S.xv[buf], nullptr);
    if (tid() < KP) S.lr[tid()] = next.lr;
    simt::sync();
    if (k + 1 < p.NC) next.load(p, hb, k + 1);
    clk.mark(0);
    if (k % p.G == 0) {  // the state entering this chunk, for the backward's replay
      float* st = p.states + (static_cast<int64_t>(bh) * p.NG + k / p.G) * (F * F + F);
      store_state_rows<C>(W, st, cw);
      for (int i = tid(); i < F; i += C::THREADS) st[F * F + i] = S.b[i];
    }
    // F1
    Acc<2> z1, zq;
    xw_pair<C>(z1, zq, S.ok, S.oq, S.b, cw, [&](FragB<C::MMA>& bb, int k0) { load_b(bb, S.ow, C::OS, k0, cw); });
    store_f32(z1, S.z, C::FS, 0, cw);
    attention_partial<C>(S.oq, S.ok, S.spart);
    simt::sync();
    clk.mark(1);
    // F2
    inner_grad_rows<C>(p, S.z, S.xk[buf], S.xv[buf], S.lr, S.lnw, S.lnb, n, S.gp, S.ogp, nullptr, nullptr, nullptr,
                       nullptr, S.spart, S.tok, S.omt, nullptr);
    simt::sync();
    clk.mark(2);
    // F3
    add_mt_gp<C>(zq, S.omt, S.ogp, cw);
    store_f32(zq, S.zb, C::FS, 0, cw);
    commit_chunk<C>(p, S, W, bh, k, n, cw);
    if (commit) store_op(W, S.ow, C::OS, cw, 0);
    committed_last = commit;
    simt::sync();
    clk.mark(3);
    // F4
    output_rows<C>(p, S, rl, S.xq[buf], hb.out, t0, n);
    clk.mark(4);
  }
  finish_state<C>(p, S, W, bh, committed_last, cw);  // S.b's owner threads wrote it last
}

}  // namespace ttt::cuda_impl::tttk
