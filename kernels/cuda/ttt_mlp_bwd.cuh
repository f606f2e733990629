// kernels/cuda/ttt_mlp_bwd.cuh — the fused TTT-MLP backward: one thread block per (batch, head) walks
// the chunks in reverse (math: the step list of kernels/cpu/ttt_mlp_scan.cpp, which this follows;
// layout: ttt_mlp_common.cuh). The state entering chunk k comes from the forward's stored states
// (k a multiple of G) or from the replay kernel's snapshots (ttt_mlp_fwd.cuh replay_block, which ran
// first, all checkpoint groups side by side).
//
// The gradient of the state, dS = (dW1, db1, dW2, db2), runs through all chunks: dW1[:, hw] and
// dW2[hw, :] in the warp's registers (as the forward holds W), db1 and db2 in smem; at the end of a
// chunk it is published as operands (dS' of the chunk before). Per chunk (17 barriers):
//   top  the chunk's tiles; its state (operands of W1, W2; b1, b2); L2 prefetches of chunk k − 1's state and rows
//   R1-R5 the forward of the chunk again: Z1, X2 (R1), Z2 (R2), G2, Gp2, Mt1 (R3), G1, Gp1, Z̄1, X̄2
//        (R4), the partials of Z̄2 and X̄2 X2ᵀ (R5)
//   B0   rows: Z̄2, Mt2, dZ̄2 from the output LN (dln partials)
//   B1   dW2 += X̄2ᵀ dZ̄2; dMt2 = dZ̄2 (−Gp2)ᵀ; dGp2 = −Mt2ᵀ dZ̄2; db2 += Σ dZ̄2; U2 partials X2 dW2'
//   B2   rows: dS2 = diag(tok) dMt2, dtok; dGp2 −= τ U2, dτ −= Σ U2 ⊙ Gp2
//   B3   warp: dZ̄1 = (dZ̄2 W2ᵀ + dS2 X2) ⊙ gelu'(Z̄1), db1, dW1 += XQᵀ dZ̄1, dX2's part dS2ᵀ X̄2 −
//        τ Gp2 dW2'ᵀ, dGp1 = −Mt1ᵀ dZ̄1 − τ (XK dW1' + db1'), dτ, dlr's hidden part, dP = lr dGp1 ⊙
//        gelu'(Z1), dZ1's parts lr dGp1 ⊙ P ⊙ gelu''(Z1) + dX2's part ⊙ gelu'(Z1)
//   B4   partials of dP W2 and of dMt1 = dZ̄1 (−Gp1)ᵀ; dW2 += dPᵀ G2
//   B5   rows: dS1, dtok; dG2 = lr dGp2 + dP W2; dlr; the LN-L2 vjp → dZ2, dXV, dln partials
//   B6   warp: dW2 += X2ᵀ dZ2, dZ1 += (dZ2 W2ᵀ) ⊙ gelu'(Z1), db1, dW1 += XKᵀ dZ1; db2 += Σ dZ2
//   B7   dXQ = dout + dZ̄1 W1ᵀ + dS1 XK; dXK = dZ1 W1ᵀ − τ Gp1 dW1'ᵀ + dS1ᵀ XQ − dtgt (slice
//        partials, summed by the rows); dS published as operands
// The one-block walk at F = 64 (128 registers a thread) recomputes Z1 and Zq at R4, B3 and B6 from
// the chunk's operands rather than holding them (recompute_hidden).
// At the end the block writes its partials of dW1, db1, dW2, db2, dln_w, dln_b and dtok to the
// workspace, reduced over the batch by a separate kernel (fixed order: deterministic).
#pragma once

#include "kernels/cuda/ttt_mlp_bwd_phases.cuh"

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
  // W1, dW1', W2 and dW2' as the products read and write them (op_rows).
  TTT_DEV auto w1() { return op_rows<C>(ow1); }
  TTT_DEV auto dw1() { return op_rows<C>(odw1); }
  TTT_DEV auto w2() { return op_rows<C>(ow2); }
  TTT_DEV auto dw2() { return op_rows<C>(odw2); }
  TTT_DEV Op* ods1() { return omt1; }
  TTT_DEV Op* ods2() { return omt2; }
  TTT_DEV float* m2raw() { return s1; }
  TTT_DEV float* dmt2() { return mt2; }
  TTT_DEV float* red() { return part; }  // the final reduction (C::THREADS floats)
  static_assert(C::THREADS <= C::NKS * KP * C::FS, "red() fits in part");
};

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

// R1 .. B0 of a chunk whose tiles and state are in S: the chunk's forward again (Z1, Zq in the
// warps' registers; X2, G2, Gp2, Mt1, −Gp1, X̄2 operands; Z2, Gp2 float32) and B0's output rows (dZ̄2,
// the output LN's partials). Ends after B0's barrier. The reverse walk and the split backward's test
// paths (ttt_mlp_bwd_split.cuh) both run it. sp, rl and beta (1 with biases, else 0) come from the
// caller, formed before the chunk's loads: formed here instead, the one-block walk at f = 64 spilled
// 356 bytes instead of 236 (ptxas) and its backward took 11% longer on an H100 (session 29).
template <class C>
TTT_DEV void forward_again(const Params& p, const BwdBases& bb, BwdSmem<C>& S, int64_t t0, int n, const Split<C>& sp,
                           const RowLane<C>& rl, float beta, Acc<2>& z1, Acc<2>& zq) {
  // R1
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
  if constexpr (register_lean<C>()) {
    recompute_hidden<C>(S, z1, Hidden::z1);
    recompute_hidden<C>(S, zq, Hidden::zq);
  }
  recompute_xbar2<C>(S, z1, zq);
  simt::sync();
  // R5
  x_w2_partial<C>(S.oxb2, S.w2(), C::WS, S.part);
  if (sp.cb == 0) store_f32(hidden_abt_partial<C>(S.oxb2, S.ox2, sp), S.mpart + sp.ks * KP * SP, SP, 0, 0);
  simt::sync();
  // B0
  output_rows<C>(p, bb, S, S.part, t0, n);
  simt::sync();
}

template <class C>
TTT_DEV void bwd_chunk(const Params& p, const InBases& hb, const BwdBases& bb, BwdSmem<C>& S, int bh, int k,
                       StateRegs<C>& dW, float& dtok_row, float& dtok_last);

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
  for (int k = p.NC - 1; k >= 0; --k) {
    wait_for_replay<C>(p, bh, k);
    bwd_chunk<C>(p, hb, bb, S, bh, k, dW, dtok_row, dtok_last);
  }
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
  if (k > 0) {
    prefetch_walk_state<C>(p, bh, k - 1);
    prefetch_chunk_rows<C>(p, hb, bb, k - 1);
  }
  load_w_ops_wait();
  simt::sync();
  Acc<2> z1, zq;
  forward_again<C>(p, bb, S, t0, n, sp, rl, beta, z1, zq);
  // B1
  dzbar2_products<C>(p, S, dW, sp);
  if (commit) x_w2_partial<C>(S.ox2, S.dw2(), C::WS, S.part);  // U2 = X2 dW2'
  simt::sync();
  // B2
  ds2_rows<C>(S, S.part, n, commit, tokL, dtok_row, dtok_last);
  simt::sync();
  // B3
  if constexpr (register_lean<C>()) {
    recompute_hidden<C>(S, z1, Hidden::z1);
    recompute_hidden<C>(S, zq, Hidden::zbar1);
  }
  Acc<2> P;
  float* const dlrp = S.dlrp + warp() * KP;
  dzbar1_products<C>(p, S, z1, zq, commit, tokL, dW, P, dtok_last, [dlrp](int r, float v) { dlrp[r] = v; });
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
  if constexpr (register_lean<C>()) recompute_hidden<C>(S, z1, Hidden::z1);
  dz1_products<C>(p, S, z1, dW, P);
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
