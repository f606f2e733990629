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
  float lr[KP], tok[KP], b[C::F], lnw[C::F], lnb[C::F];
};

// The chunk tiles a block needs next, held in registers between chunks.
template <class C>
struct ChunkRegs {
  TileRegs<C> q, k, v;
  float lr = 0;
  TTT_DEV void load(const Params& p, int b, int h, int chunk, bool with_q) {
    const int64_t t0 = static_cast<int64_t>(chunk) * p.K;
    const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    if (with_q) q.load(p.xq, b, h, t0, rows, p.vec);
    k.load(p.xk, b, h, t0, rows, p.vec);
    v.load(p.xv, b, h, t0, rows, p.vec);
    lr = tid() < rows ? p.lr.row(b, h, t0 + tid())[0] : 0.f;
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

// Per-head constants into smem: b0 (or 0), the LN weight/bias (or 1/0), tok (0 past K).
template <class C, class S>
TTT_DEV void load_head_constants(const Params& p, int h, S& sm, float* b) {
  for (int i = tid(); i < C::F; i += C::THREADS) {
    if (b) b[i] = p.bias ? p.b0[h * C::F + i] : 0.f;
    sm.lnw[i] = p.ln ? p.lnw[h * C::F + i] : 1.f;
    sm.lnb[i] = p.ln ? p.lnb[h * C::F + i] : 0.f;
  }
  for (int i = tid(); i < KP; i += C::THREADS) sm.tok[i] = i < p.K ? p.tok[i] : 0.f;
}

// Mt = diag(tok) tril(XQ XKᵀ + β) over the first n rows/columns (0 elsewhere), from the operand
// tiles; the raw masked tril(XQ XKᵀ + β) goes to mraw when non-null (the backward's dtok). The two
// 8-column halves can go to different warps: `halves` is a mask (1: columns 0-7, 2: 8-15).
template <class C>
TTT_DEV void attention_tile(const typename C::Op* oq, const typename C::Op* ok, const float* tok, int n, float beta,
                            typename C::Op* omt, float* mraw, int halves) {
  Acc<2> s;
  s.fill(0.f);
  FragA<C::MMA> a[C::F / 16];
  FragB<C::MMA> b[C::F / 16];
#pragma unroll
  for (int kt = 0; kt < C::F / 16; ++kt) {
    load_a(a[kt], oq, C::OS, 0, kt * 16);
    load_bt(b[kt], ok, C::OS, kt * 16, 0);
  }
#pragma unroll
  for (int kt = 0; kt < C::F / 16; ++kt) {
    if (halves & 1) mma(s.v[0], a[kt], b[kt], 0);
    if (halves & 2) mma(s.v[1], a[kt], b[kt], 1);
  }
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!(halves & (1 << nt))) continue;
      const int i = acc_row(0, e), j = acc_col(0, nt, e);
      const float m = (j <= i && i < n) ? s.v[nt][e] + beta : 0.f;
      put_op(omt + i * C::KS + j, tok[i] * m);
      if (mraw) mraw[i * (KP + 1) + j] = m;
    }
}

// Rows of F2: Gp = lr ⊙ G (float32) and −Gp (operand); rows >= n are 0. G, x̂ and gx go to the
// optional buffers (the backward keeps them), σ to sig.
template <class C>
TTT_DEV void inner_grad_rows(const Params& p, const float* z, const float* xk, const float* xv, const float* lr,
                             const float* lnw, const float* lnb, int n, float* gp, typename C::Op* ogp, float* g_out,
                             float* xh_out, float* gx_out, float* sig_out) {
  const RowLane<C> rl;
  for (int r = rl.rg; r < KP; r += C::RPP) {
    float zr[C::CPL], tgt[C::CPL], xh[C::CPL], gx[C::CPL], G[C::CPL], w[C::CPL], be[C::CPL];
    const int o = r * C::FS + rl.c0;
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) {
      zr[j] = z[o + j];
      w[j] = lnw[rl.c0 + j];
      be[j] = lnb[rl.c0 + j];
      tgt[j] = p.ln ? xv[o + j] - xk[o + j] : xv[o + j];
    }
    float sig = 1.f;
    if (p.ln) {
      sig = ln_l2_grad<C>(zr, tgt, w, be, p.eps, xh, gx, G);
    } else {
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) G[j] = zr[j] - tgt[j], xh[j] = 0.f, gx[j] = 0.f;
    }
    const bool live = r < n;
    const float l = live ? lr[r] : 0.f;
#pragma unroll
    for (int j = 0; j < C::CPL; j += 2) {
      gp[o + j] = l * G[j];
      gp[o + j + 1] = l * G[j + 1];
      put_op2(ogp + r * C::OS + rl.c0 + j, -l * G[j], -l * G[j + 1]);
    }
    if (g_out) {
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) {
        g_out[o + j] = live ? G[j] : 0.f;
        xh_out[o + j] = xh[j];
        gx_out[o + j] = gx[j];
      }
      if (rl.first()) sig_out[r] = sig;
    }
  }
}

// Which halves of the attention tile this warp computes: the last two warps take one each (one
// warp: both), so the extra products are split over two warps in F1.
template <class C>
TTT_DEV int attention_halves() {
  if (C::NW == 1) return 3;
  return warp() == C::NW - 1 ? 1 : warp() == C::NW - 2 ? 2 : 0;
}

// Z1 = XK W + b and Zq = XQ W + b (the warp's 16 columns cw..), W's fragments loaded once.
template <class C>
TTT_DEV void xw_pair(Acc<2>& z1, Acc<2>& zq, const typename C::Op* ok, const typename C::Op* oq,
                     const typename C::Op* ow, const float* b, int cw) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) z1.v[nt][e] = zq.v[nt][e] = b[acc_col(cw, nt, e)];
  gemm_tile_pair<C, C::F / 16>(
      z1, zq, [&](FragA<C::MMA>& a, int k0) { load_a(a, ok, C::OS, 0, k0); },
      [&](FragA<C::MMA>& a, int k0) { load_a(a, oq, C::OS, 0, k0); },
      [&](FragB<C::MMA>& bb, int k0) { load_b(bb, ow, C::OS, k0, cw); });
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

template <class C>
TTT_DEV void fwd_block(const Params& p, int bh, char* smem) {
  auto& S = *reinterpret_cast<FwdSmem<C>*>(smem);
  constexpr int F = C::F;
  const int b = bh / p.H, h = bh % p.H, cw = 16 * warp();
  const float beta = p.bias ? 1.f : 0.f, tokL = p.tok[p.K - 1];
  load_head_constants<C>(p, h, S, S.b);
  Acc<F / 8> W;
  load_state_rows<C>(W, p.w0 + static_cast<int64_t>(h) * F * F, cw);
  store_op(W, S.ow, C::OS, cw, 0);
  ChunkRegs<C> next;
  next.load(p, b, h, 0, true);
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
    if (k + 1 < p.NC) next.load(p, b, h, k + 1, true);
    clk.mark(0);
    if (k % p.G == 0) {  // the state entering this chunk, for the backward's replay
      float* st = p.states + (static_cast<int64_t>(bh) * p.NG + k / p.G) * (F * F + F);
      store_state_rows<C>(W, st, cw);
      for (int i = tid(); i < F; i += C::THREADS) st[F * F + i] = S.b[i];
    }
    // F1
    Acc<2> z1, zq;
    xw_pair<C>(z1, zq, S.ok, S.oq, S.ow, S.b, cw);
    store_f32(z1, S.z, C::FS, 0, cw);
    if (const int halves = attention_halves<C>()) attention_tile<C>(S.oq, S.ok, S.tok, n, beta, S.omt, nullptr, halves);
    simt::sync();
    clk.mark(1);
    // F2
    inner_grad_rows<C>(p, S.z, S.xk[buf], S.xv[buf], S.lr, S.lnw, S.lnb, n, S.gp, S.ogp, nullptr, nullptr, nullptr,
                       nullptr);
    simt::sync();
    clk.mark(2);
    // F3
    {
      FragA<C::MMA> a;
      FragB<C::MMA> bb;
      load_a(a, S.omt, C::KS, 0, 0);
      load_b(bb, S.ogp, C::OS, 0, cw);
      mma(zq.v[0], a, bb, 0);
      mma(zq.v[1], a, bb, 1);
    }
    store_f32(zq, S.zb, C::FS, 0, cw);
    if (commit || (p.acc_w && k == p.NC - 1)) {
      Acc<F / 8> P;
      state_update_product<C>(P, S.ok, S.ogp, cw);
      if (commit) {
#pragma unroll
        for (int i = 0; i < F / 8; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) W.v[i][e] += tokL * P.v[i][e];
        store_op(W, S.ow, C::OS, cw, 0);
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
    committed_last = commit;
    simt::sync();
    clk.mark(3);
    // F4 (every row group runs the row sums, so whole warps take part in the shuffles; rows >= n
    // are not stored)
    for (int r = rl.rg; r < KP; r += C::RPP) {
      const int o = r * C::FS + rl.c0;
      float zr[C::CPL], y[C::CPL];
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) zr[j] = S.zb[o + j];
      if (p.ln) {
        float xh[C::CPL];
        normalize<C>(zr, xh, p.eps);
#pragma unroll
        for (int j = 0; j < C::CPL; ++j) y[j] = S.xq[buf][o + j] + S.lnw[rl.c0 + j] * xh[j] + S.lnb[rl.c0 + j];
      } else {
#pragma unroll
        for (int j = 0; j < C::CPL; ++j) y[j] = zr[j];
      }
      if (r >= n) continue;
      float* dst = p.out.row(b, h, t0 + r) + rl.c0;
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) dst[j] = y[j];
    }
    clk.mark(4);
  }
  if (p.w_final) store_state_rows<C>(W, p.w_final + static_cast<int64_t>(bh) * F * F, cw);
  for (int i = tid(); i < F; i += C::THREADS) {
    if (p.b_final) p.b_final[static_cast<int64_t>(bh) * F + i] = S.b[i];
    if (committed_last && p.acc_b) p.acc_b[static_cast<int64_t>(bh) * F + i] = 0.f;
  }
  if (committed_last && p.acc_w)
    for (int i = tid(); i < F * F; i += C::THREADS) p.acc_w[static_cast<int64_t>(bh) * F * F + i] = 0.f;
}

}  // namespace ttt::cuda_impl::tttk
