// kernels/cuda/ttt_mlp_bwd_phases.cuh — the phases of a chunk of the fused TTT-MLP backward that the
// one-block reverse walk (ttt_mlp_bwd.cuh) and the cluster walk (ttt_mlp_bwd_cluster.cuh) share
// (the step list: ttt_mlp_bwd.cuh's header): the chunk's tiles, the row phases (the output LN's vjp,
// the inner loss's backward, the dXQ / dXK rows), warp-local products over smem buffers of the same
// names (S: BwdSmem or ClusterBwdSmem; S_::W1S, S_::WS the row strides of W1, dW1' and W2, dW2'),
// and the walk's parameter-gradient partials. Where a product over the hidden units ends in slice
// partials, the helper returns the warp's partial tile and the caller puts it where its form
// collects them.
#pragma once

#include "kernels/cuda/ttt_mlp_fwd.cuh"

namespace ttt::cuda_impl::tttm {

// Column sums over the chunk's rows of the row threads' slices v (8 columns each): butterfly over
// the rows a warp holds, then lanes < LPR of row warp rw (= warp, rows 32/LPR · rw ..) write (add
// when `add`) dst[rw][c0 ..]. Called by the row threads (rg < 16: whole warps) only.
template <class C>
TTT_DEV void row_warp_column_sums(float (&v)[C::CPL], float* dst, bool add) {
#pragma unroll
  for (int m = C::LPR; m < 32; m <<= 1)
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) v[j] += simt::shfl_xor(v[j], m);
  if (lane() >= C::LPR) return;
  float* d = dst + warp() * C::F + lane() * C::CPL;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) d[j] = add ? d[j] + v[j] : v[j];
}

// dst[hw ..] += Σ over the chunk's rows of the warp's [16, 16] tile (b1's gradient).
TTT_DEV void add_tile_column_sums(const Acc<2>& acc, float* dst) {
  float s[2][2];
  column_sums(acc, s);
  if (lane() < 4)
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) dst[acc_col(16 * warp(), nt, hh)] += s[nt][hh];
}

// db2 += Σ over the row warps of colpart (threads c < F).
template <class C>
TTT_DEV void add_colpart(const float* colpart, float* db2) {
  for (int c = tid(); c < C::F; c += C::THREADS) {
    float s = 0;
    for (int w = 0; w < C::RW; ++w) s += colpart[w * C::F + c];
    db2[c] += s;
  }
}


// The (b, h) slices of the backward's [B, H, T(, F)] tensors.
struct BwdBases {
  IORows dout, dxq, dxk, dxv;
  float* dlr;
  TTT_DEV BwdBases(const Params& p, int b, int h)
      : dout(p.dout, p.bio, b, h), dxq(p.dxq, p.bio, b, h), dxk(p.dxk, p.bio, b, h), dxv(p.dxv, p.bio, b, h),
        dlr(p.dlr.base(b, h)) {}
};

// The chunk's tiles into smem: operands of XQ, XK; the target; lr (S: BwdSmem or ClusterBwdSmem).
template <class C, class S_>
TTT_DEV void load_chunk_tiles(const Params& p, const InBases& hb, S_& S, int k, int n) {
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  Tile2<C> q, kk, v;
  q.load(hb.xq, t0, n);
  kk.load(hb.xk, t0, n);
  v.load(hb.xv, t0, n);
  const float lr = tid() < n ? hb.lr[(t0 + tid()) * p.lr.st] : 0.f;  // (n <= KP) every load in flight at once
  q.store(nullptr, S.oq);
  kk.store(nullptr, S.ok);
  store_target(kk, v, p.ln, S.tgt);
  if (tid() < KP) S.lr[tid()] = lr;
}

// Asks L2 for chunk k's rows of XQ, XK, XV and dout a chunk before the walk reads them (one
// 128-byte line a thread; rows past the sequence are not asked for).
template <class C>
TTT_DEV void prefetch_chunk_rows(const Params& p, const InBases& hb, const BwdBases& bb, int k) {
  const int lines = (C::F * (p.bio ? 2 : 4) + 127) / 128, per_tensor = KP * lines;
  const int i = tid(), r = i % per_tensor / lines;
  if (i >= 4 * per_tensor || r >= chunk_rows(p, k)) return;
  const int which = i / per_tensor;  // by value: an array of the rows would live in local memory
  const IORows rows = which == 0 ? hb.xq : which == 1 ? hb.xk : which == 2 ? hb.xv : bb.dout;
  rows.prefetch_line(static_cast<int64_t>(k) * p.K + r, i % lines);
}

// B0 rows: Z̄2 = b2 + Σ slice partials `part` − Mt2 Gp2 (Mt2 formed here from the X̄2 X2ᵀ
// partials), then dZ̄2 from the output LN (float32 and operand) and the LN partials; rows >= n get
// dZ̄2 = 0. S: BwdSmem, or the cluster kernel's smem with the same members.
template <class C, class S_>
TTT_DEV void output_rows(const Params& p, const BwdBases& bb, S_& S, const float* part, int64_t t0, int n) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r < KP) causal_row<C>(S.mpart, C::NKS, S.tok, r, n, p.bias ? 1.f : 0.f, S.omt2, S.mt2, S.m2raw());
  simt::syncwarp();  // the row's Mt2 entries come from the lanes of its group
  if (r >= KP) return;
  float z[C::CPL], go[C::CPL], dz[C::CPL];
  zbar2_row<C>(S.b2, part, S.mt2, S.gp2, r, rl.c0, z);
  if (r < n) {
    bb.dout.load(go, t0 + r, rl.c0);
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) go[j] = 0.f;
  }
  if (p.ln) {
    float xh[C::CPL], dxh[C::CPL], w[C::CPL], pw[C::CPL];
    load_vec(w, S.lnw + rl.c0);
    const float sig = tttk::normalize<C>(z, xh, p.eps);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) {
      dxh[j] = go[j] * w[j];
      pw[j] = go[j] * xh[j];
    }
    float pb[C::CPL];
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) pb[j] = go[j];
    row_warp_column_sums<C>(pw, S.dlnw, true);
    row_warp_column_sums<C>(pb, S.dlnb, true);
    tttk::ln_vjp<C>(dxh, xh, sig, dz);
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dz[j] = go[j];
  }
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(S.odzb2 + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
  row_warp_column_sums<C>(dz, S.colpart, false);
}

// B5's dS1 = diag(tok) dMt1 (dMt1 from the slice partials in mpart) and dtok, by row r's lanes.
template <class C, class S_>
TTT_DEV void ds1_row(S_& S, int r, int n, float& dtok_row) {
  for (int j = tid() % C::LPR; j < KP; j += C::LPR) {
    float d = 0;
    for (int s = 0; s < C::NKS; ++s) d += S.mpart[s * KP * SP + r * SP + j];
    const float m = (j <= r && r < n) ? d : 0.f;
    dtok_row += m * S.m1raw[r * SP + j];
    put_op(S.ods1() + r * C::KS + j, S.tok[r] * m);
  }
}

// The inner loss's backward for row r (its lanes' columns c0..): z = Z2 (the row's slice), G2 again
// from it; dGp2's slice from load_dg(dG) (called after G2 is formed: with one block a head at
// f = 64 an earlier load of dG made the reverse walk's backward 11% slower on an H100, session 29,
// its registers live through inner_grad); dG2 = lr dGp2 + Σ partials `part` of dP W2; dlr (the G2
// part and the `dlr_parts` warps' parts in dlrp); the LN-L2 vjp (kernels/cpu/ttt_scan_rows.h) giving
// dz = dZ2, dtgt (dXV) and the LN partials. dlr and dXV are written when `writes` (one block of a
// cluster).
template <class C, class S_, class LoadDG>
TTT_DEV void inner_loss_vjp_row(const Params& p, const BwdBases& bb, S_& S, const float* part, int64_t t0, int n,
                                int r, int c0, const float (&z)[C::CPL], LoadDG&& load_dg, bool writes,
                                int dlr_parts, float (&dz)[C::CPL], float (&dtgt)[C::CPL]) {
  const RowLane<C> rl;
  const int o = r * C::FS + c0;
  float tgt[C::CPL], w[C::CPL], be[C::CPL], xh[C::CPL], gx[C::CPL], G[C::CPL], dG[C::CPL];
  load_vec(tgt, S.tgt + o);
  load_vec(w, S.lnw + c0);
  load_vec(be, S.lnb + c0);
  const float sig = inner_grad<C>(p, z, tgt, w, be, xh, gx, G);
  const bool live = r < n;
  const float l = live ? S.lr[r] : 0.f;
  load_dg(dG);
  // sums: 0 dlr (G2 part), 1 Σ gx x̂, 2 Σ dG, 3 Σ dG x̂, 4 Σ dG G
  float sums[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    sums[0] += G[j] * dG[j];
    dG[j] *= l;
  }
  add_slice_partials<C>(dG, part, o);
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    sums[1] += gx[j] * xh[j];
    sums[2] += dG[j];
    sums[3] += dG[j] * xh[j];
    sums[4] += dG[j] * G[j];
  }
  tttk::row_sums<C>(sums);
  if (writes && live && rl.first()) {
    float d = sums[0];
    for (int w2 = 0; w2 < dlr_parts; ++w2) d += S.dlrp[w2 * KP + r];
    bb.dlr[(t0 + r) * p.dlr.st] = d;
  }
  if (p.ln) {
    const float inv = 1.f / sig;
    const float c_gx = sums[1] * (1.f / C::F), m_dg = sums[2] * (1.f / C::F), c_dg = sums[3] * (1.f / C::F);
    const float dsig = -sums[4] * inv;
    float dxh[C::CPL], pw[C::CPL], pb[C::CPL];
    float s2[2] = {0.f, 0.f};  // Σ dx̂, Σ dx̂ x̂
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) {
      const float dgx = (dG[j] - m_dg - xh[j] * c_dg) * inv;
      dxh[j] = w[j] * w[j] * dgx - (c_gx * dG[j] + gx[j] * c_dg) * inv;
      pw[j] = dgx * (2.f * w[j] * xh[j] + be[j] - tgt[j]);
      pb[j] = dgx * w[j];
      dtgt[j] = -w[j] * dgx;
      s2[0] += dxh[j];
      s2[1] += dxh[j] * xh[j];
    }
    row_warp_column_sums<C>(pw, S.dlnw, true);
    row_warp_column_sums<C>(pb, S.dlnb, true);
    tttk::row_sums<C>(s2);
    const float m1 = s2[0] * (1.f / C::F), m2 = s2[1] * (1.f / C::F);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dz[j] = (dxh[j] - m1 - xh[j] * m2) * inv + dsig * xh[j] * (1.f / C::F);
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dz[j] = dG[j], dtgt[j] = -dG[j];
  }
  if (writes && live) bb.dxv.store(t0 + r, rl.c0, dtgt);
  if (!p.ln)
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dtgt[j] = 0.f;  // the target is XV alone: no part of dXK
}

// B5 rows: dS1 and dtok (ds1_row); the inner loss's backward from Z2 and dGp2 in S.z2, S.dgp2
// (inner_loss_vjp_row), dZ2 (float32 and operand) to odzb2, −dtgt kept in the Z2 tile for dXK, dZ2's
// column sums for db2. S: BwdSmem or ClusterBwdSmem.
template <class C, class S_>
TTT_DEV void inner_grad_backward_rows(const Params& p, const BwdBases& bb, S_& S, const float* part, int64_t t0,
                                      int n, float& dtok_row, bool writes, int dlr_parts) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  ds1_row<C>(S, r, n, dtok_row);
  const int o = r * C::FS + rl.c0;
  float z[C::CPL], dz[C::CPL], dtgt[C::CPL];
  load_vec(z, S.z2 + o);
  inner_loss_vjp_row<C>(p, bb, S, part, t0, n, r, rl.c0, z, [&](float (&dG)[C::CPL]) { load_vec(dG, S.dgp2 + o); },
                        writes, dlr_parts, dz, dtgt);
  store_vec(S.z2 + o, dtgt);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(S.odzb2 + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
  row_warp_column_sums<C>(dz, S.colpart, false);
}

// Rows < n of Σ slice partials (+ the float32 tile `add` scaled by `scale`, when non-null) into the
// (b, h) slice `dst` of a [B, H, T, F] tensor.
template <class C>
TTT_DEV void store_sum_rows(const float* part, const float* add, float scale, const IORows& dst, int64_t t0, int n) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= n) return;
  const int o = r * C::FS + rl.c0;
  float y[C::CPL];
  if (add) {
    load_vec(y, add + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] *= scale;
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] = 0.f;
  }
  add_slice_partials<C>(y, part, o);
  dst.store(t0 + r, rl.c0, y);
}

// dXQ's rows < n: Σ slice partials, plus dout (its own part) with the LN + residual, summed straight
// from global memory.
template <class C>
TTT_DEV void store_dxq_rows(const Params& p, const BwdBases& bb, const float* part, int64_t t0, int n) {
  if (!p.ln) return store_sum_rows<C>(part, nullptr, 0.f, bb.dxq, t0, n);
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= n) return;
  const int o = r * C::FS + rl.c0;
  float y[C::CPL];
  bb.dout.load(y, t0 + r, rl.c0);
  add_slice_partials<C>(y, part, o);
  bb.dxq.store(t0 + r, rl.c0, y);
}

// The walk's parameter-gradient partials into out (partials()): dW1, db1, dW2 of the block's hidden
// units (from h0); with `lead` db2, dln_w, dln_b (the row warps' parts summed); and S.dtok, each
// row's dtok_row summed over its lanes (butterfly).
template <class C, class S_>
TTT_DEV void write_partials(const Params& p, S_& S, const StateRegs<C>& dW, float dtok_row, int h0, bool lead,
                            float* out) {
  constexpr int F = C::F;
  dW.store(out, 1.f, h0);
  for (int i = tid(); i < C::HDL; i += C::THREADS) out[off_b1(F) + h0 + i] = S.db1[i];
  if (lead)
    for (int i = tid(); i < F; i += C::THREADS) {
      out[off_b2(F) + i] = S.db2[i];
      float sw = 0, sb = 0;
      for (int w = 0; w < C::RW; ++w) sw += S.dlnw[w * F + i], sb += S.dlnb[w * F + i];
      out[state_size(F) + i] = sw;
      out[state_size(F) + F + i] = sb;
    }
  const RowLane<C> rl;
  if (rl.rg < KP) {
    const float s = tttk::row_sum<C>(dtok_row);
    if (rl.first()) S.dtok[rl.rg] = s;
  }
}

// The warp's tiles of the chunk's first layer that the register-lean walk recomputes where a phase
// reads them (first_layer_again; Z̄1 then with R4's MMAs): Z1 = XK W1 + b1, Zq = XQ W1 + b1,
// Z̄1 = Zq + Mt1 (−Gp1).
enum class Hidden { z1, zq, zbar1 };
template <class C, class S_>
TTT_DEV void recompute_hidden(S_& S, Acc<2>& z, Hidden which) {
  first_layer_again<C>(z, which == Hidden::z1 ? S.ok : S.oq, S.w1(), S_::W1S, S.b1);
  if (which == Hidden::zbar1) xy<C, 1>(z, S.omt1, C::KS, 0, S.ogp1, C::HS, 0, 16 * warp());
}

// R4 (warp): −Gp1 = −lr ⊙ (G2 W2ᵀ) ⊙ gelu'(Z1); Z̄1 = Zq + Mt1 (−Gp1) (kept in zq); X̄2.
template <class C, class S_>
TTT_DEV void recompute_xbar2(S_& S, const Acc<2>& z1, Acc<2>& zq) {
  const int hw = 16 * warp();
  {
    Acc<2> g1;
    neg_gp1<C>(g1, S.og2, S.w2(), S_::WS, S.lr, z1);
    store_op(g1, S.ogp1, C::HS, 0, hw);
  }
  simt::syncwarp();
  xy<C, 1>(zq, S.omt1, C::KS, 0, S.ogp1, C::HS, 0, hw);
  gelu_tile<C>(zq, S.oxb2, nullptr);
}

// The warp's slice partial of a [16, 16] product A Bᵀ over the hidden units (A, B [16, HD] operand
// tiles; warps of column block 0): X̄2 X2ᵀ in R5, dMt1 = dZ̄1 (−Gp1)ᵀ in B4.
template <class C>
TTT_DEV Acc<2> hidden_abt_partial(const typename C::Op* a, const typename C::Op* b, const Split<C>& sp) {
  Acc<2> m;
  m.fill(0.f);
  xyt<C, C::KSPAN / 16>(m, a, C::HS, sp.k0(), b, C::HS, sp.k0(), 0);
  return m;
}

// B1's products of the rows: last warp: dMt2 = dZ̄2 (−Gp2)ᵀ; the block's first slice (every column
// block once): dGp2 = −Mt2ᵀ dZ̄2.
template <class C, class S_>
TTT_DEV void dmt2_dgp2_products(S_& S, const Split<C>& sp) {
  if (warp() == C::NW - 1) {
    Acc<2> m;
    m.fill(0.f);
    xyt<C, C::F / 16>(m, S.odzb2, C::OS, 0, S.ogp2, C::OS, 0, 0);
    store_f32(m, S.dmt2(), SP, 0, 0);
  }
  if (sp.ks == 0) {
    Acc<2> d;
    d.fill(0.f);
    xty<C, 2>(d, S.omt2, C::KS, 0, S.odzb2, C::OS, sp.col());
    store_f32(d, S.dgp2, C::FS, 0, sp.col(), -1.f);
  }
}

// B1, the products within the block: dW2 += X̄2ᵀ dZ̄2 (the warp's rows); dMt2, dGp2
// (dmt2_dgp2_products); db2 += Σ dZ̄2.
template <class C, class S_>
TTT_DEV void dzbar2_products(const Params& p, S_& S, StateRegs<C>& dW, const Split<C>& sp) {
  xty<C, C::F / 8>(dW.w2, S.oxb2, C::HS, 16 * warp(), S.odzb2, C::OS, 0);
  dmt2_dgp2_products<C>(S, sp);
  if (p.bias) add_colpart<C>(S.colpart, S.db2);
}

// B2 rows: dS2 = diag(tok) dMt2 and its dtok; with commit, dGp2 −= τ U2 (U2 = db2' + Σ the slice
// partials u2) and dtok[K − 1]'s part −Σ U2 ⊙ Gp2.
template <class C, class S_>
TTT_DEV void ds2_rows(S_& S, const float* u2, int n, bool commit, float tokL, float& dtok_row, float& dtok_last) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  for (int j = tid() % C::LPR; j < KP; j += C::LPR) {
    const float m = (j <= r && r < n) ? S.dmt2()[r * SP + j] : 0.f;
    dtok_row += m * S.m2raw()[r * SP + j];
    put_op(S.ods2() + r * C::KS + j, S.tok[r] * m);
  }
  if (!commit) return;
  const int o = r * C::FS + rl.c0;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    float u = S.db2p[rl.c0 + j];
    for (int s = 0; s < C::NKS; ++s) u += u2[s * KP * C::FS + o + j];
    S.dgp2[o + j] -= tokL * u;
    dtok_last -= u * S.gp2[o + j];
  }
}

// B3 (warp, its hidden columns): dZ̄1 = (dZ̄2 W2ᵀ + dS2 X2) ⊙ gelu'(Z̄1) (operand), db1; dX2's part
// dS2ᵀ X̄2 (− τ Gp2 dW2'ᵀ with commit); dW1 += XQᵀ dZ̄1; dGp1 = −Mt1ᵀ dZ̄1 (− τ (XK dW1' + db1')),
// dlr's hidden part (its 16 rows handed to dl_out(row, value)), dtok[K − 1]'s part; dP = lr dGp1 ⊙ gelu'(Z1) as
// an operand (over X̄2) and into P dZ1 but for B6's term: lr dGp1 ⊙ P ⊙ gelu''(Z1) + dX2's part ⊙
// gelu'(Z1) (one tile carried to B6 instead of two).
template <class C, class S_, class DlOut>
TTT_DEV void dzbar1_products(const Params& p, S_& S, const Acc<2>& z1, const Acc<2>& zq, bool commit, float tokL,
                             StateRegs<C>& dW, Acc<2>& P, float& dtok_last, DlOut dl_out) {
  constexpr int F = C::F;
  const int hw = 16 * warp();
  {
    Acc<2> d;  // dX̄2, then dZ̄1
    d.fill(0.f);
    xyt<C, F / 16>(d, S.odzb2, C::OS, 0, S.w2(), S_::WS, 0, hw);
    xy<C, 1>(d, S.ods2(), C::KS, 0, S.ox2, C::HS, 0, hw);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) d.v[nt][e] *= smath::gelu_tanh_terms(zq.v[nt][e]).d1;
    store_op(d, S.odzb1, C::HS, 0, hw);
    if (p.bias) add_tile_column_sums(d, S.db1);
  }
  Acc<2> dx2;
  dx2.fill(0.f);
  xty<C, 2>(dx2, S.ods2(), C::KS, 0, S.oxb2, C::HS, hw);
  if (commit) {
    Acc<2> t;
    t.fill(0.f);
    xyt<C, F / 16>(t, S.ogp2, C::OS, 0, S.dw2(), S_::WS, 0, hw);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dx2.v[nt][e] += tokL * t.v[nt][e];
  }
  simt::syncwarp();
#pragma unroll
  for (int mt = 0; mt < F / 16; ++mt) xty<C, 2>(dW.w1[mt], S.oq, C::OS, 16 * mt, S.odzb1, C::HS, hw);
  Acc<2> dg, u1;
  P.fill(0.f);
  xyt<C, F / 16>(P, S.og2, C::OS, 0, S.w2(), S_::WS, 0, hw);
  dg.fill(0.f);
  xty<C, 2>(dg, S.omt1, C::KS, 0, S.odzb1, C::HS, hw);
  if (commit) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) u1.v[nt][e] = S.db1p[acc_col(hw, nt, e)];
    xy<C, F / 16>(u1, S.ok, C::OS, 0, S.dw1(), S_::W1S, 0, hw);
  }
  float dl[2] = {0.f, 0.f};  // rows g, g + 8
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const smath::GeluTerms<float> gt = smath::gelu_tanh_terms(z1.v[nt][e]);
      const float l = S.lr[acc_row(0, e)], g1 = P.v[nt][e] * gt.d1, gp1 = l * g1;
      float dgp1 = -dg.v[nt][e];
      if (commit) {
        dgp1 -= tokL * u1.v[nt][e];
        dtok_last -= u1.v[nt][e] * gp1;
      }
      dl[e >> 1] += g1 * dgp1;
      const float dg1 = l * dgp1;
      dg.v[nt][e] = dg1 * gt.d1;                                   // dP
      P.v[nt][e] = dg1 * P.v[nt][e] * gt.d2 + dx2.v[nt][e] * gt.d1;  // dZ1 but for dZ2 W2ᵀ ⊙ gelu'(Z1)
    }
#pragma unroll
  for (int i = 0; i < 2; ++i) dl[i] += simt::shfl_xor(dl[i], 1), dl[i] += simt::shfl_xor(dl[i], 2);
  if ((lane() & 3) == 0) {
    dl_out(lane() >> 2, dl[0]);
    dl_out((lane() >> 2) + 8, dl[1]);
  }
  simt::syncwarp();  // this warp's reads of its X̄2 columns are done
  store_op(dg, S.oxb2, C::HS, 0, hw);  // dP
}

// B6 (warp): dW2 += X2ᵀ dZ2, dZ1 = P + (dZ2 W2ᵀ) ⊙ gelu'(Z1) (operand over X̄2), db1, db2,
// dW1 += XKᵀ dZ1.
template <class C, class S_>
TTT_DEV void dz1_products(const Params& p, S_& S, const Acc<2>& z1, StateRegs<C>& dW, Acc<2>& P) {
  const int hw = 16 * warp();
  xty<C, C::F / 8>(dW.w2, S.ox2, C::HS, hw, S.odzb2, C::OS, 0);
  Acc<2> dx2;  // dX2's part dZ2 W2ᵀ
  dx2.fill(0.f);
  xyt<C, C::F / 16>(dx2, S.odzb2, C::OS, 0, S.w2(), S_::WS, 0, hw);
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) P.v[nt][e] += dx2.v[nt][e] * smath::gelu_tanh_terms(z1.v[nt][e]).d1;  // dZ1
  store_op(P, S.oxb2, C::HS, 0, hw);
  if (p.bias) {
    add_tile_column_sums(P, S.db1);
    add_colpart<C>(S.colpart, S.db2);
  }
  simt::syncwarp();
#pragma unroll
  for (int mt = 0; mt < C::F / 16; ++mt) xty<C, 2>(dW.w1[mt], S.ok, C::OS, 16 * mt, S.oxb2, C::HS, hw);
}

// B7: the warp's slice partials of dXQ = dZ̄1 W1ᵀ (+ dS1 XK, by one slice: with_ds1) and of
// dXK = dZ1 W1ᵀ + τ Gp1 dW1'ᵀ (commit) (+ dS1ᵀ XQ).
template <class C, class S_>
TTT_DEV Acc<2> dxq_partial(S_& S, const Split<C>& sp, bool with_ds1) {
  Acc<2> a;
  a.fill(0.f);
  xyt<C, C::KSPAN / 16>(a, S.odzb1, C::HS, sp.k0(), S.w1(), S_::W1S, sp.k0(), sp.col());
  if (with_ds1) xy<C, 1>(a, S.ods1(), C::KS, 0, S.ok, C::OS, 0, sp.col());
  return a;
}
// The partial of dZ1 W1ᵀ + τ Gp1 dW1'ᵀ alone (dz1: dZ1's operand tile; the walk keeps it over X̄2, the
// split backward's chain over dZ̄1).
template <class C, class S_>
TTT_DEV Acc<2> dz1_w1_partial(S_& S, const typename C::Op* dz1, const Split<C>& sp, bool commit, float tokL) {
  Acc<2> a;
  a.fill(0.f);
  xyt<C, C::KSPAN / 16>(a, dz1, C::HS, sp.k0(), S.w1(), S_::W1S, sp.k0(), sp.col());
  if (commit) {
    Acc<2> t;
    t.fill(0.f);
    xyt<C, C::KSPAN / 16>(t, S.ogp1, C::HS, sp.k0(), S.dw1(), S_::W1S, sp.k0(), sp.col());
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) a.v[nt][e] += tokL * t.v[nt][e];
  }
  return a;
}
template <class C, class S_>
TTT_DEV Acc<2> dxk_partial(S_& S, const Split<C>& sp, bool commit, float tokL, bool with_ds1) {
  Acc<2> a = dz1_w1_partial<C>(S, S.oxb2, sp, commit, tokL);
  if (with_ds1) xty<C, 2>(a, S.ods1(), C::KS, 0, S.oq, C::OS, sp.col());
  return a;
}

// dS, the gradient of the state entering this chunk, becomes dS' of the chunk before (operands of
// dW1, dW2; db1, db2 copied).
template <class C, class S_>
TTT_DEV void publish_state_grad(S_& S, const StateRegs<C>& dW) {
  dW.store_w1_op(S.dw1(), S_::W1S);
  store_op(dW.w2, S.dw2(), S_::WS, 16 * warp(), 0);
  for (int i = tid(); i < C::HDL; i += C::THREADS) S.db1p[i] = S.db1[i];
  for (int i = tid(); i < C::F; i += C::THREADS) S.db2p[i] = S.db2[i];
}

}  // namespace ttt::cuda_impl::tttm
