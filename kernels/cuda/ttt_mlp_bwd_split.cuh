// kernels/cuda/ttt_mlp_bwd_split.cuh — the split TTT-MLP backward (TTTMLPScanShape::split_walk), part
// one: every chunk's test path at once. The reverse walk (ttt_mlp_bwd.cuh) runs, per chunk, the chunk's
// forward again, the backward of its test path (everything the gradient dS' of the state leaving the
// chunk does not reach) and the chain dS' → dS; only the chain is sequential. Here one block per
// (b, h, chunk) runs the first two from the chunk's state (stored state or replay snapshot) and writes
// what the chain needs into a record per chunk; ttt_mlp_bwd_chain.cuh walks the chunks with the
// records. The CPU reference computes in the same split (kernels/cpu/ttt_mlp_scan.cpp:
// test_path_backward, chain_step, token_dxk).
//
// Per chunk (the step list of ttt_mlp_bwd.cuh, dS' = 0): R1 .. B0 (forward_again), then
//   B1'  dMt2 = dZ̄2 (−Gp2)ᵀ; dGp2 = −Mt2ᵀ dZ̄2
//   B2'  rows: dS2 = diag(tok) dMt2, dtok
//   B3'  warp: dZ̄1 = (dZ̄2 W2ᵀ + dS2 X2) ⊙ gelu'(Z̄1) and its column sums; dX2's part dS2ᵀ X̄2;
//        dGp1's part −Mt1ᵀ dZ̄1
//   B4'  partials of dMt1 = dZ̄1 (−Gp1)ᵀ
//   B5'  rows: dS1 = diag(tok) dMt1, dtok
//   B7'  dXQ = dout (LN residual) + dZ̄1 W1ᵀ + dS1 XK (written); dXK's part dS1ᵀ XQ
// and the record: G2, −Gp2, dZ̄2, X̄2, dZ̄1 as operands; Z2, Gp2, dGp2's part, dXK's part as float32
// tiles; dGp1's and dX2's parts in the warps' accumulator fragments; the column sums of dZ̄1, dZ̄2;
// the chunk's parts of dln_w, dln_b (output LN) and dtok. (Records that also held X2, −Gp1 and the
// chain's elementwise factors gelu'(Z1), P ⊙ gelu'(Z1), P ⊙ gelu''(Z1), so that the chain computes
// no Z1, P or tanh, made the chain slower on an H100: 10.5 against 9.7 ms at 2 × 8192, Nsight
// Compute; its three more fragment loads a chunk wait where the recomputation did not.)
#pragma once

#include "kernels/cuda/ttt_mlp_bwd.cuh"

namespace ttt::cuda_impl::tttm {

// A chunk's record: byte offsets of its parts (each a multiple of 16), `bytes` in all
// (TTTMLPScanShape::split_record_bytes computes the same on the host).
template <class C>
struct Rec {
  using Op = typename C::Op;
  static constexpr int64_t OPF = int64_t{KP} * C::OS * sizeof(Op);  // a [16, F] operand tile
  static constexpr int64_t OPH = int64_t{KP} * C::HS * sizeof(Op);  // a [16, HD] operand tile
  static constexpr int64_t T32 = int64_t{KP} * C::FS * 4;           // a [16, F] float32 tile
  static constexpr int64_t FRAG = int64_t{C::NW} * 32 * 8 * 4;      // a [16, HD] tile as the warps' Acc<2>
  static constexpr int64_t g2 = 0, ngp2 = g2 + OPF, dzb2 = ngp2 + OPF, xb2 = dzb2 + OPF, dzb1 = xb2 + OPH;
  static constexpr int64_t z2 = dzb1 + OPH, gp2 = z2 + T32, dgp2 = gp2 + T32, dxk = dgp2 + T32;
  static constexpr int64_t dgp1 = dxk + T32, dx2 = dgp1 + FRAG, cs1 = dx2 + FRAG, cs2 = cs1 + 4 * C::HD;
  static constexpr int64_t dln = cs2 + 4 * C::F, dtok = dln + 8 * C::F;
  static constexpr int64_t bytes = (dtok + 4 * KP + 15) / 16 * 16;
  static_assert(OPF % 16 == 0 && OPH % 16 == 0 && T32 % 16 == 0 && (4 * C::F) % 16 == 0, "16-byte parts");
};

// Where the records start in the backward's workspace: after the partials, the replay snapshots and
// (with groups > 1) the overlapped backward's flags; one record per (b, h) and chunk.
template <class C>
TTT_HD char* records_base(const Params& p) {
  char* flags = reinterpret_cast<char*>(replay_flags<C>(p));
  return flags + (p.G > 1 ? replay_flag_count(p) * sizeof(unsigned) : 0);
}
template <class C>
TTT_HD char* chunk_record(const Params& p, int bh, int k) {
  return records_base<C>(p) + (static_cast<int64_t>(bh) * p.NC + k) * Rec<C>::bytes;
}

// The test paths' flags, one per (b, h) and chunk, after the records (TTTMLPScanBackward::
// workspace_bytes), zeroed before the grid starts.
template <class C>
TTT_HD unsigned* prep_flags(const Params& p) {
  return reinterpret_cast<unsigned*>(records_base<C>(p) + static_cast<int64_t>(p.B) * p.H * p.NC * Rec<C>::bytes);
}
TTT_HD int64_t prep_flag_count(const Params& p) { return static_cast<int64_t>(p.B) * p.H * p.NC; }
template <class C>
TTT_HD unsigned* prep_done(const Params& p, int bh, int k) {
  return prep_flags<C>(p) + static_cast<int64_t>(bh) * p.NC + k;
}

// A warp's [16, 16] accumulator tile to / from a record's fragment part: lane l of warp w holds
// floats (w · 32 + l) · 8 .. + 8 (two 16-byte vectors, the warp's 1 KB contiguous).
TTT_DEV void store_frag(const Acc<2>& a, char* part) {
  float* d = reinterpret_cast<float*>(part) + (warp() * 32 + lane()) * 8;
  reinterpret_cast<tttk::Vec4*>(d)[0] = tttk::Vec4{a.v[0][0], a.v[0][1], a.v[0][2], a.v[0][3]};
  reinterpret_cast<tttk::Vec4*>(d)[1] = tttk::Vec4{a.v[1][0], a.v[1][1], a.v[1][2], a.v[1][3]};
}
TTT_DEV void load_frag(Acc<2>& a, const char* part) {
  const float* s = reinterpret_cast<const float*>(part) + (warp() * 32 + lane()) * 8;
  const tttk::Vec4 x = reinterpret_cast<const tttk::Vec4*>(s)[0], y = reinterpret_cast<const tttk::Vec4*>(s)[1];
  a.v[0][0] = x.x, a.v[0][1] = x.y, a.v[0][2] = x.z, a.v[0][3] = x.w;
  a.v[1][0] = y.x, a.v[1][1] = y.y, a.v[1][2] = y.z, a.v[1][3] = y.w;
}

// `bytes` (a multiple of 16) from src to dst, 16 bytes a thread and step, by the block.
template <class C>
TTT_DEV void copy16(void* dst, const void* src, int64_t bytes) {
  for (int64_t i = int64_t{tid()} * 16; i < bytes; i += int64_t{C::THREADS} * 16)
    *reinterpret_cast<tttk::U4*>(static_cast<char*>(dst) + i) =
        *reinterpret_cast<const tttk::U4*>(static_cast<const char*>(src) + i);
}

// B3' (warp, its hidden columns): dZ̄1 (operand, column sums to rec.cs1), dX2's part dS2ᵀ X̄2 and
// dGp1's part −Mt1ᵀ dZ̄1 (to the record's fragments). zq holds Z̄1. The first lines are the walk's
// dzbar1_products' (kept apart for the walk's register allocation: ttt_mlp_bwd_chain.cuh, chain_dz1).
template <class C>
TTT_DEV void test_path_hidden(const Params& p, BwdSmem<C>& S, const Acc<2>& zq, char* rec) {
  const int hw = 16 * warp();
  Acc<2> d;  // dX̄2, then dZ̄1
  d.fill(0.f);
  xyt<C, C::F / 16>(d, S.odzb2, C::OS, 0, S.w2(), C::WS, 0, hw);
  xy<C, 1>(d, S.ods2(), C::KS, 0, S.ox2, C::HS, 0, hw);
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) d.v[nt][e] *= smath::gelu_tanh_terms(zq.v[nt][e]).d1;
  store_op(d, S.odzb1, C::HS, 0, hw);
  float s[2][2];
  column_sums(d, s);
  if (lane() < 4)
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
        reinterpret_cast<float*>(rec + Rec<C>::cs1)[acc_col(hw, nt, hh)] = p.bias ? s[nt][hh] : 0.f;
  Acc<2> t;
  t.fill(0.f);
  xty<C, 2>(t, S.ods2(), C::KS, 0, S.oxb2, C::HS, hw);
  store_frag(t, rec + Rec<C>::dx2);
  simt::syncwarp();
  t.fill(0.f);
  xty<C, 2>(t, S.omt1, C::KS, 0, S.odzb1, C::HS, hw);
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) t.v[nt][e] = -t.v[nt][e];
  store_frag(t, rec + Rec<C>::dgp1);
}

// The record's tiles from smem, the column sums of dZ̄2 (colpart), the output LN's partials summed
// over the row warps, and the chunk's dtok (each row's dtok_row summed over its lanes).
template <class C>
TTT_DEV void write_record_tiles(const Params& p, BwdSmem<C>& S, float dtok_row, char* rec) {
  using R = Rec<C>;
  copy16<C>(rec + R::g2, S.og2, R::OPF);
  copy16<C>(rec + R::ngp2, S.ogp2, R::OPF);
  copy16<C>(rec + R::dzb2, S.odzb2, R::OPF);
  copy16<C>(rec + R::xb2, S.oxb2, R::OPH);
  copy16<C>(rec + R::dzb1, S.odzb1, R::OPH);
  copy16<C>(rec + R::z2, S.z2, R::T32);
  copy16<C>(rec + R::gp2, S.gp2, R::T32);
  copy16<C>(rec + R::dgp2, S.dgp2, R::T32);
  float* const cs2 = reinterpret_cast<float*>(rec + R::cs2);
  float* const dln = reinterpret_cast<float*>(rec + R::dln);
  for (int i = tid(); i < C::F; i += C::THREADS) {
    float c = 0, sw = 0, sb = 0;
    for (int w = 0; w < C::RW; ++w) c += S.colpart[w * C::F + i], sw += S.dlnw[w * C::F + i], sb += S.dlnb[w * C::F + i];
    cs2[i] = p.bias ? c : 0.f;
    dln[i] = sw;
    dln[C::F + i] = sb;
  }
  const RowLane<C> rl;
  if (rl.rg < KP) {
    const float s = tttk::row_sum<C>(dtok_row);
    if (rl.first()) reinterpret_cast<float*>(rec + R::dtok)[rl.rg] = s;
  }
}

// The test path of chunk unit % NC of (b, h) = unit / NC (one block).
template <class C>
TTT_DEV void prep_block(const Params& p, int unit, char* smem) {
  auto& S = *reinterpret_cast<BwdSmem<C>*>(smem);
  const int bh = unit / p.NC, k = unit % p.NC;
  const int b = bh / p.H, h = bh % p.H;
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int n = chunk_rows(p, k);
  const Split<C> sp;
  const RowLane<C> rl;
  char* const rec = chunk_record<C>(p, bh, k);
  load_ln_tok<C>(p, h, S);
  for (int i = tid(); i < C::RW * C::F; i += C::THREADS) S.dlnw[i] = S.dlnb[i] = 0.f;
  const InBases hb(p, b, h);
  const BwdBases bb(p, b, h);
  load_chunk<C>(p, hb, S, bh, k, n);
  load_w_ops_wait();
  simt::sync();
  Acc<2> z1, zq;
  forward_again<C>(p, bb, S, t0, n, sp, rl, p.bias ? 1.f : 0.f, z1, zq);
  // B1'
  dmt2_dgp2_products<C>(S, sp);
  simt::sync();
  // B2'
  float dtok_row = 0, unused = 0;
  ds2_rows<C>(S, nullptr, n, false, 0.f, dtok_row, unused);
  simt::sync();
  // B3'
  if constexpr (register_lean<C>()) recompute_hidden<C>(S, zq, Hidden::zbar1);
  test_path_hidden<C>(p, S, zq, rec);
  simt::sync();
  // B4'
  if (sp.cb == 0) store_f32(hidden_abt_partial<C>(S.odzb1, S.ogp1, sp), S.mpart + sp.ks * KP * SP, SP, 0, 0);
  simt::sync();
  // B5'
  if (rl.rg < KP) ds1_row<C>(S, rl.rg, n, dtok_row);
  simt::sync();
  // B7': dXQ's slice partials; dXK's part dS1ᵀ XQ (one slice a column block) to the record
  store_f32(dxq_partial<C>(S, sp, sp.ks == 0), S.part + sp.ks * KP * C::FS, C::FS, 0, sp.col());
  if (sp.ks == 0) {
    Acc<2> a;
    a.fill(0.f);
    xty<C, 2>(a, S.ods1(), C::KS, 0, S.oq, C::OS, sp.col());
    store_f32(a, reinterpret_cast<float*>(rec + Rec<C>::dxk), C::FS, 0, sp.col());
  }
  simt::sync();
  store_dxq_rows<C>(p, bb, S.part, t0, n);
  write_record_tiles<C>(p, S, dtok_row, rec);
}

}  // namespace ttt::cuda_impl::tttm
