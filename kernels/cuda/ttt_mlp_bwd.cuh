// kernels/cuda/ttt_mlp_bwd.cuh — the fused TTT-MLP backward: one thread block per (batch, head) walks
// the chunks in reverse (math: the step list of kernels/cpu/ttt_mlp_scan.cpp, which this follows;
// layout: ttt_mlp_common.cuh). The state entering chunk k comes from the forward's stored states
// (k a multiple of G) or from the replay kernel's snapshots (ttt_mlp_fwd.cuh replay_block, which ran
// first, all checkpoint groups side by side).
//
// The gradient of the state, dS = (dW1, db1, dW2, db2), runs through all chunks: dW1[:, hw] and
// dW2[hw, :] in the warp's registers (as the forward holds W), db1 and db2 in smem; at the end of a
// chunk it is published as operands (dS' of the chunk before). Per chunk (17 barriers):
//   top  the chunk's tiles; its state (operands of W1, W2; b1, b2)
//   R1-R5 the forward of the chunk again: Z1, X2 (R1), Z2 (R2), G2, Gp2, Mt1 (R3), G1, Gp1, Z̄1, X̄2
//        (R4), the partials of Z̄2 and X̄2 X2ᵀ (R5)
//   B0   rows: Z̄2, Mt2, dZ̄2 from the output LN (dln partials)
//   B1   dW2 += X̄2ᵀ dZ̄2; dMt2 = dZ̄2 (−Gp2)ᵀ; dGp2 = −Mt2ᵀ dZ̄2; db2 += Σ dZ̄2; U2 partials X2 dW2'
//   B2   rows: dS2 = diag(tok) dMt2, dtok; dGp2 −= τ U2, dτ −= Σ U2 ⊙ Gp2
//   B3   warp: dZ̄1 = (dZ̄2 W2ᵀ + dS2 X2) ⊙ gelu'(Z̄1), db1, dW1 += XQᵀ dZ̄1, dX2 = dS2ᵀ X̄2 − τ Gp2 dW2'ᵀ,
//        dGp1 = −Mt1ᵀ dZ̄1 − τ (XK dW1' + db1'), dτ, dlr's hidden part, dP = lr dGp1 ⊙ gelu'(Z1),
//        dZ1's part lr dGp1 ⊙ P ⊙ gelu''(Z1)
//   B4   partials of dP W2 and of dMt1 = dZ̄1 (−Gp1)ᵀ; dW2 += dPᵀ G2
//   B5   rows: dS1, dtok; dG2 = lr dGp2 + dP W2; dlr; the LN-L2 vjp → dZ2, dXV, dln partials
//   B6   warp: dW2 += X2ᵀ dZ2, dX2 += dZ2 W2ᵀ, dZ1, db1, dW1 += XKᵀ dZ1; db2 += Σ dZ2
//   B7   dXQ = dout + dZ̄1 W1ᵀ + dS1 XK; dXK = dZ1 W1ᵀ − τ Gp1 dW1'ᵀ + dS1ᵀ XQ − dtgt (slice
//        partials, summed by the rows); dS published as operands
// At the end the block writes its partials of dW1, db1, dW2, db2, dln_w, dln_b and dtok to the
// workspace, reduced over the batch by a separate kernel (fixed order: deterministic).
#pragma once

#include "kernels/cuda/ttt_mlp_fwd.cuh"

namespace ttt::cuda_impl::tttm {

// Buffers whose lifetimes do not overlap share storage (accessors below): shared memory at F = 64
// with bf16 products is 227 KB of the H200's 227 KB opt-in limit otherwise exceeded.
template <class C>
struct BwdSmem {
  using Op = typename C::Op;
  static constexpr int W1S = C::W1S, WS = C::WS;
  alignas(16) Op ow1[C::F * C::W1S];   // W1 of the chunk
  alignas(16) Op ow2[C::HD * C::WS];   // W2 of the chunk
  alignas(16) Op odw1[C::F * C::W1S];  // dW1' (the gradient of the state leaving the chunk)
  alignas(16) Op odw2[C::HD * C::WS];  // dW2'
  alignas(16) Op ox2[KP * C::HS];      // X2
  alignas(16) Op oxb2[KP * C::HS];     // X̄2, then dP (B3), then dZ1 (B6)
  alignas(16) Op ogp1[KP * C::HS];     // −Gp1
  alignas(16) Op odzb1[KP * C::HS];    // dZ̄1
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op og2[KP * C::OS];      // G2
  alignas(16) Op ogp2[KP * C::OS];     // −Gp2
  alignas(16) Op odzb2[KP * C::OS];    // dZ̄2, then dZ2
  alignas(16) Op omt1[KP * C::KS];     // Mt1 (R3 .. B3), then dS1 (B5 ..)
  alignas(16) Op omt2[KP * C::KS];     // Mt2 (B0 .. B1), then dS2 (B2 .. B3)
  alignas(16) float tgt[KP * C::FS];   // the inner loss target
  alignas(16) float z2[KP * C::FS];    // Z2, then dtgt (B5)
  alignas(16) float gp2[KP * C::FS];   // Gp2
  alignas(16) float dgp2[KP * C::FS];  // dGp2
  alignas(16) float part[C::NKS * KP * C::FS];  // slice partials of [16, F] products
  alignas(16) float mpart[C::NKS * KP * SP];    // slice partials of X̄2 X2ᵀ, then of dMt1
  alignas(16) float s1[KP * SP];                // XQ XKᵀ (R1 .. R3), then tril(X̄2 X2ᵀ + β) (B0 .. B2)
  alignas(16) float m1raw[KP * SP];             // tril(XQ XKᵀ + β)
  alignas(16) float mt2[KP * SP];               // Mt2 (B0), then dMt2 (B1 .. B2)
  alignas(16) float colpart[C::RW * C::F];      // the row warps' column sums of dZ̄2, then of dZ2
  alignas(16) float dlnw[C::RW * C::F];         // the row warps' partials of dln_w, dln_b
  alignas(16) float dlnb[C::RW * C::F];
  alignas(16) float dlrp[C::NW * KP];           // the warps' parts of dlr (their hidden columns)
  alignas(16) float b1[C::HD];
  alignas(16) float db1[C::HD];
  alignas(16) float db1p[C::HD];  // db1' (of the state leaving the chunk)
  alignas(16) float b2[C::F];
  alignas(16) float db2[C::F];
  alignas(16) float db2p[C::F];
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  float tok[KP], lr[KP], dtok[KP];
  // W1, dW1', W2 and dW2' as the products read and write them: unpadded bf16 rows, XOR-swizzled
  // (SwizzledOps) with MMA; padded float32 rows without.
  TTT_DEV static auto rows(Op* m) {
    if constexpr (C::MMA) return SwizzledOps{m}; else return m;
  }
  TTT_DEV auto w1() { return rows(ow1); }
  TTT_DEV auto dw1() { return rows(odw1); }
  TTT_DEV auto w2() { return rows(ow2); }
  TTT_DEV auto dw2() { return rows(odw2); }
  TTT_DEV Op* ods1() { return omt1; }
  TTT_DEV Op* ods2() { return omt2; }
  TTT_DEV float* m2raw() { return s1; }
  TTT_DEV float* dmt2() { return mt2; }
  TTT_DEV float* red() { return part; }  // the final reduction (C::THREADS floats)
  static_assert(C::THREADS <= C::NKS * KP * C::FS, "red() fits in part");
};

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

// The block's partials of the parameter gradients: dW1, db1, dW2, db2 (a flat state), dln_w, dln_b,
// dtok; after those, the replay's snapshots (replay_snapshot() in ttt_mlp_fwd.cuh).
TTT_HD float* partials(const Params& p, int F, int bh) { return p.ws + static_cast<int64_t>(bh) * partial_size(F, p.K); }

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
  q.store(nullptr, S.oq);
  kk.store(nullptr, S.ok);
  store_target(kk, v, p.ln, S.tgt);
  if (tid() < KP) S.lr[tid()] = tid() < n ? hb.lr[(t0 + tid()) * p.lr.st] : 0.f;
}

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
TTT_DEV void put_ops8(uint16_t* dst, const uint16_t* src) {
  const tttk::U4 v = *reinterpret_cast<const tttk::U4*>(src);
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  d[0] = v.x, d[1] = v.y, d[2] = v.z, d[3] = v.w;
}

// rows × cols of a row-major W (row stride ld_src, cols a multiple of 8) into the operand matrix m
// (row stride ld: a pointer or SwizzledOps), several 16-byte loads in flight per thread.
template <class C, class M, class T>
TTT_DEV void load_w_ops(M m, int ld, const T* src, int ld_src, int rows, int cols) {
#pragma unroll 4
  for (int i = tid(); i < rows * cols / 8; i += C::THREADS) {
    const int r = 8 * i / cols, c = 8 * i % cols;
    put_ops8(op_at(m, ld, r, c), src + static_cast<int64_t>(r) * ld_src + c);
  }
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

// The chunk's tiles and its state (operands of W1, W2; b1, b2).
template <class C>
TTT_DEV void load_chunk(const Params& p, const InBases& hb, BwdSmem<C>& S, int bh, int k, int n) {
  constexpr int F = C::F, HD = C::HD;
  load_chunk_tiles<C>(p, hb, S, k, n);
  with_walk_state<C>(p, bh, k, [&](const auto& st) {
    load_w_ops<C>(S.w1(), C::W1S, st.w1, HD, F, HD);
    load_w_ops<C>(S.w2(), C::WS, st.w2, F, HD, F);
    for (int i = tid(); i < HD; i += C::THREADS) S.b1[i] = st.b1[i];
    for (int i = tid(); i < F; i += C::THREADS) S.b2[i] = st.b2[i];
  });
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

// B5 rows: dS1 = diag(tok) dMt1 (from the slice partials) and dtok; G2 again from Z2; dG2 = lr dGp2 +
// Σ partials `part` of dP W2; dlr (the G2 part and the `dlr_parts` warps' parts in dlrp); the
// LN-L2 vjp (kernels/cpu/ttt_scan_rows.h) giving dZ2 (float32 and operand), dtgt (dXV = dtgt; −dtgt
// kept in the Z2 tile for dXK) and the LN partials. dlr and dXV are written when `writes` (one
// block of a cluster).
template <class C, class S_>
TTT_DEV void inner_grad_backward_rows(const Params& p, const BwdBases& bb, S_& S, const float* part, int64_t t0,
                                      int n, float& dtok_row, bool writes, int dlr_parts) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  const int li = tid() % C::LPR, o = r * C::FS + rl.c0;
  for (int j = li; j < KP; j += C::LPR) {
    float d = 0;
    for (int s = 0; s < C::NKS; ++s) d += S.mpart[s * KP * SP + r * SP + j];
    const float m = (j <= r && r < n) ? d : 0.f;
    dtok_row += m * S.m1raw[r * SP + j];
    put_op(S.ods1() + r * C::KS + j, S.tok[r] * m);
  }
  float z[C::CPL], tgt[C::CPL], w[C::CPL], be[C::CPL], xh[C::CPL], gx[C::CPL], G[C::CPL], dG[C::CPL];
  load_vec(z, S.z2 + o);
  load_vec(tgt, S.tgt + o);
  load_vec(w, S.lnw + rl.c0);
  load_vec(be, S.lnb + rl.c0);
  const float sig = inner_grad<C>(p, z, tgt, w, be, xh, gx, G);
  const bool live = r < n;
  const float l = live ? S.lr[r] : 0.f;
  load_vec(dG, S.dgp2 + o);
  // sums: 0 dlr (G2 part), 1 Σ gx x̂, 2 Σ dG, 3 Σ dG x̂, 4 Σ dG G
  float sums[5] = {0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    sums[0] += G[j] * dG[j];
    dG[j] *= l;
  }
#pragma unroll
  for (int s = 0; s < C::NKS; ++s) {
    float t[C::CPL];
    load_vec(t, part + s * KP * C::FS + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dG[j] += t[j];
  }
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
  float dz[C::CPL], dtgt[C::CPL];
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
#pragma unroll
  for (int s = 0; s < C::NKS; ++s) {
    float t[C::CPL];
    load_vec(t, part + s * KP * C::FS + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] += t[j];
  }
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
#pragma unroll
  for (int s = 0; s < C::NKS; ++s) {
    float t[C::CPL];
    load_vec(t, part + s * KP * C::FS + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] += t[j];
  }
  bb.dxq.store(t0 + r, rl.c0, y);
}

template <class C>
TTT_DEV void bwd_chunk(const Params& p, const InBases& hb, const BwdBases& bb, BwdSmem<C>& S, int bh, int k,
                       StateRegs<C>& dW, float& dtok_row, float& dtok_last);

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

template <class C>
TTT_DEV void bwd_block(const Params& p, int bh, char* smem) {
  auto& S = *reinterpret_cast<BwdSmem<C>*>(smem);
  constexpr int F = C::F, HD = C::HD;
  const int b = bh / p.H, h = bh % p.H;
  load_ln_tok<C>(p, h, S);
  for (int i = tid(); i < HD; i += C::THREADS) S.db1[i] = S.db1p[i] = 0.f;
  for (int i = tid(); i < F; i += C::THREADS) S.db2[i] = S.db2p[i] = 0.f;
  for (int i = tid(); i < C::RW * F; i += C::THREADS) S.dlnw[i] = S.dlnb[i] = 0.f;
  for (int i = tid(); i < F * C::W1S; i += C::THREADS) put_op(S.odw1 + i, 0.f);
  for (int i = tid(); i < HD * C::WS; i += C::THREADS) put_op(S.odw2 + i, 0.f);
  StateRegs<C> dW;
  dW.fill(0.f);
  float dtok_row = 0, dtok_last = 0;
  const InBases hb(p, b, h);
  const BwdBases bb(p, b, h);
  for (int k = p.NC - 1; k >= 0; --k) bwd_chunk<C>(p, hb, bb, S, bh, k, dW, dtok_row, dtok_last);
  // The block's partials; dtok's update-path part summed in thread order.
  simt::sync();
  float* out = partials(p, F, bh);
  write_partials<C>(p, S, dW, dtok_row, 0, true, out);
  S.red()[tid()] = dtok_last;
  simt::sync();
  if (tid() == 0) {
    float s = 0;
    for (int i = 0; i < C::THREADS; ++i) s += S.red()[i];
    for (int i = 0; i < p.K; ++i) out[state_size(F) + 2 * F + i] = S.dtok[i] + (i == p.K - 1 ? s : 0.f);
  }
}

// --- the phases of a chunk the one-block walk and the cluster walk (ttt_mlp_bwd_cluster.cuh) share:
// warp-local products and row phases over smem buffers of the same names (S: BwdSmem or
// ClusterBwdSmem; S_::W1S, S_::WS the row strides of W1, dW1' and W2, dW2'). Where a product over
// the hidden units ends in slice partials, the helper returns the warp's partial tile and the
// caller puts it where its form collects them.

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

// B1, the products within the block: dW2 += X̄2ᵀ dZ̄2 (the warp's rows); last warp: dMt2 = dZ̄2 (−Gp2)ᵀ;
// the block's first slice (every column block once): dGp2 = −Mt2ᵀ dZ̄2; db2 += Σ dZ̄2.
template <class C, class S_>
TTT_DEV void dzbar2_products(const Params& p, S_& S, StateRegs<C>& dW, const Split<C>& sp) {
  xty<C, C::F / 8>(dW.w2, S.oxb2, C::HS, 16 * warp(), S.odzb2, C::OS, 0);
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

// B3 (warp, its hidden columns): dZ̄1 = (dZ̄2 W2ᵀ + dS2 X2) ⊙ gelu'(Z̄1) (operand), db1; dX2 = dS2ᵀ X̄2
// (− τ Gp2 dW2'ᵀ with commit) into dx2; dW1 += XQᵀ dZ̄1; dGp1 = −Mt1ᵀ dZ̄1 (− τ (XK dW1' + db1')),
// dlr's hidden part (its 16 rows into dlrp[0 .. 16)), dtok[K − 1]'s part; dP = lr dGp1 ⊙ gelu'(Z1) as
// an operand (over X̄2) and dZ1's part lr dGp1 ⊙ P ⊙ gelu''(Z1) into P.
template <class C, class S_>
TTT_DEV void dzbar1_products(const Params& p, S_& S, const Acc<2>& z1, const Acc<2>& zq, bool commit, float tokL,
                             StateRegs<C>& dW, Acc<2>& dx2, Acc<2>& P, float& dtok_last, float* dlrp) {
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
      dg.v[nt][e] = dg1 * gt.d1;              // dP
      P.v[nt][e] = dg1 * P.v[nt][e] * gt.d2;  // dZ1's part through gelu'
    }
#pragma unroll
  for (int i = 0; i < 2; ++i) dl[i] += simt::shfl_xor(dl[i], 1), dl[i] += simt::shfl_xor(dl[i], 2);
  if ((lane() & 3) == 0) {
    dlrp[lane() >> 2] = dl[0];
    dlrp[(lane() >> 2) + 8] = dl[1];
  }
  simt::syncwarp();  // this warp's reads of its X̄2 columns are done
  store_op(dg, S.oxb2, C::HS, 0, hw);  // dP
}

// B6 (warp): dW2 += X2ᵀ dZ2, dX2 += dZ2 W2ᵀ, dZ1 = P + dX2 ⊙ gelu'(Z1) (operand over X̄2), db1, db2,
// dW1 += XKᵀ dZ1.
template <class C, class S_>
TTT_DEV void dz1_products(const Params& p, S_& S, const Acc<2>& z1, StateRegs<C>& dW, Acc<2>& dx2, Acc<2>& P) {
  const int hw = 16 * warp();
  xty<C, C::F / 8>(dW.w2, S.ox2, C::HS, hw, S.odzb2, C::OS, 0);
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
template <class C, class S_>
TTT_DEV Acc<2> dxk_partial(S_& S, const Split<C>& sp, bool commit, float tokL, bool with_ds1) {
  Acc<2> a;
  a.fill(0.f);
  xyt<C, C::KSPAN / 16>(a, S.oxb2, C::HS, sp.k0(), S.w1(), S_::W1S, sp.k0(), sp.col());
  if (commit) {
    Acc<2> t;
    t.fill(0.f);
    xyt<C, C::KSPAN / 16>(t, S.ogp1, C::HS, sp.k0(), S.dw1(), S_::W1S, sp.k0(), sp.col());
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) a.v[nt][e] += tokL * t.v[nt][e];
  }
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

template <class C>
TTT_DEV void bwd_chunk(const Params& p, const InBases& hb, const BwdBases& bb, BwdSmem<C>& S, int bh, int k,
                       StateRegs<C>& dW, float& dtok_row, float& dtok_last) {
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int n = chunk_rows(p, k);
  const bool commit = n == p.K;
  const float tokL = p.tok[p.K - 1], beta = p.bias ? 1.f : 0.f;
  const Split<C> sp;
  const RowLane<C> rl;
  // top
  simt::sync();  // the previous chunk's readers are done
  load_chunk<C>(p, hb, S, bh, k, n);
  simt::sync();
  // R1
  Acc<2> z1, zq;
  first_phase<C>(z1, zq, S.ok, S.oq, S.w1(), C::W1S, S.b1, S.ox2, S.s1);
  simt::sync();
  // R2
  x_w2_partial<C>(S.ox2, S.w2(), C::WS, S.part);
  simt::sync();
  // R3
  inner_grad_rows<C>(p, S.part, S.b2, S.tgt, S.lr, S.lnw, S.lnb, n, S.gp2, S.og2, S.ogp2, S.z2);
  if (rl.rg < KP) causal_row<C>(S.s1, 1, S.tok, rl.rg, n, beta, S.omt1, nullptr, S.m1raw);
  simt::sync();
  // R4
  recompute_xbar2<C>(S, z1, zq);
  simt::sync();
  // R5
  x_w2_partial<C>(S.oxb2, S.w2(), C::WS, S.part);
  if (sp.cb == 0) store_f32(hidden_abt_partial<C>(S.oxb2, S.ox2, sp), S.mpart + sp.ks * KP * SP, SP, 0, 0);
  simt::sync();
  // B0
  output_rows<C>(p, bb, S, S.part, t0, n);
  simt::sync();
  // B1
  dzbar2_products<C>(p, S, dW, sp);
  if (commit) x_w2_partial<C>(S.ox2, S.dw2(), C::WS, S.part);  // U2 = X2 dW2'
  simt::sync();
  // B2
  ds2_rows<C>(S, S.part, n, commit, tokL, dtok_row, dtok_last);
  simt::sync();
  // B3
  Acc<2> dx2, P;
  dzbar1_products<C>(p, S, z1, zq, commit, tokL, dW, dx2, P, dtok_last, S.dlrp + warp() * KP);
  simt::sync();
  // B4
  x_w2_partial<C>(S.oxb2, S.w2(), C::WS, S.part);  // dP W2
  if (sp.cb == 0) store_f32(hidden_abt_partial<C>(S.odzb1, S.ogp1, sp), S.mpart + sp.ks * KP * SP, SP, 0, 0);
  xty<C, C::F / 8>(dW.w2, S.oxb2, C::HS, 16 * warp(), S.og2, C::OS, 0);
  simt::sync();
  // B5
  inner_grad_backward_rows<C>(p, bb, S, S.part, t0, n, dtok_row, true, C::NW);
  simt::sync();
  // B6
  dz1_products<C>(p, S, z1, dW, dx2, P);
  simt::sync();
  // B7: dXQ
  store_f32(dxq_partial<C>(S, sp, sp.ks == 0), S.part + sp.ks * KP * C::FS, C::FS, 0, sp.col());
  simt::sync();
  store_dxq_rows<C>(p, bb, S.part, t0, n);
  simt::sync();
  // B7: dXK
  store_f32(dxk_partial<C>(S, sp, commit, tokL, sp.ks == 0), S.part + sp.ks * KP * C::FS, C::FS, 0, sp.col());
  simt::sync();
  store_sum_rows<C>(S.part, S.z2, -1.f, bb.dxk, t0, n);  // − dtgt
  publish_state_grad<C>(S, dW);
}

// Element i (< reduce_count) of the reduction of the blocks' partials: sums over the batch (over
// every (b, h) for dtok) in index order. Run by a grid-stride kernel (and by the host emulation in
// the tests).
TTT_HD int64_t reduce_count(const Params& p, int F) {
  return static_cast<int64_t>(p.H) * (state_size(F) + 2 * F) + p.K;
}
TTT_HD void reduce_partials_at(int64_t i, const Params& p, int F, float* dw1, float* db1, float* dw2, float* db2,
                               float* dlnw, float* dlnb, float* dtok) {
  const int64_t per = partial_size(F, p.K), SS = state_size(F), head = SS + 2 * F;
  const int64_t heads_part = static_cast<int64_t>(p.H) * head;
  if (i >= heads_part) {
    const int64_t j = i - heads_part;
    float s = 0;
    for (int64_t bh = 0; bh < static_cast<int64_t>(p.B) * p.H; ++bh) s += p.ws[bh * per + head + j];
    dtok[j] = s;
    return;
  }
  const int64_t h = i / head, e = i % head;
  float s = 0;
  for (int64_t b = 0; b < p.B; ++b) s += p.ws[(b * p.H + h) * per + e];
  const int64_t HD = 4 * F;
  if (e < off_b1(F)) dw1[h * F * HD + e] = s;
  else if (e < off_w2(F)) { if (db1) db1[h * HD + e - off_b1(F)] = s; }
  else if (e < off_b2(F)) dw2[h * HD * F + e - off_w2(F)] = s;
  else if (e < SS) { if (db2) db2[h * F + e - off_b2(F)] = s; }
  else if (e < SS + F) { if (dlnw) dlnw[h * F + e - SS] = s; }
  else if (dlnb) dlnb[h * F + e - SS - F] = s;
}

}  // namespace ttt::cuda_impl::tttm
