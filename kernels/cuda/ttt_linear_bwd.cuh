// kernels/cuda/ttt_linear_bwd.cuh — the fused TTT-Linear backward: one thread block per (batch,
// head) walks the chunks in reverse (math: kernels/ttt_linear_scan.h and the step list of
// kernels/cpu/ttt_linear_scan.cpp, which this follows line for line).
//
// The state entering every chunk comes from the replay kernel (ttt_linear_replay.cuh), which ran
// first; the block runs the chunks backwards:
//   top  the chunk's tiles and its state snapshot (W as operand, b) into smem
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

#include "kernels/cuda/ttt_linear_replay.cuh"

namespace ttt::cuda_impl::tttk {

// What a pass over chunks computes (the chunk-parallel passes: ttt_linear_chain.cuh).
//  walk:   everything, carrying the state gradient from chunk to chunk (version 5);
//  direct: only the state gradient the chunk adds with no gradient arriving from later chunks
//          (dW' = 0): XQᵀ dZ̄ + XKᵀ dZ1, Σ (dZ̄ + dZ1), for the serial walk;
//  tokens: everything but the state gradient, with the chunk's dW', db' read from the workspace.
enum class Mode { walk, direct, tokens };

template <class C>
struct BwdSmem {
  using Op = typename C::Op;
  // Double-buffered by cp.async one work item ahead: the chunk's tiles, and its state.
  alignas(16) float xq[2][KP * C::FS];
  alignas(16) float xk[2][KP * C::FS];
  alignas(16) float xv[2][KP * C::FS];
  alignas(16) float dout[2][KP * C::FS];
  alignas(16) float lr[2][KP];
  alignas(16) Op ow[2][C::F * C::OS];  // W of the chunk
  alignas(16) float wb[2][C::F];       // b of the chunk
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
  alignas(16) Op odw[C::F * C::OS]; // dW' (the gradient of the state leaving the chunk)
  alignas(16) Op omt[KP * C::KS];   // Mt
  alignas(16) Op ods[KP * C::KS];   // dS
  float mraw[KP * (KP + 1)], dmt[KP * (KP + 1)];
  alignas(16) float spart[C::NW * KP * (KP + 1)];  // the warps' partial XQ XKᵀ
  alignas(16) float tok[KP];
  alignas(16) float sig[KP];
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  alignas(16) float db[C::F];
  float red[C::THREADS];            // final reductions
  alignas(16) uint16_t stage[2][4][stage_elems<C>()];  // [buffer][XQ, XK, XV, dout] (bf16 storage only)
};

// The buffers of the current chunk (one side of each double buffer).
template <class C>
struct ItemBufs {
  float *xq, *xk, *xv, *dout, *lr;
  typename C::Op* ow;
  float* b;
  uint16_t (*stage)[stage_elems<C>()];
  TTT_DEV ItemBufs(BwdSmem<C>& S, int buf)
      : xq(S.xq[buf]), xk(S.xk[buf]), xv(S.xv[buf]), dout(S.dout[buf]), lr(S.lr[buf]), ow(S.ow[buf]), b(S.wb[buf]),
        stage(S.stage[buf]) {}
};

// Slot `slot` (= bh · R + range) of the parameter-gradient partials (ttt_linear_replay.cuh).
template <class C>
TTT_DEV float* partials(const Params& p, int64_t slot) {
  return partials_base(p, C::F) + slot * (C::F * C::F + 3 * C::F + p.K);
}

// --- the reverse walk: chunk k's tiles and state arrive by cp.async while chunk k + 1 computes ---

// The (b, h) slices of the backward's tensors (computed once per block).
template <class C>
struct BwdBases {
  using IO = typename C::IO;
  const IO *xq, *xk, *xv, *dout;
  const float* lr;
  IO *dxq, *dxk, *dxv;
  float* dlr;
  TTT_DEV BwdBases(const Params& p, int b, int h)
      : xq(p.xq.base<IO>(b, h)), xk(p.xk.base<IO>(b, h)), xv(p.xv.base<IO>(b, h)), dout(p.dout.base<IO>(b, h)),
        lr(p.lr.base(b, h)), dxq(p.dxq.base<IO>(b, h)), dxk(p.dxk.base<IO>(b, h)), dxv(p.dxv.base<IO>(b, h)),
        dlr(p.dlr.base(b, h)) {}
};

template <class C>
TTT_DEV void prefetch_tiles(const Params& p, const BwdBases<C>& hb, BwdSmem<C>& S, int tb, int k) {
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  tile_in_async<C>(S.xq[tb], S.stage[tb][0], hb.xq, p.xq.st, t0, rows);
  tile_in_async<C>(S.xk[tb], S.stage[tb][1], hb.xk, p.xk.st, t0, rows);
  tile_in_async<C>(S.xv[tb], S.stage[tb][2], hb.xv, p.xv.st, t0, rows);
  tile_in_async<C>(S.dout[tb], S.stage[tb][3], hb.dout, p.dout.st, t0, rows);
  if (tid() < KP) {
    if (tid() < rows) simt::cp_async4(&S.lr[tb][tid()], hb.lr + (t0 + tid()) * p.lr.st);
    else S.lr[tb][tid()] = 0.f;
  }
}

// A snapshot-layout state (operand rows [F, F], then b [F]) at src into ow (row stride OS) and b by
// cp.async.
template <class C>
TTT_DEV void state_in_async(const char* src, typename C::Op* ow, float* b) {
  constexpr int row_chunks = C::F * static_cast<int>(sizeof(typename C::Op)) / 16;
  for (int i = tid(); i < C::F * row_chunks; i += C::THREADS) {
    const int r = i / row_chunks, q = i % row_chunks;
    simt::cp_async16(reinterpret_cast<char*>(ow + r * C::OS) + 16 * q,
                     src + static_cast<int64_t>(r) * C::F * sizeof(typename C::Op) + 16 * q);
  }
  const char* bsrc = src + C::F * C::F * sizeof(typename C::Op);
  for (int i = tid(); i < C::F / 4; i += C::THREADS) simt::cp_async16(b + 4 * i, bsrc + 16 * i);
}
// Chunk k's state snapshot into S.ow[buf], S.wb[buf].
template <class C>
TTT_DEV void prefetch_state(const Params& p, BwdSmem<C>& S, int buf, int bh, int k) {
  state_in_async<C>(snapshot<C>(p, bh, k), S.ow[buf], S.wb[buf]);
}

// The operand copies of the item's XQ and XK tiles (bf16 storage: the four tiles widened from
// their staging first).
template <class C>
TTT_DEV void operand_tiles(const ItemBufs<C>& B, BwdSmem<C>& S) {
  if constexpr (C::BIO) {
    widen_tile<C>(B.stage[0], B.xq, S.oq);
    widen_tile<C>(B.stage[1], B.xk, S.ok);
    widen_tile<C>(B.stage[2], B.xv, nullptr);
    widen_tile<C>(B.stage[3], B.dout, nullptr);
  } else {
    for (int i = tid(); i < KP * C::F / 2; i += C::THREADS) {
      const int r = (2 * i) / C::F, c = (2 * i) % C::F;
      put_op2(S.oq + r * C::OS + c, B.xq[r * C::FS + c], B.xq[r * C::FS + c + 1]);
      put_op2(S.ok + r * C::OS + c, B.xk[r * C::FS + c], B.xk[r * C::FS + c + 1]);
    }
  }
}

// The top of every chunk: wait for its copies, then start those of chunk `next` (if >= 0) into the
// other buffers, whose readers finished before this barrier.
// In tokens mode the current chunk's state gradient (dW', db') is copied into S.odw, S.db first, as
// a group of its own that backward_chunk waits for before B5 (B1..B4 hide the copy).
template <class C, Mode M = Mode::walk>
TTT_DEV void item_top(const Params& p, const BwdBases<C>& hb, BwdSmem<C>& S, int next, int buf, int bh, PhaseClock& clk,
                      int cur = -1) {
  simt::cp_async_wait_all();
  clk.mark(18);
  simt::sync();
  clk.mark(19);
  if constexpr (M == Mode::tokens) {
    state_in_async<C>(dsnap<C>(p, bh, cur), S.odw, S.db);
    simt::cp_async_commit();
  }
  if (next >= 0) {
    prefetch_tiles<C>(p, hb, S, buf ^ 1, next);
    prefetch_state<C>(p, S, buf ^ 1, bh, next);
  }
  simt::cp_async_commit();
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

// B4: dZ̄ and the dout part of dXQ, rows of the chunk (one row per row group).
template <class C>
TTT_DEV void output_ln_backward_rows(const Params& p, BwdSmem<C>& S, const ItemBufs<C>& B, int n,
                                     BwdPartials<C>& part) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  const int o = r * C::FS + rl.c0;
  float go[C::CPL], dz[C::CPL];
  load_vec(go, B.dout + o);
  if (r >= n)
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) go[j] = 0.f;
  if (p.ln) {
    float zr[C::CPL], xh[C::CPL], dxh[C::CPL], w[C::CPL];
    load_vec(zr, S.zb + o);
    load_vec(w, S.lnw + rl.c0);
    const float sig = normalize<C>(zr, xh, p.eps);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) {
      dxh[j] = go[j] * w[j];
      part.dlnw[j] += go[j] * xh[j];
      part.dlnb[j] += go[j];
    }
    ln_vjp<C>(dxh, xh, sig, dz);
    store_vec(S.dxq + o, go);
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dz[j] = go[j], go[j] = 0.f;
    store_vec(S.dxq + o, go);
  }
  store_vec(S.zb + o, dz);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(S.odzb + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
}

// The LN-L2 gradient's vjp for one row slice (kernels/cpu/ttt_linear_scan.cpp has the formulas):
// from dG (already ⊙ lr), x̂, gx, G, w and σ, and the row sums c_gx = Σ gx x̂, Σ dG, Σ dG x̂,
// Σ dG G (`sums`, one butterfly round by the caller): dgx (out) and dZ1 (dz, one more round).
template <class C>
TTT_DEV void ln_l2_vjp(const float (&dG)[C::CPL], const float (&xh)[C::CPL], const float (&gx)[C::CPL],
                       const float (&w)[C::CPL], float sig, const float (&sums)[4], float (&dgx)[C::CPL],
                       float (&dz)[C::CPL]) {
  const float inv = 1.f / sig;
  const float c_gx = sums[0] * (1.f / C::F), m_dg = sums[1] * (1.f / C::F), c_dg = sums[2] * (1.f / C::F);
  const float dsig = -sums[3] * inv;
  float dxh[C::CPL];
  float s2[2] = {0.f, 0.f};  // Σ dx̂, Σ dx̂ x̂
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    dgx[j] = (dG[j] - m_dg - xh[j] * c_dg) * inv;
    dxh[j] = w[j] * w[j] * dgx[j] - (c_gx * dG[j] + gx[j] * c_dg) * inv;
    s2[0] += dxh[j];
    s2[1] += dxh[j] * xh[j];
  }
  row_sums<C>(s2);
  const float m1 = s2[0] * (1.f / C::F), m2 = s2[1] * (1.f / C::F);
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) dz[j] = (dxh[j] - m1 - xh[j] * m2) * inv + dsig * xh[j] * (1.f / C::F);
}

// dG ⊙= l (the row's lr), then this lane's parts of the vjp's row sums (ln_l2_vjp's `sums`):
// sums[0..3] += Σ gx x̂, Σ dG, Σ dG x̂, Σ dG G.
template <class C, int N>
TTT_DEV void vjp_row_partials(float (&dG)[C::CPL], const float (&xh)[C::CPL], const float (&gx)[C::CPL],
                              const float (&G)[C::CPL], float l, float (&sums)[N]) {
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    dG[j] *= l;
    sums[0] += gx[j] * xh[j];
    sums[1] += dG[j];
    sums[2] += dG[j] * xh[j];
    sums[3] += dG[j] * G[j];
  }
}

// B6: dS and dtok from dMt; dlr; the LN-L2 vjp giving dZ1, dXV and the LN partials (one row per
// row group; every row sum of the row in two butterfly rounds). Direct mode only forms dZ1.
template <class C, Mode M>
TTT_DEV void inner_grad_backward_rows(const Params& p, const BwdBases<C>& hb, BwdSmem<C>& S, const ItemBufs<C>& B,
                                      int64_t t0, int n, BwdPartials<C>& part) {
  constexpr bool outputs = M != Mode::direct;
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  const int li = tid() % C::LPR;
  // sums: 0 Σ gx x̂, 1 Σ dG, 2 Σ dG x̂, 3 Σ dG G, 4 dtok_r, 5 dlr_r
  float sums[6] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if constexpr (outputs)
    for (int j = li; j < KP; j += C::LPR) {
      const float m = (j <= r && r < n) ? S.dmt[r * (KP + 1) + j] : 0.f;
      sums[4] += m * S.mraw[r * (KP + 1) + j];
      put_op(S.ods + r * C::KS + j, S.tok[r] * m);
    }
  const int o = r * C::FS + rl.c0;
  const bool live = r < n;
  const float l = live ? B.lr[r] : 0.f;
  float G[C::CPL], dG[C::CPL], xh[C::CPL], gx[C::CPL], dz[C::CPL], dxv[C::CPL];
  load_vec(G, S.g + o);
  load_vec(dG, S.dgp + o);
  load_vec(xh, S.xh + o);
  load_vec(gx, S.gx + o);
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) sums[5] += G[j] * dG[j];
  vjp_row_partials<C>(dG, xh, gx, G, l, sums);
  row_sums<C>(sums);
  if constexpr (outputs) {
    if (rl.first()) part.dtok_row += sums[4];
    if (live && rl.first()) hb.dlr[(t0 + r) * p.dlr.st] = sums[5];
  }
  if (p.ln) {
    float w[C::CPL], dgx[C::CPL];
    load_vec(w, S.lnw + rl.c0);
    const float four[4] = {sums[0], sums[1], sums[2], sums[3]};
    ln_l2_vjp<C>(dG, xh, gx, w, S.sig[r], four, dgx, dz);
    if constexpr (outputs) {
      float be[C::CPL], xk[C::CPL], xv[C::CPL], dxk[C::CPL];
      load_vec(be, S.lnb + rl.c0);
      load_vec(xk, B.xk + o);
      load_vec(xv, B.xv + o);
      load_vec(dxk, S.dxk + o);
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) {
        part.dlnw[j] += dgx[j] * (2.f * w[j] * xh[j] + be[j] - (xv[j] - xk[j]));
        part.dlnb[j] += dgx[j] * w[j];
        dxv[j] = -w[j] * dgx[j];
        dxk[j] += w[j] * dgx[j];
      }
      store_vec(S.dxk + o, dxk);
    }
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dz[j] = dG[j], dxv[j] = -dG[j];
  }
  if constexpr (outputs)
    if (live) store_io(hb.dxv + (t0 + r) * p.dxv.st + rl.c0, dxv);
  store_vec(S.z + o, dz);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(S.odz1 + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
}

// Stores rows < n of a warp's [16, 16] tile (columns cw..) plus the smem part `add` to the (b, h)
// slice `base` (rows st apart), two consecutive floats at a time.
template <class C>
TTT_DEV void store_rows(const Acc<2>& acc, const float* add, typename C::IO* base, int64_t st, int64_t t0, int n,
                        int cw) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const int r = acc_row(0, e), c = acc_col(cw, nt, e);
      if (r >= n) continue;
      store_io2(base + (t0 + r) * st + c, acc.v[nt][e] + add[r * C::FS + c], acc.v[nt][e + 1] + add[r * C::FS + c + 1]);
    }
}

// B7's token-gradient products: dXQ += dS XK (stored with the row-phase parts), dXK = dSᵀ XQ +
// dZ1 Wᵀ + the row-phase parts.
template <class C>
TTT_DEV void tokens_b7(const Params& p, const BwdBases<C>& hb, BwdSmem<C>& S, const ItemBufs<C>& B, int64_t t0, int n,
                       Acc<2>& dxq) {
  constexpr int F = C::F;
  const int cw = 16 * warp();
  gemm_tile<C, 1>(dxq, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.ods, C::KS, 0, kk); },
               [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.ok, C::OS, kk, cw + n0); });
  store_rows<C>(dxq, S.dxq, hb.dxq, p.dxq.st, t0, n, cw);
  {
    Acc<2> dxk;
    dxk.fill(0.f);
    gemm_tile<C, 1>(dxk, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.ods, C::KS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.oq, C::OS, kk, cw + n0); });
    gemm_tile<C, F / 16>(dxk, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.odz1, C::OS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, B.ow, C::OS, kk, cw + n0); });
    store_rows<C>(dxk, S.dxk, hb.dxk, p.dxk.st, t0, n, cw);
  }
}

// One chunk of the reverse pass; dW (the warp's rows) and S.db, S.odw carry the state gradient
// (walk). Direct: dW and S.db receive the chunk's direct part only (dW' = 0, nothing stored);
// tokens: S.odw, S.db hold the chunk's dW', db' (arriving by cp.async, item_top) and dW is untouched.
template <class C, Mode M = Mode::walk>
TTT_DEV void backward_chunk(const Params& p, const BwdBases<C>& hb, BwdSmem<C>& S, const ItemBufs<C>& B, int k,
                            Acc<C::F / 8>& dW, BwdPartials<C>& part, PhaseClock& clk) {
  constexpr int F = C::F;
  const int cw = 16 * warp();
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  constexpr bool outputs = M != Mode::direct, state = M != Mode::tokens;
  const bool commit = n == p.K && M != Mode::direct;  // direct: dW' = 0, so the update path adds nothing
  const float tokL = p.tok[p.K - 1];
  // top: the operand copies of the tiles (the tiles and the state arrived by cp.async)
  operand_tiles<C>(B, S);
  simt::sync();
  clk.mark(10);
  // B1
  Acc<2> z1, zq;
  xw_pair<C>(z1, zq, S.ok, S.oq, B.b, cw, [&](FragB<C::MMA>& bb, int k0) { load_b(bb, B.ow, C::OS, k0, cw); });
  store_f32(z1, S.z, C::FS, 0, cw);
  attention_partial<C>(S.oq, S.ok, S.spart);
  simt::sync();
  clk.mark(11);
  // B2
  inner_grad_rows<C>(p, S.z, B.xk, B.xv, B.lr, S.lnw, S.lnb, n, S.gp, S.ogp, S.g, S.xh, S.gx, S.sig, S.spart, S.tok,
                     S.omt, S.mraw);
  simt::sync();
  clk.mark(12);
  // B3
  add_mt_gp<C>(zq, S.omt, S.ogp, cw);
  store_f32(zq, S.zb, C::FS, 0, cw);
  simt::sync();
  clk.mark(13);
  // B4
  output_ln_backward_rows<C>(p, S, B, n, part);
  if constexpr (M == Mode::tokens) simt::cp_async_wait_group<1>();  // dW', db' (item_top) have landed
  simt::sync();
  clk.mark(14);
  // B5
  Acc<2> dxq;
  dxq.fill(0.f);
  if constexpr (outputs)
    gemm_tile<C, F / 16>(dxq, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.odzb, C::OS, 0, kk); },
               [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, B.ow, C::OS, kk, cw + n0); });
  {
    Acc<2> dgp, u, dxk;
    dgp.fill(0.f);
    gemm_tile<C, 1>(dgp, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.omt, C::KS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odzb, C::OS, kk, cw + n0); });
    dxk.fill(0.f);
    if (commit) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) u.v[nt][e] = p.bias ? S.db[acc_col(cw, nt, e)] : 0.f;
      gemm_tile<C, F / 16>(u, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.ok, C::OS, 0, kk); },
                   [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odw, C::OS, kk, cw + n0); });
      gemm_tile<C, F / 16>(dxk, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.ogp, C::OS, 0, kk); },
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
  if (outputs && warp() == C::NW - 1) {
    Acc<2> dmt;
    dmt.fill(0.f);
    gemm_tile<C, F / 16>(dmt, [&](FragA<C::MMA>& a, int kk) { load_a(a, S.odzb, C::OS, 0, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_bt(bb, S.ogp, C::OS, kk, n0); });
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) S.dmt[acc_row(0, e) * (KP + 1) + acc_col(0, nt, e)] = dmt.v[nt][e];
  }
  if constexpr (state)
    gemm_tile<C, 1>(dW, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.oq, C::OS, cw, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odzb, C::OS, kk, n0); });
  simt::sync();
  clk.mark(15);
  // B6
  inner_grad_backward_rows<C, M>(p, hb, S, B, t0, n, part);
  simt::sync();
  clk.mark(16);
  // B7
  if constexpr (outputs) tokens_b7<C>(p, hb, S, B, t0, n, dxq);
  if constexpr (state) {
    gemm_tile<C, 1>(dW, [&](FragA<C::MMA>& a, int kk) { load_at(a, S.ok, C::OS, cw, kk); },
                 [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odz1, C::OS, kk, n0); });
    for (int c = tid(); c < F; c += C::THREADS) {
      float s = 0;
      for (int r = 0; r < KP; ++r) s += S.zb[r * C::FS + c] + S.z[r * C::FS + c];
      S.db[c] += s;
    }
  }
  if constexpr (M == Mode::walk) store_op(dW, S.odw, C::OS, cw, 0);
  simt::sync();
  clk.mark(17);
}

// Σ over the row groups (in order) of the threads' per-column partials v, into out[F].
template <class C>
TTT_DEV void column_partials(BwdSmem<C>& S, const float (&v)[C::CPL], float* out) {
  const RowLane<C> rl;
  for (int g = 0; g < C::RPP; ++g) {
    if (rl.rg == g)
#pragma unroll
      for (int j = 0; j < C::CPL; ++j) S.red[rl.c0 + j] = (g == 0 ? 0.f : S.red[rl.c0 + j]) + v[j];
    simt::sync();
  }
  for (int i = tid(); i < C::F; i += C::THREADS) out[i] = S.red[i];
  simt::sync();
}

// The block's partials into its slot of the workspace: dW0 and db0 (with `state`), dln_w, dln_b
// and dtok.
template <class C>
TTT_DEV void write_partials(const Params& p, BwdSmem<C>& S, int64_t slot, const Acc<C::F / 8>& dW,
                            BwdPartials<C>& part, bool state = true) {
  constexpr int F = C::F;
  float* out = partials<C>(p, slot);
  if (state) {
    store_state_rows<C>(dW, out, 16 * warp());
    for (int i = tid(); i < F; i += C::THREADS) out[F * F + i] = S.db[i];
  }
  // dln_w, dln_b: the row groups' partials summed in row-group order.
  column_partials<C>(S, part.dlnw, out + F * F + F);
  column_partials<C>(S, part.dlnb, out + F * F + 2 * F);
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
  const RowLane<C> rl;
  if (rl.first() && rl.rg < KP) S.red[rl.rg] = part.dtok_row;
  simt::sync();
  for (int i = tid(); i < p.K; i += C::THREADS) out[F * F + 3 * F + i] = S.red[i] + (i == p.K - 1 ? last : 0.f);
}

// The chain inputs of chunk k (direct mode, after the chunk): the chunk's direct state gradient D
// (dW's accumulator fragments: float4 n of thread t at n · THREADS + t, so the serial walk's
// threads read back exactly their own fragments) and its bias part, then x̂, gx, G [3, 16, F] and
// σ [16] of the chunk's inner LN; the block's dW and S.db are then zeroed for the next chunk.
template <class C>
TTT_DEV void write_chain_inputs(const Params& p, BwdSmem<C>& S, int bh, int k, Acc<C::F / 8>& dW) {
  constexpr int F = C::F, TILE4 = KP * F / 4;
  float* ci = chain_in<C>(p, bh, k);
  Vec4* d = reinterpret_cast<Vec4*>(ci);
#pragma unroll
  for (int n = 0; n < F / 8; ++n) d[n * C::THREADS + tid()] = Vec4{dW.v[n][0], dW.v[n][1], dW.v[n][2], dW.v[n][3]};
  dW.fill(0.f);
  float* dbk = ci + F * F;
  for (int c = tid(); c < F; c += C::THREADS) dbk[c] = S.db[c], S.db[c] = 0.f;  // S.db's owner threads (B7)
  float* rows = dbk + F;
  for (int i = tid(); i < 3 * TILE4; i += C::THREADS) {
    const int a = i / TILE4, e = 4 * (i % TILE4), r = e / F, c = e % F;
    const float* src = a == 0 ? S.xh : a == 1 ? S.gx : S.g;
    *reinterpret_cast<Vec4*>(rows + a * KP * F + e) = *reinterpret_cast<const Vec4*>(src + r * C::FS + c);
  }
  if (tid() < KP) rows[3 * KP * F + tid()] = S.sig[tid()];
}

// One block of a pass over chunks in reverse: walk (block = (b, h), every chunk) or, chunk-parallel,
// direct / tokens (block = (b, h, range r), chunks r·Q .. r·Q + Q − 1).
template <class C, Mode M = Mode::walk>
TTT_DEV void bwd_block(const Params& p, int blk, char* smem) {
  auto& S = *reinterpret_cast<BwdSmem<C>*>(smem);
  constexpr int F = C::F;
  const int bh = M == Mode::walk ? blk : blk / p.R, r = M == Mode::walk ? 0 : blk % p.R;
  const int lo = M == Mode::walk ? 0 : r * p.Q, hi = M == Mode::walk ? p.NC : (lo + p.Q < p.NC ? lo + p.Q : p.NC);
  const int b = bh / p.H, h = bh % p.H;
  // Overlapped (ttt_linear_chain.cuh bwd_overlap_block): the range's state gradients come from the walk.
  if (M == Mode::tokens && p.overlap) simt::flag_wait(chain_done(p, F, bh, r));
  load_head_constants<C>(p, h, S, nullptr);
  for (int i = tid(); i < F; i += C::THREADS) S.db[i] = 0.f;
  for (int i = tid(); i < F * C::OS; i += C::THREADS) put_op(S.odw + i, 0.f);
  Acc<F / 8> dW;
  dW.fill(0.f);
  BwdPartials<C> part;
  const BwdBases<C> hb(p, b, h);
  // Probe slots: 9 chunk tops, 10.. the chunk's phases, 18/19 waits, 20 (walk) or 21 the block's
  // total; the direct pass's at 32 + the same.
  PhaseClock clk(p, blk, M == Mode::direct ? 32 : 0);
  int buf = 0;
  prefetch_tiles<C>(p, hb, S, buf, hi - 1);
  prefetch_state<C>(p, S, buf, bh, hi - 1);
  simt::cp_async_commit();
  for (int k = hi - 1; k >= lo; --k, buf ^= 1) {
    item_top<C, M>(p, hb, S, k - 1 >= lo ? k - 1 : -1, buf, bh, clk, k);
    clk.mark(9);
    backward_chunk<C, M>(p, hb, S, ItemBufs<C>(S, buf), k, dW, part, clk);
    if constexpr (M == Mode::direct) write_chain_inputs<C>(p, S, bh, k, dW);
  }
  if constexpr (M == Mode::walk) write_partials<C>(p, S, bh, dW, part);
  if constexpr (M == Mode::tokens) write_partials<C>(p, S, static_cast<int64_t>(bh) * p.R + r, dW, part, false);
  if constexpr (M == Mode::direct) {
    if (p.overlap) {  // the range's chain inputs are written: the walk may read them
      simt::sync();
      if (tid() == 0) simt::flag_set(direct_done(p, F, bh, r));
    }
  }
  clk.total(M == Mode::walk ? 20 : 21);
}

}  // namespace ttt::cuda_impl::tttk
