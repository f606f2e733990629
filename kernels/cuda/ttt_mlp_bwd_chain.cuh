// kernels/cuda/ttt_mlp_bwd_chain.cuh — the split TTT-MLP backward, part two: one block per (b, h)
// walks the chunks in reverse carrying only the state's gradient dS = (dW1, db1, dW2, db2), reading
// each chunk's record of its test path (ttt_mlp_bwd_split.cuh, which ran first). Math: the CPU
// reference's chain_step and token_dxk (kernels/cpu/ttt_mlp_scan.cpp); layout: ttt_mlp_common.cuh
// (dW1[:, hw], dW2[hw, :] in the warp's registers; dS' published as operands at the end of a chunk).
//
// Per chunk (7 barriers; the reverse walk has 17):
//   top  tiles (XQ, XK, the target, lr), the state (W1, W2 operands, b1), the record's operand tiles
//        (cp.async: G2, −Gp2, dZ̄2, X̄2, dZ̄1), its fragments of dGp1's and dX2's test parts
//   A    warp: R, the test path's part of dS (dW2 += X̄2ᵀ dZ̄2, dW1 += XQᵀ dZ̄1, db1, db2 from the
//        record's column sums); Z1 = XK W1 + b1, X2 = gelu(Z1), P = G2 W2ᵀ, −Gp1 (operands);
//        U1 = XK dW1' + db1'; dGp1 = rec − τ U1; dlr's hidden part; dP = lr dGp1 ⊙ gelu'(Z1);
//        dX2 = rec − τ Gp2 dW2'ᵀ; dZ1's part lr dGp1 ⊙ P ⊙ gelu''(Z1) + dX2 ⊙ gelu'(Z1); dW2 += dPᵀ G2
//   A2   slice partials of U2 = X2 dW2' and of dP W2
//   B    rows: dGp2 = rec − τ (U2 + db2'); the inner loss's backward (inner_loss_vjp_row) → dZ2,
//        dXV, dlr, LN partials
//   C    warp: dW2 += X2ᵀ dZ2; dZ1 += (dZ2 W2ᵀ) ⊙ gelu'(Z1); db1, db2; dW1 += XKᵀ dZ1
//   D    slice partials of dXK = dZ1 W1ᵀ + τ (−Gp1) dW1'ᵀ
//   E    rows: dXK = Σ partials + rec (dS1ᵀ XQ) − dtgt; dS published as operands
#pragma once

#include "kernels/cuda/ttt_mlp_bwd_split.cuh"

namespace ttt::cuda_impl::tttm {

template <class C>
struct ChainSmem {
  using Op = typename C::Op;
  static constexpr int W1S = C::W1S, WS = C::WS;
  alignas(16) Op ow1[C::F * C::W1S];   // W1 of the chunk
  alignas(16) Op ow2[C::HD * C::WS];   // W2 of the chunk
  alignas(16) Op odw1[C::F * C::W1S];  // dW1'
  alignas(16) Op odw2[C::HD * C::WS];  // dW2'
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op og2[KP * C::OS];    // G2 (record)
  alignas(16) Op ogp2[KP * C::OS];   // −Gp2 (record)
  alignas(16) Op odzb2[KP * C::OS];  // dZ̄2 (record), then dZ2 (B)
  alignas(16) Op ox2[KP * C::HS];    // X2
  alignas(16) Op oxb2[KP * C::HS];   // X̄2 (record), then dP (A)
  alignas(16) Op odzb1[KP * C::HS];  // dZ̄1 (record), then dZ1 (C)
  alignas(16) Op ogp1[KP * C::HS];   // −Gp1
  alignas(16) float tgt[KP * C::FS];
  alignas(16) float part[C::NKS * KP * C::FS];   // slice partials of U2, then of dXK
  alignas(16) float part2[C::NKS * KP * C::FS];  // slice partials of dP W2
  alignas(16) float colpart[C::RW * C::F];       // the row warps' column sums of dZ2
  alignas(16) float dlnw[C::RW * C::F];
  alignas(16) float dlnb[C::RW * C::F];
  alignas(16) float dlrp[C::NW * KP];
  alignas(16) float b1[C::HD];
  alignas(16) float db1[C::HD];
  alignas(16) float db1p[C::HD];
  alignas(16) float db2[C::F];
  alignas(16) float db2p[C::F];
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  alignas(16) float dln_t[2 * C::F];  // the records' output-LN partials, summed
  float tok[KP], lr[KP], dtok[KP], dtok_t[KP];
  TTT_DEV auto w1() { return op_rows<C>(ow1); }  // as BwdSmem's
  TTT_DEV auto dw1() { return op_rows<C>(odw1); }
  TTT_DEV auto w2() { return op_rows<C>(ow2); }
  TTT_DEV auto dw2() { return op_rows<C>(odw2); }
  TTT_DEV float* red() { return part; }
  static_assert(C::THREADS <= C::NKS * KP * C::FS, "red() fits in part");
};

// The top: tiles, the state, the record's operand tiles (asynchronous with bf16 operands) and its
// fragments; waits for the copies, then the block barrier.
template <class C>
TTT_DEV void chain_load(const Params& p, const InBases& hb, ChainSmem<C>& S, int bh, int k, int n, const char* rec,
                        Acc<2>& dgp1, Acc<2>& dx2) {
  using R = Rec<C>;
  load_chunk_tiles<C>(p, hb, S, k, n);
  with_walk_state<C>(p, bh, k, [&](const auto& st) {
    load_w_ops<C>(S.w1(), C::W1S, st.w1, C::HD, C::F, C::HD);
    load_w_ops<C>(S.w2(), C::WS, st.w2, C::F, C::HD, C::F);
    for (int i = tid(); i < C::HD; i += C::THREADS) S.b1[i] = st.b1[i];
  });
  auto async = [&](void* dst, int64_t off, int64_t bytes) {
    for (int64_t i = int64_t{tid()} * 16; i < bytes; i += int64_t{C::THREADS} * 16)
      simt::cp_async16(static_cast<char*>(dst) + i, rec + off + i);
  };
  async(S.og2, R::g2, R::OPF);
  async(S.ogp2, R::ngp2, R::OPF);
  async(S.odzb2, R::dzb2, R::OPF);
  async(S.oxb2, R::xb2, R::OPH);
  async(S.odzb1, R::dzb1, R::OPH);
  load_frag(dgp1, rec + R::dgp1);
  load_frag(dx2, rec + R::dx2);
  load_w_ops_wait();
  simt::sync();
}

// A (warp, its hidden columns), up to the operands the partials of A2 read. Returns dZ1's part in
// dz1 and keeps Z1 in z1 (for gelu'(Z1) in C).
template <class C>
TTT_DEV void chain_hidden(ChainSmem<C>& S, const char* rec, bool commit, float tokL, StateRegs<C>& dW,
                          const Acc<2>& dgp1_t, const Acc<2>& dx2_t, Acc<2>& z1, Acc<2>& dz1, float& dtok_last) {
  using R = Rec<C>;
  constexpr int F = C::F;
  const int hw = 16 * warp();
  // R: the test path's part of dS (the warp's own columns of X̄2 and dZ̄1)
  xty<C, F / 8>(dW.w2, S.oxb2, C::HS, hw, S.odzb2, C::OS, 0);
#pragma unroll
  for (int mt = 0; mt < F / 16; ++mt) xty<C, 2>(dW.w1[mt], S.oq, C::OS, 16 * mt, S.odzb1, C::HS, hw);
  first_layer_again<C>(z1, S.ok, S.w1(), C::W1S, S.b1);
  Acc<2> P, u1, dx2 = dx2_t;
  P.fill(0.f);
  xyt<C, F / 16>(P, S.og2, C::OS, 0, S.w2(), C::WS, 0, hw);
  if (commit) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) u1.v[nt][e] = S.db1p[acc_col(hw, nt, e)];
    xy<C, F / 16>(u1, S.ok, C::OS, 0, S.dw1(), C::W1S, 0, hw);
    Acc<2> t;
    t.fill(0.f);
    xyt<C, F / 16>(t, S.ogp2, C::OS, 0, S.dw2(), C::WS, 0, hw);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dx2.v[nt][e] += tokL * t.v[nt][e];
  }
  Acc<2> x2, ngp1, dP;
  float dl[2] = {0.f, 0.f};  // rows g, g + 8
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const smath::GeluTerms<float> gt = smath::gelu_tanh_terms(z1.v[nt][e]);
      const float l = S.lr[acc_row(0, e)], g1 = P.v[nt][e] * gt.d1, gp1 = l * g1;
      float dgp1 = dgp1_t.v[nt][e];
      if (commit) {
        dgp1 -= tokL * u1.v[nt][e];
        dtok_last -= u1.v[nt][e] * gp1;
      }
      dl[e >> 1] += g1 * dgp1;
      const float dg1 = l * dgp1;
      x2.v[nt][e] = gt.y;
      ngp1.v[nt][e] = -gp1;
      dP.v[nt][e] = dg1 * gt.d1;
      dz1.v[nt][e] = dg1 * P.v[nt][e] * gt.d2 + dx2.v[nt][e] * gt.d1;
    }
#pragma unroll
  for (int i = 0; i < 2; ++i) dl[i] += simt::shfl_xor(dl[i], 1), dl[i] += simt::shfl_xor(dl[i], 2);
  if ((lane() & 3) == 0) {
    S.dlrp[warp() * KP + (lane() >> 2)] = dl[0];
    S.dlrp[warp() * KP + (lane() >> 2) + 8] = dl[1];
  }
  simt::syncwarp();  // the warp's reads of its X̄2 columns (R) are done
  store_op(x2, S.ox2, C::HS, 0, hw);
  store_op(ngp1, S.ogp1, C::HS, 0, hw);
  store_op(dP, S.oxb2, C::HS, 0, hw);
  simt::syncwarp();
  xty<C, F / 8>(dW.w2, S.oxb2, C::HS, hw, S.og2, C::OS, 0);  // dW2 += dPᵀ G2
  // The record's sums and partials (no other thread touches these in A)
  const float* cs1 = reinterpret_cast<const float*>(rec + R::cs1);
  const float* cs2 = reinterpret_cast<const float*>(rec + R::cs2);
  const float* dln = reinterpret_cast<const float*>(rec + R::dln);
  const float* dtk = reinterpret_cast<const float*>(rec + R::dtok);
  for (int i = tid(); i < C::HD; i += C::THREADS) S.db1[i] += cs1[i];
  for (int i = tid(); i < F; i += C::THREADS) S.db2[i] += cs2[i];
  for (int i = tid(); i < 2 * F; i += C::THREADS) S.dln_t[i] += dln[i];
  for (int i = tid(); i < KP; i += C::THREADS) S.dtok_t[i] += dtk[i];
}

// B rows: dGp2 = rec − τ (U2 + db2') (commit), dtok[K − 1]'s part; the inner loss's backward; dZ2 as
// an operand (odzb2) and its column sums; dtgt kept by the row's lanes for E.
template <class C>
TTT_DEV void chain_rows(const Params& p, const BwdBases& bb, ChainSmem<C>& S, const char* rec, int64_t t0, int n,
                        bool commit, float tokL, float& dtok_last, float (&dtgt)[C::CPL]) {
  using R = Rec<C>;
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  const int o = r * C::FS + rl.c0;
  // dGp2 is formed before inner_loss_vjp_row's G2, from global loads whose latency then passes under
  // it (the walk loads its dGp2 from smem after G2, for its registers; here that order spilled 280
  // bytes instead of 204 and the split backward took 9.0 instead of 8.5 ms, H100, session 29).
  float z[C::CPL], dz[C::CPL], dg[C::CPL];
  load_vec(z, reinterpret_cast<const float*>(rec + R::z2) + o);
  load_vec(dg, reinterpret_cast<const float*>(rec + R::dgp2) + o);
  if (commit) {
    float gp2[C::CPL];
    load_vec(gp2, reinterpret_cast<const float*>(rec + R::gp2) + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) {
      float u = S.db2p[rl.c0 + j];
      for (int s = 0; s < C::NKS; ++s) u += S.part[s * KP * C::FS + o + j];
      dg[j] -= tokL * u;
      dtok_last -= u * gp2[j];
    }
  }
  const auto load_dg = [&](float (&dG)[C::CPL]) {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dG[j] = dg[j];
  };
  inner_loss_vjp_row<C>(p, bb, S, S.part2, t0, n, r, rl.c0, z, load_dg, true, C::NW, dz, dtgt);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(S.odzb2 + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
  row_warp_column_sums<C>(dz, S.colpart, false);
}

// C (warp): dW2 += X2ᵀ dZ2; dZ1 = dz1 + (dZ2 W2ᵀ) ⊙ gelu'(Z1) (operand over dZ̄1); db1, db2;
// dW1 += XKᵀ dZ1. The walk's dz1_products (ttt_mlp_bwd_phases.cuh) is the same into X̄2's buffer; not
// shared, because any change there moves the one-block walk's register allocation at f = 64 (session
// 29: two moved scalars took its spills from 236 to 356 bytes and its backward 11% slower).
template <class C>
TTT_DEV void chain_dz1(const Params& p, ChainSmem<C>& S, const Acc<2>& z1, Acc<2>& dz1, StateRegs<C>& dW) {
  const int hw = 16 * warp();
  xty<C, C::F / 8>(dW.w2, S.ox2, C::HS, hw, S.odzb2, C::OS, 0);
  Acc<2> t;
  t.fill(0.f);
  xyt<C, C::F / 16>(t, S.odzb2, C::OS, 0, S.w2(), C::WS, 0, hw);
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dz1.v[nt][e] += t.v[nt][e] * smath::gelu_tanh_terms(z1.v[nt][e]).d1;
  store_op(dz1, S.odzb1, C::HS, 0, hw);
  if (p.bias) {
    add_tile_column_sums(dz1, S.db1);
    add_colpart<C>(S.colpart, S.db2);
  }
  simt::syncwarp();
#pragma unroll
  for (int mt = 0; mt < C::F / 16; ++mt) xty<C, 2>(dW.w1[mt], S.ok, C::OS, 16 * mt, S.odzb1, C::HS, hw);
}

template <class C>
TTT_DEV void chain_chunk(const Params& p, const InBases& hb, const BwdBases& bb, ChainSmem<C>& S, int bh, int k,
                         const char* recs, StateRegs<C>& dW, float& dtok_last) {
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int n = chunk_rows(p, k);
  const bool commit = n == p.K;
  const float tokL = p.tok[p.K - 1];
  const Split<C> sp;
  const char* const rec = recs + k * Rec<C>::bytes;
  // top
  simt::sync();  // the previous chunk's readers are done
  if (p.overlap) simt::flag_wait(prep_done<C>(p, bh, k));  // one grid with the test paths: this one's record
  Acc<2> dgp1_t, dx2_t;
  chain_load<C>(p, hb, S, bh, k, n, rec, dgp1_t, dx2_t);
  if (k > 0) {
    prefetch_walk_state<C>(p, bh, k - 1);
    prefetch_bytes<C>(rec - Rec<C>::bytes, Rec<C>::bytes);  // chunk k − 1's record
  }
  // A
  Acc<2> z1, dz1;
  chain_hidden<C>(S, rec, commit, tokL, dW, dgp1_t, dx2_t, z1, dz1, dtok_last);
  simt::sync();
  // A2
  if (commit) x_w2_partial<C>(S.ox2, S.dw2(), C::WS, S.part);  // U2 = X2 dW2'
  x_w2_partial<C>(S.oxb2, S.w2(), C::WS, S.part2);              // dP W2
  simt::sync();
  // B
  float dtgt[C::CPL];
  chain_rows<C>(p, bb, S, rec, t0, n, commit, tokL, dtok_last, dtgt);
  simt::sync();
  // C
  chain_dz1<C>(p, S, z1, dz1, dW);
  simt::sync();
  // D: dXK's slice partials (dZ1 in odzb1, −Gp1 in ogp1)
  store_f32(dz1_w1_partial<C>(S, S.odzb1, sp, commit, tokL), S.part + sp.ks * KP * C::FS, C::FS, 0, sp.col());
  simt::sync();
  // E: dXK rows (−dtgt with the LN: the row's lanes kept it from B), dS published
  const RowLane<C> rl;
  if (rl.rg < n) {
    const int o = rl.rg * C::FS + rl.c0;
    float y[C::CPL];
    load_vec(y, reinterpret_cast<const float*>(rec + Rec<C>::dxk) + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] -= dtgt[j];
    add_slice_partials<C>(y, S.part, o);
    bb.dxk.store(t0 + rl.rg, rl.c0, y);
  }
  publish_state_grad<C>(S, dW);
}

// The chain of (b, h) = bh over every chunk, then its parameter-gradient partials (as bwd_block's:
// the records' output-LN and dtok parts added in chunk order).
template <class C>
TTT_DEV void chain_block(const Params& p, int bh, char* smem) {
  auto& S = *reinterpret_cast<ChainSmem<C>*>(smem);
  constexpr int F = C::F, HD = C::HD;
  const int b = bh / p.H, h = bh % p.H;
  load_ln_tok<C>(p, h, S);
  for (int i = tid(); i < HD; i += C::THREADS) S.db1[i] = S.db1p[i] = 0.f;
  for (int i = tid(); i < F; i += C::THREADS) S.db2[i] = S.db2p[i] = 0.f;
  for (int i = tid(); i < C::RW * F; i += C::THREADS) S.dlnw[i] = S.dlnb[i] = 0.f;
  for (int i = tid(); i < 2 * F; i += C::THREADS) S.dln_t[i] = 0.f;
  for (int i = tid(); i < KP; i += C::THREADS) S.dtok_t[i] = 0.f;
  for (int i = tid(); i < F * C::W1S; i += C::THREADS) put_op(S.odw1 + i, 0.f);
  for (int i = tid(); i < HD * C::WS; i += C::THREADS) put_op(S.odw2 + i, 0.f);
  StateRegs<C> dW;
  dW.fill(0.f);
  float dtok_last = 0;
  const InBases hb(p, b, h);
  const BwdBases bb(p, b, h);
  const char* const recs = chunk_record<C>(p, bh, 0);
  for (int k = p.NC - 1; k >= 0; --k) chain_chunk<C>(p, hb, bb, S, bh, k, recs, dW, dtok_last);
  simt::sync();
  float* out = partials(p, F, bh);
  write_partials<C>(p, S, dW, 0.f, 0, true, out);
  S.red()[tid()] = dtok_last;
  simt::sync();
  for (int i = tid(); i < 2 * F; i += C::THREADS) out[state_size(F) + i] += S.dln_t[i];
  if (tid() == 0) {
    float s = 0;
    for (int i = 0; i < C::THREADS; ++i) s += S.red()[i];
    for (int i = 0; i < p.K; ++i) out[state_size(F) + 2 * F + i] = S.dtok[i] + S.dtok_t[i] + (i == p.K - 1 ? s : 0.f);
  }
}

}  // namespace ttt::cuda_impl::tttm
