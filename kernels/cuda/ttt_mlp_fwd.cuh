// kernels/cuda/ttt_mlp_fwd.cuh — the fused TTT-MLP forward: one thread block per (batch, head) runs
// every chunk of the sequence (math: kernels/ttt_mlp_scan.h; layout: ttt_mlp_common.cuh). The state
// (W1, W2) lives in registers, warp w holding hidden units hw = 16w..16w+15; b1, b2 in smem.
//
// Per chunk k (6 barriers):
//   top  chunk k's tiles (loaded into registers during chunk k−1) to smem; barrier; loads of chunk
//        k+1 issued; the state stored every G chunks (for the backward)
//   F1   warp: Z1 = XK W1 + b1, Zq = XQ W1 + b1 (its columns, registers), X2 = gelu(Z1) (operand);
//        last warp: S1 = XQ XKᵀ
//   F2   warps: slice partials of X2 W2
//   F3   rows: Z2 = b2 + Σ partials, G2 = LN-L2 gradient, Gp2 = lr ⊙ G2; Mt1 = diag(tok) tril(S1 + β)
//   F4   warp: G1 = (G2 W2ᵀ) ⊙ gelu'(Z1), Gp1 = lr ⊙ G1, Z̄1 = Zq + Mt1 (−Gp1), X̄2 = gelu(Z̄1), its
//        partial of X̄2 X2ᵀ; the state update W1 += τ XKᵀ(−Gp1), W2 += τ X2ᵀ(−Gp2), b1 −= τ Σ Gp1
//        (or the accumulators of a partial last chunk)
//   F5   warps: slice partials of X̄2 W2 (the old W2); rows: Mt2 = diag(tok) tril(X̄2 X2ᵀ + β)
//   F6   rows: Z̄2 = b2 + Σ partials + Mt2 (−Gp2), out = XQ + LN(Z̄2) (or Z̄2); b2 −= τ Σ Gp2 (into
//        the other buffer); warps: the new W2 operand
#pragma once

#include "kernels/cuda/ttt_mlp_workspace.cuh"

namespace ttt::cuda_impl::tttm {

template <class C>
struct FwdSmem {
  using Op = typename C::Op;
  alignas(16) float xq[2][KP * C::FS];  // double-buffered: F6 of chunk k reads what the top of k+1 writes
  alignas(16) float tgt[KP * C::FS];   // the inner loss target
  alignas(16) Op oq[KP * C::OS];
  alignas(16) Op ok[KP * C::OS];
  alignas(16) Op ow1[C::F * C::HS];   // W1 [F, HD]
  alignas(16) Op ow2[C::HD * C::OS];  // W2 [HD, F]
  alignas(16) Op ox2[KP * C::HS];     // X2
  alignas(16) Op oxb2[KP * C::HS];    // X̄2
  alignas(16) Op ogp1[KP * C::HS];    // −Gp1
  alignas(16) Op og2[KP * C::OS];     // G2
  alignas(16) Op ogp2[KP * C::OS];    // −Gp2
  alignas(16) Op omt1[KP * C::KS];    // Mt1
  alignas(16) float part[C::NKS * KP * C::FS];  // slice partials of X2 W2, then of X̄2 W2
  alignas(16) float mpart[C::NW * KP * SP];     // the warps' partials of X̄2 X2ᵀ
  alignas(16) float s1[KP * SP];                // XQ XKᵀ
  alignas(16) float mt2[KP * SP];               // Mt2
  alignas(16) float gp2[KP * C::FS];            // Gp2
  alignas(16) float b1[C::HD];
  alignas(16) float b2[2][C::F];  // double-buffered: F6 updates it while reading it
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  float tok[KP], lr[KP];
};

// The block's part of a flat state st (all of it with one block a head; h0: its first hidden unit):
// W1's columns and W2's rows of its hidden units (from the warps' registers), its part of b1; b2
// by the block holding unit 0.
template <class C>
TTT_DEV void store_state_part(const StateRegs<C>& W, const float* b1, const float* b2, int h0, float* st) {
  W.store(st, 1.f, h0);
  for (int i = tid(); i < C::HDL; i += C::THREADS) st[off_b1(C::F) + h0 + i] = b1[i];
  if (h0 == 0)
    for (int i = tid(); i < C::F; i += C::THREADS) st[off_b2(C::F) + i] = b2[i];
}


// The LN-L2 gradient G of row slice z (target tgt; without the LN: G = z − tgt), x̂ and gx with it.
template <class C>
TTT_DEV float inner_grad(const Params& p, const float* z, const float* tgt, const float* w, const float* be, float* xh,
                         float* gx, float* G) {
  if (p.ln) return tttk::ln_l2_grad<C>(z, tgt, w, be, p.eps, xh, gx, G);
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) G[j] = z[j] - tgt[j], xh[j] = 0.f, gx[j] = 0.f;
  return 1.f;
}

// F3 rows: Z2 = b2 + Σ slice partials, its LN-L2 gradient G2, Gp2 = lr ⊙ G2 (float32 and −Gp2 as an
// operand), G2 as an operand; rows >= n have Gp2 = 0. Z2 goes to z2_out when non-null (the backward
// recomputes G2 from it).
template <class C>
TTT_DEV void inner_grad_rows(const Params& p, const float* part, const float* b2, const float* tgt_tile,
                             const float* lr, const float* lnw, const float* lnb, int n, float* gp2,
                             typename C::Op* og2, typename C::Op* ogp2, float* z2_out) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  const int o = r * C::FS + rl.c0;
  float z[C::CPL], tgt[C::CPL], xh[C::CPL], gx[C::CPL], G[C::CPL], w[C::CPL], be[C::CPL];
  load_vec(z, b2 + rl.c0);
  add_slice_partials<C>(z, part, o);
  load_vec(tgt, tgt_tile + o);
  load_vec(w, lnw + rl.c0);
  load_vec(be, lnb + rl.c0);
  if (z2_out) store_vec(z2_out + o, z);
  inner_grad<C>(p, z, tgt, w, be, xh, gx, G);
  const bool live = r < n;
  const float l = live ? lr[r] : 0.f;
  float g[C::CPL];
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) g[j] = l * G[j];
  store_vec(gp2 + o, g);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) {
    put_op2(ogp2 + r * C::OS + rl.c0 + j, -g[j], -g[j + 1]);
    put_op2(og2 + r * C::OS + rl.c0 + j, G[j], G[j + 1]);
  }
}

// F1 (warp): Z1 = XK W1 + b1 and Zq = XQ W1 + b1 over the warp's hidden units, W1's fragments once.
template <class C, class W1>
TTT_DEV void first_layer(Acc<2>& z1, Acc<2>& zq, const typename C::Op* ok, const typename C::Op* oq, W1 ow1,
                         int w1s, const float* b1) {
  const int hw = 16 * warp();
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) z1.v[nt][e] = zq.v[nt][e] = b1[acc_col(hw, nt, e)];
  tttk::gemm_tile_pair<C, C::F / 16>(
      z1, zq, [&](FragA<C::MMA>& a, int k0) { load_a(a, ok, C::OS, 0, k0); },
      [&](FragA<C::MMA>& a, int k0) { load_a(a, oq, C::OS, 0, k0); },
      [&](FragB<C::MMA>& b, int k0) { load_b(b, ow1, w1s, k0, hw); });
}

// One of first_layer's products again, z = X W1 + b1 over the warp's hidden units: the same MMAs in
// the same order, so the same values. Register-lean blocks (register_lean) recompute Z1 and Zq where
// a later phase reads them (the forward's F4; the walk's R4, B3 and B6).
template <class C, class W1>
TTT_DEV void first_layer_again(Acc<2>& z, const typename C::Op* x, W1 ow1, int w1s, const float* b1) {
  const int hw = 16 * warp();
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) z.v[nt][e] = b1[acc_col(hw, nt, e)];
  gemm_tile<C, C::F / 16>(z, [&](FragA<C::MMA>& a, int k0) { load_a(a, x, C::OS, 0, k0); },
                          [&](FragB<C::MMA>& b, int k0, int n0) { load_b(b, ow1, w1s, k0, hw + n0); });
}

// gelu of a warp tile into an operand tile's columns hw.. (and gelu' into d1 when non-null).
template <class C>
TTT_DEV void gelu_tile(const Acc<2>& z, typename C::Op* out, Acc<2>* d1) {
  Acc<2> y;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const smath::GeluTerms<float> g = smath::gelu_tanh_terms(z.v[nt][e]);
      y.v[nt][e] = g.y;
      if (d1) d1->v[nt][e] = g.d1;
    }
  store_op(y, out, C::HS, 0, 16 * warp());
}

// F1 / R1: Z1, Zq (the warp's columns, registers), X2 = gelu(Z1) as an operand; the last warp
// forms S1 = XQ XKᵀ.
template <class C, class W1>
TTT_DEV void first_phase(Acc<2>& z1, Acc<2>& zq, const typename C::Op* ok, const typename C::Op* oq, W1 ow1,
                         int w1s, const float* b1, typename C::Op* ox2, float* s1) {
  first_layer<C>(z1, zq, ok, oq, ow1, w1s, b1);
  gelu_tile<C>(z1, ox2, nullptr);
  if (warp() == C::NW - 1) {
    Acc<2> s;
    s.fill(0.f);
    xyt<C, C::F / 16>(s, oq, C::OS, 0, ok, C::OS, 0, 0);
    store_f32(s, s1, SP, 0, 0);
  }
}

// −Gp1 = −lr ⊙ (G2 W2ᵀ) ⊙ gelu'(Z1) over the warp's hidden columns (W2 operand rows ws apart).
template <class C, class W2>
TTT_DEV void neg_gp1(Acc<2>& g1, const typename C::Op* og2, W2 ow2, int ws, const float* lr,
                     const Acc<2>& z1) {
  g1.fill(0.f);
  xyt<C, C::F / 16>(g1, og2, C::OS, 0, ow2, ws, 0, 16 * warp());
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) g1.v[nt][e] *= -lr[acc_row(0, e)] * smath::gelu_tanh_terms(z1.v[nt][e]).d1;
}

// Row r's slice (columns c0..) of Z̄2 = b2 + Σ slice partials − Mt2 Gp2 (Mt2, Gp2 float32 tiles).
template <class C>
TTT_DEV void zbar2_row(const float* b2, const float* part, const float* mt2, const float* gp2, int r, int c0,
                       float (&z)[C::CPL]) {
  load_vec(z, b2 + c0);
  add_slice_partials<C>(z, part, r * C::FS + c0);
  for (int i = 0; i < KP; ++i) {
    const float m = mt2[r * SP + i];
    float g[C::CPL];
    load_vec(g, gp2 + i * C::FS + c0);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) z[j] -= m * g[j];
  }
}

// F4's state update over the chunk's rows: P1 = XKᵀ (−Gp1)[:, hw] and P2 = X2[:, hw]ᵀ (−Gp2) (the
// warp's slice, StateRegs layout), added as W += τ P (commit) or stored as the accumulators −P of a
// partial last chunk (acc: the flat accumulator state of the head; h0: the block's first hidden unit).
// One 16 × 16 tile of P at a time: a whole StateRegs of products beside the state made the one-block
// kernels at F = 64 (128 registers a thread) spill. Each tile is the same MMAs as a whole-P product,
// so the results are unchanged.
template <class C>
TTT_DEV void update_state(StateRegs<C>& W, const typename C::Op* ok, const typename C::Op* ogp1,
                          const typename C::Op* ox2, const typename C::Op* ogp2, float tokL, float* acc, int h0) {
  const int hw = 16 * warp();
#pragma unroll
  for (int mt = 0; mt < C::F / 16; ++mt) {
    Acc<2> t;
    t.fill(0.f);
    xty<C, 2>(t, ok, C::OS, 16 * mt, ogp1, C::HS, hw);
    if (acc) {
      store_f32(t, acc, C::HD, 16 * mt, h0 + hw, -1.f);
      continue;
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) W.w1[mt].v[nt][e] += tokL * t.v[nt][e];
  }
#pragma unroll
  for (int ct = 0; ct < C::F / 16; ++ct) {
    Acc<2> t;
    t.fill(0.f);
    xty<C, 2>(t, ox2, C::HS, hw, ogp2, C::OS, 16 * ct);
    if (acc) {
      store_f32(t, acc + off_w2(C::F), C::F, h0 + hw, 16 * ct, -1.f);
      continue;
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) W.w2.v[2 * ct + nt][e] += tokL * t.v[nt][e];
  }
}

// F4's b1 step over the warp's columns (h0: the block's first hidden unit in a cluster): b1 −= τ Σ Gp1 (commit), or the accumulator −Σ Gp1 of a
// partial last chunk (g1 holds −Gp1).
template <class C>
TTT_DEV void b1_step(const Params& p, const Acc<2>& g1, bool commit, float tokL, int h0, float* b1, float* acc_b1) {
  float s[2][2];
  column_sums(g1, s);
  if (lane() >= 4) return;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int c = acc_col(16 * warp(), nt, hh);
      if (commit) {
        if (p.bias) b1[c] += tokL * s[nt][hh];
      } else {
        acc_b1[h0 + c] = p.bias ? -s[nt][hh] : 0.f;
      }
    }
}

// b2 −= τ Σ Gp2 into the other buffer (commit), else copied; the accumulator Σ Gp2 when acc_b2.
template <class C>
TTT_DEV void b2_step(const Params& p, const float* gp2, const float* b2, bool commit, float tokL, float* b2_next,
                     float* acc_b2) {
  for (int c = tid(); c < C::F; c += C::THREADS) {
    float s = 0;
    for (int r = 0; r < KP; ++r) s += gp2[r * C::FS + c];
    b2_next[c] = b2[c] - (commit && p.bias ? tokL * s : 0.f);
    if (acc_b2) acc_b2[c] = p.bias ? s : 0.f;
  }
}

// After the last chunk: the final state (the block's part), and zero accumulators when the last
// chunk committed (the block's share: rank of nblocks).
template <class C>
TTT_DEV void finish_forward(const Params& p, int bh, const StateRegs<C>& W, const float* b1, const float* b2,
                            bool committed_last, int rank, int nblocks) {
  const int64_t SS = state_size(C::F);
  if (p.final_state) store_state_part<C>(W, b1, b2, rank * C::HDL, p.final_state + static_cast<int64_t>(bh) * SS);
  if (committed_last && p.acc)
    for (int64_t i = tid() + rank * int64_t{C::THREADS}; i < SS; i += int64_t{C::THREADS} * nblocks)
      p.acc[static_cast<int64_t>(bh) * SS + i] = 0.f;
}

// What fwd_range runs: the forward (chunks 0 .. NC−1 from the parameters, outputs, the state stored
// every G chunks, final state, accumulators) or the backward's replay of checkpoint group g (the
// state chain of chunks k0 .. k1−2 from stored state g, k1 = min(k0 + G, NC); no outputs; the state
// entering each chunk k0+1 .. k1−1 stored as its snapshot).
struct FwdMode {
  bool replay = false;
  int group = 0;
};

template <class C>
TTT_DEV void fwd_range(const Params& p, int bh, char* smem, FwdMode mode) {
  auto& S = *reinterpret_cast<FwdSmem<C>*>(smem);
  constexpr int F = C::F, HD = C::HD;
  const int b = bh / p.H, h = bh % p.H, hw = 16 * warp();
  const float tokL = p.tok[p.K - 1], beta = p.bias ? 1.f : 0.f;
  const int64_t SS = state_size(F);
  const int k0 = mode.replay ? mode.group * p.G : 0;
  const int k1 = mode.replay ? ((mode.group + 1) * p.G < p.NC ? (mode.group + 1) * p.G : p.NC) : p.NC;
  load_ln_tok<C>(p, h, S);
  StateRegs<C> W;
  if (mode.replay) {
    const float* st = stored_state(p, F, bh, mode.group);
    W.load(st);
    for (int i = tid(); i < HD; i += C::THREADS) S.b1[i] = st[off_b1(F) + i];
    for (int i = tid(); i < F; i += C::THREADS) S.b2[0][i] = st[off_b2(F) + i];
  } else {
    for (int i = tid(); i < HD; i += C::THREADS) S.b1[i] = p.bias ? p.b1[h * HD + i] : 0.f;
    for (int i = tid(); i < F; i += C::THREADS) S.b2[0][i] = p.bias ? p.b2[h * F + i] : 0.f;
    W.load(p.w1 + static_cast<int64_t>(h) * F * HD, p.w2 + static_cast<int64_t>(h) * HD * F, 0);
  }
  W.store_w1_op(S.ow1, C::HS);
  W.store_w2_op(S.ow2);
  const InBases hb(p, b, h);
  const IORows out(p.out, p.bio, b, h);  // unused by the replay
  ChunkRegs<C> next;
  if (k0 < k1) next.load(p, hb, k0);
  const RowLane<C> rl;
  bool committed_last = true;
  int bb = 0;  // the b2 buffer holding the state's b2

  for (int k = k0; k < k1; ++k) {
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = chunk_rows(p, k);
    const bool commit = n == p.K, accumulate = !mode.replay && !commit && p.acc && k == p.NC - 1;
    const int qb = k & 1;
    // top
    next.q.store(S.xq[qb], S.oq);
    next.k.store(nullptr, S.ok);
    store_target(next.k, next.v, p.ln, S.tgt);
    if (tid() < KP) S.lr[tid()] = next.lr;
    simt::sync();
    if (k + 1 < k1) next.load(p, hb, k + 1);
    if (!mode.replay && k % p.G == 0) store_state_part<C>(W, S.b1, S.b2[bb], 0, stored_state(p, F, bh, k / p.G));
    if (mode.replay && k > k0) store_snapshot_part<C>(W, S.b1, S.b2[bb], 0, replay_snapshot<C>(p, bh, k));
    if (mode.replay && k + 1 == k1) break;  // the group's last chunk is the reverse walk's
    // F1
    Acc<2> z1, zq;
    first_phase<C>(z1, zq, S.ok, S.oq, S.ow1, C::HS, S.b1, S.ox2, S.s1);
    simt::sync();
    // F2
    x_w2_partial<C>(S.ox2, S.ow2, C::OS, S.part);
    simt::sync();
    // F3
    inner_grad_rows<C>(p, S.part, S.b2[bb], S.tgt, S.lr, S.lnw, S.lnb, n, S.gp2, S.og2, S.ogp2, nullptr);
    if (rl.rg < KP) causal_row<C>(S.s1, 1, S.tok, rl.rg, n, beta, S.omt1, nullptr, nullptr);
    simt::sync();
    // F4: G1 = (G2 W2ᵀ) ⊙ gelu'(Z1), Gp1 = lr ⊙ G1 (−Gp1 as the operand)
    if (register_lean<C>() && !mode.replay) {  // before b1's step; the replay (no Zq) spills less holding Z1
      first_layer_again<C>(z1, S.ok, S.ow1, C::HS, S.b1);
      first_layer_again<C>(zq, S.oq, S.ow1, C::HS, S.b1);
    }
    {
      Acc<2> g1;
      neg_gp1<C>(g1, S.og2, S.ow2, C::OS, S.lr, z1);
      store_op(g1, S.ogp1, C::HS, 0, hw);
      float* const acc_b1 = accumulate ? p.acc + static_cast<int64_t>(bh) * SS + off_b1(F) : nullptr;
      if (commit || accumulate) b1_step<C>(p, g1, commit, tokL, 0, S.b1, acc_b1);
    }
    simt::syncwarp();
    // Z̄1 = Zq + Mt1 (−Gp1), X̄2 = gelu(Z̄1), and the warp's partial of X̄2 X2ᵀ
    if (!mode.replay) {
      xy<C, 1>(zq, S.omt1, C::KS, 0, S.ogp1, C::HS, 0, hw);
      gelu_tile<C>(zq, S.oxb2, nullptr);
      simt::syncwarp();
      Acc<2> m;
      m.fill(0.f);
      xyt<C, 1>(m, S.oxb2, C::HS, hw, S.ox2, C::HS, hw, 0);
      store_f32(m, S.mpart + warp() * KP * SP, SP, 0, 0);
    }
    if (commit || accumulate) {  // the accumulators of a partial last chunk: XKᵀ Gp1, X2ᵀ Gp2 = −P
      update_state<C>(W, S.ok, S.ogp1, S.ox2, S.ogp2, tokL, commit ? nullptr : p.acc + static_cast<int64_t>(bh) * SS, 0);
      if (commit) W.store_w1_op(S.ow1, C::HS);  // only this warp reads its columns of W1
    }
    committed_last = commit;
    simt::sync();
    if (mode.replay) {  // the state update's b2 (the output path is the forward's only)
      if (commit) W.store_w2_op(S.ow2);
      b2_step<C>(p, S.gp2, S.b2[bb], commit, tokL, S.b2[bb ^ 1], nullptr);
      bb ^= 1;
      continue;
    }
    // F5
    x_w2_partial<C>(S.oxb2, S.ow2, C::OS, S.part);
    if (rl.rg < KP) causal_row<C>(S.mpart, C::NW, S.tok, rl.rg, n, beta, nullptr, S.mt2, nullptr);
    simt::sync();
    // F6
    if (commit) W.store_w2_op(S.ow2);
    b2_step<C>(p, S.gp2, S.b2[bb], commit, tokL, S.b2[bb ^ 1],
               accumulate ? p.acc + static_cast<int64_t>(bh) * SS + off_b2(F) : nullptr);
    if (rl.rg < KP) {
      const int r = rl.rg, o = r * C::FS + rl.c0;
      float z[C::CPL], y[C::CPL];
      zbar2_row<C>(S.b2[bb], S.part, S.mt2, S.gp2, r, rl.c0, z);
      tttk::ln_residual_row<C>(p.ln, p.eps, z, S.xq[qb] + o, S.lnw + rl.c0, S.lnb + rl.c0, y);
      if (r < n) out.store(t0 + r, rl.c0, y);
    }
    bb ^= 1;
  }
  if (mode.replay) return;
  simt::sync();
  finish_forward<C>(p, bh, W, S.b1, S.b2[bb], committed_last, 0, 1);
}

template <class C>
TTT_DEV void fwd_block(const Params& p, int bh, char* smem) {
  fwd_range<C>(p, bh, smem, FwdMode{});
}

// The backward's replay of checkpoint group g of (batch, head) bh (block index bh · NG + g).
template <class C>
TTT_DEV void replay_block(const Params& p, int blk, char* smem) {
  fwd_range<C>(p, blk / p.NG, smem, FwdMode{true, blk % p.NG});
}

}  // namespace ttt::cuda_impl::tttm
