// kernels/cuda/ttt_linear_bwd.cuh — the fused TTT-Linear backward: one thread block per (batch,
// head) walks the chunks in reverse (math: kernels/ttt_linear_scan.h and the step list of
// kernels/cpu/ttt_linear_scan.cpp, which this follows line for line).
//
// Checkpoint groups are taken last to first. For each group the block first replays the forward
// state chain from the stored state (Z1, Gp and the W/b update only), writing the state entering
// every chunk of the group to its workspace (W row-major, then b), then runs the chunks backwards:
//   top  the chunk's tiles and its state (W as operand, b) into smem
//   B1   Z1 = XK W + b, Zq = XQ W + b, Mt (and the raw masked tril(XQ XKᵀ + β))
//   B2   rows: x̂1, σ1, gx, G, Gp = lr ⊙ G, −Gp
//   B3   Z̄ = Zq + Mt (−Gp)
//   B4   rows: dZ̄ from the output LN (dln_w, dln_b partials), the dout part of dXQ
//   B5   dXQ = dZ̄ Wᵀ (kept in registers), dGp = −Mtᵀ dZ̄ − tok_L (XK dW' + db'), the update part of
//        dXK, dMt = dZ̄ (−Gp)ᵀ, dW += XQᵀ dZ̄
//   B6   rows: dS = diag(tok) dMt, dtok, dlr, the LN-L2 vjp (dZ1, dXV, dln partials)
//   B7   dXQ += dS XK, dXK = dSᵀ XQ + dZ1 Wᵀ + (B5, B6 parts), dW += XKᵀ dZ1, db += Σ (dZ̄ + dZ1),
//        dW published as the operand dW' of the previous chunk
// The gradient of the state (dW in registers, rows 16w.. of warp w; db in smem) runs through all
// chunks; at the end the block writes its partials of dW0, db0, dln_w, dln_b, dtok to the
// workspace, reduced over the batch by a separate kernel (fixed order: deterministic).
#pragma once

#include "kernels/cuda/ttt_linear_fwd.cuh"

namespace ttt::cuda_impl::tttk {

template <class C>
struct BwdSmem {
  using Op = typename C::Op;
  alignas(16) float xq[KP * C::FS];
  alignas(16) float xk[KP * C::FS];
  alignas(16) float xv[KP * C::FS];
  alignas(16) float dout[KP * C::FS];
  alignas(16) float z[KP * C::FS];    // Z1, then dZ1
  alignas(16) float xh[KP * C::FS];   // x̂1
  alignas(16) float gx[KP * C::FS];   // ∂ℓ/∂x̂1
  alignas(16) float g[KP * C::FS];    // G
  alignas(16) float gp[KP * C::FS];   // Gp
  alignas(16) float zb[KP * C::FS];   // Z̄, then dZ̄
  alignas(16) float dgp[KP * C::FS];  // dGp
  alignas(16) float dxq[KP * C::FS];  // row-phase parts of dXQ
  alignas(16) float dxk[KP * C::FS];  // update and LN-L2 parts of dXK
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op ogp[KP * C::OS];   // −Gp
  alignas(16) Op odzb[KP * C::OS];  // dZ̄
  alignas(16) Op odz1[KP * C::OS];  // dZ1
  alignas(16) Op ow[C::F * C::OS];  // W of the chunk
  alignas(16) Op odw[C::F * C::OS]; // dW' (the gradient of the state leaving the chunk)
  alignas(16) Op omt[KP * C::KS];   // Mt
  alignas(16) Op ods[KP * C::KS];   // dS
  float mraw[KP * (KP + 1)], dmt[KP * (KP + 1)];
  float lr[KP], tok[KP], sig[KP], b[C::F], lnw[C::F], lnb[C::F], db[C::F];
  float red[C::THREADS];            // final reductions
};

// Per (b, h) workspace: the replay snapshots of one group, then the partials.
template <class C>
TTT_DEV float* snapshot(const Params& p, int bh, int slot) {
  return p.ws + (static_cast<int64_t>(bh) * p.G + slot) * (C::F * C::F + C::F);
}
// The partials follow the snapshots of every (b, h).
TTT_HD float* partials_base(const Params& p, int F) {
  return p.ws + static_cast<int64_t>(p.B) * p.H * p.G * (F * F + F);
}
template <class C>
TTT_DEV float* partials(const Params& p, int bh) {
  return partials_base(p, C::F) + static_cast<int64_t>(bh) * (C::F * C::F + 3 * C::F + p.K);
}

// Replays the forward chain over chunks k0 .. k1−1 of a group from its stored state, writing the
// state entering each chunk to the snapshots.
template <class C>
TTT_DEV void replay_group(const Params& p, BwdSmem<C>& S, int b, int h, int bh, int k0, int k1) {
  constexpr int F = C::F;
  const int cw = 16 * warp();
  const float tokL = p.tok[p.K - 1];
  const float* st = p.states + (static_cast<int64_t>(bh) * p.NG + k0 / p.G) * (F * F + F);
  Acc<F / 8> W;
  load_state_rows<C>(W, st, cw);
  for (int i = tid(); i < F; i += C::THREADS) S.b[i] = st[F * F + i];
  for (int k = k0; k < k1; ++k) {
    simt::sync();  // S.b complete; the previous step's readers done
    float* snap = snapshot<C>(p, bh, k - k0);
    store_state_rows<C>(W, snap, cw);
    for (int i = tid(); i < F; i += C::THREADS) snap[F * F + i] = S.b[i];
    if (k + 1 == k1) break;
    ChunkRegs<C> t;
    t.load(p, b, h, k, false);
    t.k.store(S.xk, S.ok);
    t.v.store(S.xv, nullptr);
    if (tid() < KP) S.lr[tid()] = t.lr;
    store_op(W, S.ow, C::OS, cw, 0);
    simt::sync();
    Acc<2> z1;
    xw_plus_b<C>(z1, S.ok, S.ow, S.b, cw);
    store_f32(z1, S.z, C::FS, 0, cw);
    simt::sync();
    inner_grad_rows<C>(p, S.z, S.xk, S.xv, S.lr, S.lnw, S.lnb, p.K, S.gp, S.ogp, nullptr, nullptr, nullptr, nullptr);
    simt::sync();
    Acc<F / 8> P;
    state_update_product<C>(P, S.ok, S.ogp, cw);
#pragma unroll
    for (int i = 0; i < F / 8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) W.v[i][e] += tokL * P.v[i][e];
    if (p.bias)
      for (int c = tid(); c < F; c += C::THREADS) S.b[c] -= tokL * gp_column_sum<C>(S.gp, c);
  }
  simt::sync();  // snapshots visible to the block
}

// The thread's running partial sums of the parameter gradients.
template <class C>
struct BwdPartials {
  float dlnw[C::CPL], dlnb[C::CPL];
  float dtok_row = 0;  // Σ dMt ∘ M over row rg (first lane of the row group)
  float dtok_last = 0; // the update path's part of dtok[K−1]
  TTT_DEV BwdPartials() {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dlnw[j] = dlnb[j] = 0.f;
  }
};

// B4: dZ̄ and the dout part of dXQ, rows of the chunk.
template <class C>
TTT_DEV void output_ln_backward_rows(const Params& p, BwdSmem<C>& S, int n, BwdPartials<C>& part) {
  const RowLane<C> rl;
  for (int r = rl.rg; r < KP; r += C::RPP) {
    const int o = r * C::FS + rl.c0;
    float go[C::CPL], dz[C::CPL];
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) go[j] = r < n ? S.dout[o + j] : 0.f;
    if (p.ln) {
      float zr[C::CPL], xh[C::CPL], dxh[C::CPL];
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) zr[j] = S.zb[o + j];
      const float sig = normalize<C>(zr, xh, p.eps);
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) {
        dxh[j] = go[j] * S.lnw[rl.c0 + j];
        part.dlnw[j] += go[j] * xh[j];
        part.dlnb[j] += go[j];
      }
      ln_vjp<C>(dxh, xh, sig, dz);
    } else {
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) dz[j] = go[j];
    }
#pragma unroll
    for (int j = 0; j < C::CPL; j += 2) {
      S.zb[o + j] = dz[j];
      S.zb[o + j + 1] = dz[j + 1];
      S.dxq[o + j] = p.ln ? go[j] : 0.f;
      S.dxq[o + j + 1] = p.ln ? go[j + 1] : 0.f;
      put_op2(S.odzb + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
    }
  }
}

// B6: dS and dtok from dMt; dlr; the LN-L2 vjp giving dZ1, dXV and the LN partials.
template <class C>
TTT_DEV void inner_grad_backward_rows(const Params& p, BwdSmem<C>& S, int b, int h, int64_t t0, int n,
                                      BwdPartials<C>& part) {
  const RowLane<C> rl;
  const int li = tid() % C::LPR;
  for (int r = rl.rg; r < KP; r += C::RPP) {
    float dt = 0;
    for (int j = li; j < KP; j += C::LPR) {
      const float m = (j <= r && r < n) ? S.dmt[r * (KP + 1) + j] : 0.f;
      dt += m * S.mraw[r * (KP + 1) + j];
      put_op(S.ods + r * C::KS + j, S.tok[r] * m);
    }
    dt = row_sum<C>(dt);
    if (rl.first()) part.dtok_row += dt;

    const int o = r * C::FS + rl.c0;
    const bool live = r < n;
    const float l = S.lr[r];
    float G[C::CPL], dG[C::CPL], dz[C::CPL], dxv[C::CPL];
    float dl = 0;
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) {
      G[j] = S.g[o + j];
      const float d = S.dgp[o + j];
      dl += G[j] * d;
      dG[j] = live ? l * d : 0.f;
    }
    dl = row_sum<C>(dl);
    if (live && rl.first()) p.dlr.row(b, h, t0 + r)[0] = dl;
    if (p.ln) {
      float xh[C::CPL], gx[C::CPL], dgx[C::CPL], dxh[C::CPL];
      const float sig = S.sig[r];
      float c_gx = 0, c_dg = 0, dsig = 0;
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) {
        xh[j] = S.xh[o + j];
        gx[j] = S.gx[o + j];
        c_gx += gx[j] * xh[j];
        c_dg += dG[j] * xh[j];
        dsig -= dG[j] * G[j];
      }
      c_gx = row_sum<C>(c_gx) / C::F;
      c_dg = row_sum<C>(c_dg) / C::F;
      dsig = row_sum<C>(dsig) / sig;
      ln_vjp<C>(dG, xh, sig, dgx);
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) {
        const float w = S.lnw[rl.c0 + j], be = S.lnb[rl.c0 + j];
        const float tgt = S.xv[o + j] - S.xk[o + j];
        dxh[j] = w * w * dgx[j] - (c_gx * dG[j] + gx[j] * c_dg) / sig;
        part.dlnw[j] += dgx[j] * (2.f * w * xh[j] + be - tgt);
        part.dlnb[j] += dgx[j] * w;
        dxv[j] = -w * dgx[j];
        S.dxk[o + j] += w * dgx[j];
      }
      ln_vjp<C>(dxh, xh, sig, dz);
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) dz[j] += dsig * xh[j] / C::F;
    } else {
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) dz[j] = dG[j], dxv[j] = -dG[j];
    }
    if (live) {
      float* dst = p.dxv.row(b, h, t0 + r) + rl.c0;
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) dst[j] = dxv[j];
    }
#pragma unroll
    for (int j = 0; j < C::CPL; j += 2) {
      S.z[o + j] = dz[j];
      S.z[o + j + 1] = dz[j + 1];
      put_op2(S.odz1 + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
    }
  }
}

// Stores rows < n of a warp's [16, 16] tile (columns cw..) plus the smem part `add` to x.
template <class C>
TTT_DEV void store_rows(const Acc<2>& acc, const float* add, const Ten& x, int b, int h, int64_t t0, int n, int cw) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = acc_row(0, e), c = acc_col(cw, nt, e);
      if (r < n) x.row(b, h, t0 + r)[c] = acc.v[nt][e] + add[r * C::FS + c];
    }
}

// One chunk of the reverse pass; dW (the warp's rows) and S.db, S.odw carry the state gradient.
template <class C>
TTT_DEV void backward_chunk(const Params& p, BwdSmem<C>& S, int b, int h, int bh, int k, int k0, Acc<C::F / 8>& dW,
                            BwdPartials<C>& part) {
  constexpr int F = C::F;
  const int cw = 16 * warp();
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  const bool commit = n == p.K;
  const float beta = p.bias ? 1.f : 0.f, tokL = p.tok[p.K - 1];
  // top: tiles and the chunk's state
  {
    ChunkRegs<C> t;
    t.load(p, b, h, k, true);
    t.q.store(S.xq, S.oq);
    t.k.store(S.xk, S.ok);
    t.v.store(S.xv, nullptr);
    TileRegs<C> d;
    d.load(p.dout, b, h, t0, n, p.vec);
    d.store(S.dout, nullptr);
    if (tid() < KP) S.lr[tid()] = t.lr;
    const float* snap = snapshot<C>(p, bh, k - k0);
    for (int i = tid(); i < F * F; i += C::THREADS) put_op(S.ow + (i / F) * C::OS + i % F, snap[i]);
    for (int i = tid(); i < F; i += C::THREADS) S.b[i] = snap[F * F + i];
  }
  simt::sync();
  // B1
  Acc<2> z1, zq;
  xw_plus_b<C>(z1, S.ok, S.ow, S.b, cw);
  xw_plus_b<C>(zq, S.oq, S.ow, S.b, cw);
  store_f32(z1, S.z, C::FS, 0, cw);
  if (warp() == C::NW - 1) attention_tile<C>(S.oq, S.ok, S.tok, n, beta, S.omt, S.mraw);
  simt::sync();
  // B2
  inner_grad_rows<C>(p, S.z, S.xk, S.xv, S.lr, S.lnw, S.lnb, n, S.gp, S.ogp, S.g, S.xh, S.gx, S.sig);
  simt::sync();
  // B3
  {
    FragA<C::MMA> a;
    FragB<C::MMA> bb;
    load_a(a, S.omt, C::KS, 0, 0);
    load_b(bb, S.ogp, C::OS, 0, cw);
    mma(zq.v[0], a, bb, 0);
    mma(zq.v[1], a, bb, 1);
  }
  store_f32(zq, S.zb, C::FS, 0, cw);
  simt::sync();
  // B4
  output_ln_backward_rows<C>(p, S, n, part);
  simt::sync();
  // B5
  Acc<2> dxq;
  dxq.fill(0.f);
  gemm_tile<C>(dxq, F / 16, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.odzb, C::OS, 0, kk); },
               [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, S.ow, C::OS, kk, cw + n0); });
  {
    Acc<2> dgp, u, dxk;
    dgp.fill(0.f);
    gemm_tile<C>(dgp, 1, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.omt, C::KS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odzb, C::OS, kk, cw + n0); });
    dxk.fill(0.f);
    if (commit) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) u.v[nt][e] = p.bias ? S.db[acc_col(cw, nt, e)] : 0.f;
      gemm_tile<C>(u, F / 16, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.ok, C::OS, 0, kk); },
                   [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odw, C::OS, kk, cw + n0); });
      gemm_tile<C>(dxk, F / 16, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.ogp, C::OS, 0, kk); },
                   [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, S.odw, C::OS, kk, cw + n0); });
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = acc_row(0, e), c = acc_col(cw, nt, e), o = r * C::FS + c;
        float d = -dgp.v[nt][e];
        if (commit) {
          d -= tokL * u.v[nt][e];
          part.dtok_last -= u.v[nt][e] * S.gp[o];
        }
        S.dgp[o] = d;
        S.dxk[o] = tokL * dxk.v[nt][e];
      }
  }
  if (warp() == C::NW - 1) {
    Acc<2> dmt;
    dmt.fill(0.f);
    gemm_tile<C>(dmt, F / 16, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.odzb, C::OS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, S.ogp, C::OS, kk, n0); });
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) S.dmt[acc_row(0, e) * (KP + 1) + acc_col(0, nt, e)] = dmt.v[nt][e];
  }
  gemm_tile<C>(dW, 1, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.oq, C::OS, cw, kk); },
               [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odzb, C::OS, kk, n0); });
  simt::sync();
  // B6
  inner_grad_backward_rows<C>(p, S, b, h, t0, n, part);
  simt::sync();
  // B7
  gemm_tile<C>(dxq, 1, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.ods, C::KS, 0, kk); },
               [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.ok, C::OS, kk, cw + n0); });
  store_rows<C>(dxq, S.dxq, p.dxq, b, h, t0, n, cw);
  {
    Acc<2> dxk;
    dxk.fill(0.f);
    gemm_tile<C>(dxk, 1, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.ods, C::KS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.oq, C::OS, kk, cw + n0); });
    gemm_tile<C>(dxk, F / 16, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.odz1, C::OS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, S.ow, C::OS, kk, cw + n0); });
    store_rows<C>(dxk, S.dxk, p.dxk, b, h, t0, n, cw);
  }
  gemm_tile<C>(dW, 1, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.ok, C::OS, cw, kk); },
               [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odz1, C::OS, kk, n0); });
  for (int c = tid(); c < F; c += C::THREADS) {
    float s = 0;
    for (int r = 0; r < KP; ++r) s += S.zb[r * C::FS + c] + S.z[r * C::FS + c];
    S.db[c] += s;
  }
  store_op(dW, S.odw, C::OS, cw, 0);
  simt::sync();
}

// The block's partials of dW0, db0, dln_w, dln_b and dtok into the workspace.
template <class C>
TTT_DEV void write_partials(const Params& p, BwdSmem<C>& S, int bh, const Acc<C::F / 8>& dW, BwdPartials<C>& part) {
  constexpr int F = C::F;
  float* out = partials<C>(p, bh);
  store_state_rows<C>(dW, out, 16 * warp());
  for (int i = tid(); i < F; i += C::THREADS) out[F * F + i] = S.db[i];
  // dln_w, dln_b: the row groups' partials summed in row-group order.
  const RowLane<C> rl;
  for (int which = 0; which < 2; ++which) {
    float* v = which == 0 ? part.dlnw : part.dlnb;
    for (int g = 0; g < C::RPP; ++g) {
      if (rl.rg == g)
        for (int j = 0; j < C::CPL; ++j) S.red[rl.c0 + j] = (g == 0 ? 0.f : S.red[rl.c0 + j]) + v[j];
      simt::sync();
    }
    for (int i = tid(); i < F; i += C::THREADS) out[F * F + (1 + which) * F + i] = S.red[i];
    simt::sync();
  }
  // dtok: the row partials (rows < K) and the update partials summed in thread order.
  S.red[tid()] = part.dtok_last;
  simt::sync();
  if (tid() == 0) {
    float s = 0;
    for (int i = 0; i < C::THREADS; ++i) s += S.red[i];
    S.red[0] = s;
  }
  simt::sync();
  const float last = S.red[0];
  simt::sync();
  if (rl.first() && rl.rg < KP) S.red[rl.rg] = part.dtok_row;
  simt::sync();
  for (int i = tid(); i < p.K; i += C::THREADS) out[F * F + 3 * F + i] = S.red[i] + (i == p.K - 1 ? last : 0.f);
}

// Element i (< H (F² + 3F) + K) of the reduction of the blocks' partials: sums over the batch
// (over every (b, h) for dtok) in index order. Run by a grid-stride kernel (and by the host
// emulation in the tests).
TTT_HD int64_t reduce_count(int H, int F, int K) { return static_cast<int64_t>(H) * (F * F + 3 * F) + K; }
TTT_HD void reduce_partials_at(int64_t i, const float* partials, int B, int H, int F, int K, float* dw0, float* db0,
                                float* dlnw, float* dlnb, float* dtok) {
  const int per = F * F + 3 * F + K;
  const int64_t heads_part = static_cast<int64_t>(H) * (F * F + 3 * F);
  if (i >= heads_part) {
    const int j = static_cast<int>(i - heads_part);
    float s = 0;
    for (int bh = 0; bh < B * H; ++bh) s += partials[static_cast<int64_t>(bh) * per + F * F + 3 * F + j];
    dtok[j] = s;
    return;
  }
  const int h = static_cast<int>(i / (F * F + 3 * F)), e = static_cast<int>(i % (F * F + 3 * F));
  float s = 0;
  for (int b = 0; b < B; ++b) s += partials[static_cast<int64_t>(b * H + h) * per + e];
  if (e < F * F) {
    dw0[static_cast<int64_t>(h) * F * F + e] = s;
    return;
  }
  const int k = (e - F * F) / F, c = (e - F * F) % F;
  float* dst = k == 0 ? db0 : k == 1 ? dlnw : dlnb;
  if (dst) dst[h * F + c] = s;
}

template <class C>
TTT_DEV void bwd_block(const Params& p, int bh, char* smem) {
  auto& S = *reinterpret_cast<BwdSmem<C>*>(smem);
  constexpr int F = C::F;
  const int b = bh / p.H, h = bh % p.H;
  load_head_constants<C>(p, h, S, nullptr);
  for (int i = tid(); i < F; i += C::THREADS) S.db[i] = 0.f;
  for (int i = tid(); i < F * C::OS; i += C::THREADS) put_op(S.odw + i, 0.f);
  Acc<F / 8> dW;
  dW.fill(0.f);
  BwdPartials<C> part;
  for (int g = p.NG - 1; g >= 0; --g) {
    const int k0 = g * p.G, k1 = k0 + p.G < p.NC ? k0 + p.G : p.NC;
    replay_group<C>(p, S, b, h, bh, k0, k1);
    for (int k = k1 - 1; k >= k0; --k) backward_chunk<C>(p, S, b, h, bh, k, k0, dW, part);
  }
  write_partials<C>(p, S, bh, dW, part);
}

}  // namespace ttt::cuda_impl::tttk
