// kernels/cuda/ttt_linear_chain.cuh — the chunk-parallel TTT-Linear backward (version 6,
// TTTLinearScanPlan): the serial walk that carries only the state gradient, and the reduction of
// the parameter-gradient partials both backward forms share.
//
// With W_k the state entering chunk k and Γ_k = ∂L/∂W_{k+1} the gradient of the state leaving it
// (Γ_{NC−1} = 0), the reverse recurrence of kernels/cpu/ttt_linear_scan.cpp is
//   Γ_{k−1} = Γ_k + D_k + XK_kᵀ vjp_k(−tok_L (XK_k Γ_k + 1 γ_kᵀ))        (and γ for b likewise)
// where D_k = XQᵀ dZ̄ + XKᵀ vjp_k(−Mtᵀ dZ̄) is what the chunk adds when nothing arrives from later
// chunks, and vjp_k (the LN-L2 gradient's vector-Jacobian product, times lr) is linear in its
// argument. D_k and vjp_k's row statistics need all of the chunk's forward and output-LN
// backward, but not Γ_k: the direct pass (bwd_block<Mode::direct>, B·H·R blocks side by side)
// writes them per chunk. The walk below then does per chunk only two small products and one row
// phase (3 barriers, against the 8 of the full chunk), writing Γ_k per chunk; and the tokens pass
// (bwd_block<Mode::tokens>, side by side again) computes every token gradient of every chunk from
// W_k and Γ_k. Order: replay, then direct, chain, tokens (one overlapped grid, bwd_overlap_block,
// or three kernels), then reduce (ttt_linear_scan.cu).
#pragma once

#include "kernels/cuda/ttt_linear_bwd.cuh"

namespace ttt::cuda_impl::tttk {

// Chunk inputs come by cp.async NB − 1 chunks ahead (NB buffers): the walk does little per chunk,
// so one chunk of lead does not cover the memory latency of the direct pass's outputs.
template <class C>
constexpr int chain_buffers() {
  return C::F <= 64 ? 3 : 2;  // D_k is F² floats a buffer
}

template <class C>
struct ChainSmem {
  using Op = typename C::Op;
  static constexpr int NB = chain_buffers<C>();
  alignas(16) float xk[NB][KP * C::FS];              // XK (float32 storage)
  alignas(16) uint16_t stage[NB][stage_elems<C>()];  // XK (bf16 storage): row stride F + 8 = OS, the operand itself
  alignas(16) float rows[NB][3][KP * C::FS];         // x̂, gx, G of the chunk's inner LN
  alignas(16) float dk[NB][C::F * C::F];             // D_k (fragment order: write_chain_inputs)
  alignas(16) float dbk[NB][C::F];                   // the bias part of D_k
  alignas(16) float sig[NB][KP];
  alignas(16) float lr[NB][KP];
  alignas(16) Op ok[KP * C::OS];   // XK's operand copy (float32 storage with bf16 products)
  alignas(16) float dgp[KP * C::FS];  // −tok_L (XK Γ + γ)
  alignas(16) float dz[KP * C::FS];   // its vjp
  alignas(16) Op odz[KP * C::OS];
  alignas(16) Op odw[C::F * C::OS];   // Γ as operand
  alignas(16) float db[C::F];         // γ
  alignas(16) float lnw[C::F];
  alignas(16) float lnb[C::F];
  alignas(16) float tok[KP];
};

// Chunk k's inputs into buffer buf by cp.async: XK, lr, and the direct pass's D_k, D_b, x̂, gx, G, σ
// (each thread copies its own fragments of D_k).
// Overlapped (p.overlap): the first of a range's chunks the walk asks for is its last; before
// that, wait until the direct pass has written the range.
template <class C>
TTT_DEV void chain_prefetch(const Params& p, ChainSmem<C>& S, const typename C::IO* xk, const float* lr, int bh,
                            int k, int buf) {
  constexpr int F = C::F;
  if (p.overlap && (k % p.Q == p.Q - 1 || k == p.NC - 1)) simt::flag_wait(direct_done(p, F, bh, k / p.Q));
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  const int rows = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
  tile_in_async<C>(S.xk[buf], S.stage[buf], xk, p.xk.st, t0, rows);
  if (tid() < KP) {
    if (tid() < rows) simt::cp_async4(&S.lr[buf][tid()], lr + (t0 + tid()) * p.lr.st);
    else S.lr[buf][tid()] = 0.f;
  }
  const float* dsrc = chain_in<C>(p, bh, k);
#pragma unroll
  for (int i = 0; i < F / 8; ++i) {
    const int e = 4 * (i * C::THREADS + tid());
    simt::cp_async16(S.dk[buf] + e, dsrc + e);
  }
  const float* ci = dsrc + F * F;
  for (int i = tid(); i < F / 4; i += C::THREADS) simt::cp_async16(S.dbk[buf] + 4 * i, ci + 4 * i);
  const float* rsrc = ci + F;
  for (int i = tid(); i < 3 * KP * F / 4; i += C::THREADS) {
    const int a = i / (KP * F / 4), e = 4 * (i % (KP * F / 4)), r = e / F, c = e % F;
    simt::cp_async16(S.rows[buf][a] + r * C::FS + c, rsrc + a * KP * F + e);
  }
  if (tid() < KP / 4) simt::cp_async16(S.sig[buf] + 4 * tid(), rsrc + 3 * KP * F + 4 * tid());
}

// Row phase: dZ1 of the chunk for the gradient −tok_L (XK Γ + γ) in S.dgp (one row per row group).
template <class C>
TTT_DEV void chain_rows(const Params& p, ChainSmem<C>& S, int buf, int n) {
  const RowLane<C> rl;
  const int r = rl.rg;
  if (r >= KP) return;
  const int o = r * C::FS + rl.c0;
  const float l = r < n ? S.lr[buf][r] : 0.f;
  float dG[C::CPL], xh[C::CPL], gx[C::CPL], G[C::CPL], dz[C::CPL];
  load_vec(dG, S.dgp + o);
  load_vec(xh, S.rows[buf][0] + o);
  load_vec(gx, S.rows[buf][1] + o);
  load_vec(G, S.rows[buf][2] + o);
  float sums[4] = {0.f, 0.f, 0.f, 0.f};
  vjp_row_partials<C>(dG, xh, gx, G, l, sums);
  row_sums<C>(sums);
  if (p.ln) {
    float w[C::CPL], dgx[C::CPL];
    load_vec(w, S.lnw + rl.c0);
    ln_l2_vjp<C>(dG, xh, gx, w, S.sig[buf][r], sums, dgx, dz);
  } else {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) dz[j] = dG[j];
  }
  store_vec(S.dz + o, dz);
#pragma unroll
  for (int j = 0; j < C::CPL; j += 2) put_op2(S.odz + r * C::OS + rl.c0 + j, dz[j], dz[j + 1]);
}

// Γ (operand rows) and γ as chunk k's state-gradient snapshot, for the tokens pass.
template <class C>
TTT_DEV void write_dsnap(const Params& p, const ChainSmem<C>& S, int bh, int k) {
  using Op = typename C::Op;
  constexpr int F = C::F, row_chunks = F * static_cast<int>(sizeof(Op)) / 16;
  char* dst = dsnap<C>(p, bh, k);
  for (int i = tid(); i < F * row_chunks; i += C::THREADS) {
    const int r = i / row_chunks, q = i % row_chunks;
    *reinterpret_cast<U4*>(dst + static_cast<int64_t>(r) * F * sizeof(Op) + 16 * q) =
        *reinterpret_cast<const U4*>(reinterpret_cast<const char*>(S.odw + r * C::OS) + 16 * q);
  }
  float* b = reinterpret_cast<float*>(dst + F * F * sizeof(Op));
  for (int i = tid(); i < F; i += C::THREADS) b[i] = S.db[i];
}

// The serial walk of one (b, h): Γ and γ through every chunk in reverse; Γ_k of every chunk to the
// workspace (dsnap), Γ_{−1} and γ_{−1} (the gradients of W0, b0) to the (b, h)'s partial slot.
template <class C>
TTT_DEV void chain_block(const Params& p, int bh, char* smem) {
  auto& S = *reinterpret_cast<ChainSmem<C>*>(smem);
  using Op = typename C::Op;
  constexpr int F = C::F;
  const int b = bh / p.H, h = bh % p.H, cw = 16 * warp();
  const float tokL = p.tok[p.K - 1];
  using IO = typename C::IO;
  const IO* xk = p.xk.base<IO>(b, h);
  const float* lr = p.lr.base(b, h);
  load_head_constants<C>(p, h, S, nullptr);
  for (int i = tid(); i < F; i += C::THREADS) S.db[i] = 0.f;
  for (int i = tid(); i < F * C::OS; i += C::THREADS) put_op(S.odw + i, 0.f);
  Acc<F / 8> dW;
  dW.fill(0.f);
  constexpr int NB = ChainSmem<C>::NB;
  // Chunk k uses buffer k % NB; chunks NC−1 .. NC−NB+1 are requested before the walk (one commit
  // group each, empty past chunk 0, so that the wait below always leaves NB − 2 groups in flight).
  for (int j = 1; j < NB; ++j) {
    if (p.NC - j >= 0) chain_prefetch<C>(p, S, xk, lr, bh, p.NC - j, (p.NC - j) % NB);
    simt::cp_async_commit();
  }
  PhaseClock clk(p, bh);  // probe slots 22 top, 23..25 the phases, 26 the block's total
  for (int k = p.NC - 1; k >= 0; --k) {
    const int buf = k % NB;
    const int64_t t0 = static_cast<int64_t>(k) * p.K;
    const int n = static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
    simt::cp_async_wait_group<NB - 2>();
    simt::sync();  // chunk k's inputs have landed; Γ, γ of the chunk after are complete
    clk.mark(22);
    const Op* opk;  // XK as operand
    if constexpr (C::BIO) {
      opk = S.stage[buf];
    } else if constexpr (C::MMA) {
      for (int i = tid(); i < KP * F / 2; i += C::THREADS) {
        const int r = (2 * i) / F, c = (2 * i) % F;
        put_op2(S.ok + r * C::OS + c, S.xk[buf][r * C::FS + c], S.xk[buf][r * C::FS + c + 1]);
      }
      simt::sync();
      opk = S.ok;
    } else {
      opk = S.xk[buf];
    }
    // 1: −tok_L (XK Γ + γ), the warp's columns
    Acc<2> u;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) u.v[nt][e] = p.bias ? S.db[acc_col(cw, nt, e)] : 0.f;
    gemm_tile<C, F / 16>(u, [&](FragA<C::MMA>& a, int kk) { load_a(a, opk, C::OS, 0, kk); },
                         [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odw, C::OS, kk, cw + n0); });
    // The copies while the MMAs run (they only read S.odw, S.db and fill another buffer).
    if (k - (NB - 1) >= 0) chain_prefetch<C>(p, S, xk, lr, bh, k - (NB - 1), (k - (NB - 1)) % NB);
    simt::cp_async_commit();
    write_dsnap<C>(p, S, bh, k);
    store_f32(u, S.dgp, C::FS, 0, cw, -tokL);
    simt::sync();
    // Every state gradient of the range (this chunk is its first) is written: its tokens block may go.
    if (p.overlap && k % p.Q == 0 && tid() == 0) simt::flag_set(chain_done(p, F, bh, k / p.Q));
    clk.mark(23);
    // 2: its vjp dZ1
    chain_rows<C>(p, S, buf, n);
    simt::sync();
    clk.mark(24);
    // 3: Γ += D_k + XKᵀ dZ1, γ += D_b + Σ dZ1
#pragma unroll
    for (int i = 0; i < F / 8; ++i) {
      const Vec4 d = *reinterpret_cast<const Vec4*>(S.dk[buf] + 4 * (i * C::THREADS + tid()));
      dW.v[i][0] += d.x;
      dW.v[i][1] += d.y;
      dW.v[i][2] += d.z;
      dW.v[i][3] += d.w;
    }
    gemm_tile<C, 1>(dW, [&](FragA<C::MMA>& a, int kk) { load_at(a, opk, C::OS, cw, kk); },
                    [&](FragB<C::MMA>& bb, int kk, int n0) { load_b(bb, S.odz, C::OS, kk, n0); });
    for (int c = tid(); c < F; c += C::THREADS) {
      float s = 0;
      for (int r = 0; r < KP; ++r) s += S.dz[r * C::FS + c];
      S.db[c] += S.dbk[buf][c] + s;
    }
    store_op(dW, S.odw, C::OS, cw, 0);
    clk.mark(25);
  }
  float* out = partials<C>(p, static_cast<int64_t>(bh) * p.R);
  store_state_rows<C>(dW, out, cw);
  for (int i = tid(); i < F; i += C::THREADS) out[F * F + i] = S.db[i];  // S.db's owner threads
  clk.total(26);
}

// The chunk-parallel backward as one grid (p.overlap): blocks [0, B·H) are the serial walks, then
// B·H·R direct blocks, then B·H·R tokens blocks, each pass in reverse range order (range R−1 of
// every (b, h) first), so the walks, which need the last ranges first, can start as soon as the first
// direct blocks end, and the tokens blocks of a range start as soon as its walk has passed.
// Signals, per (b, h, range): direct_done (direct block -> walk), chain_done (walk -> tokens block).
// A block only waits for blocks of lower index, which the hardware starts first, and the walks
// (resident from the start) take B·H SMs: the direct blocks, which wait for nothing, always find
// SMs, so the grid cannot deadlock (the launcher uses it only where B·H is below the SM count).
// The passes' work is that of chunks-serial's three kernels.
TTT_HD int64_t overlap_blocks(const Params& p) { return static_cast<int64_t>(p.B) * p.H * (1 + 2 * p.R); }
template <class C>
TTT_DEV void bwd_overlap_block(const Params& p, int blk, char* smem) {
  const int n = p.B * p.H;
  if (blk < n) return chain_block<C>(p, blk, smem);
  int i = blk - n;
  const bool tokens = i >= n * p.R;
  if (tokens) i -= n * p.R;
  const int item = (i % n) * p.R + (p.R - 1 - i / n);  // (b, h) = i % n, range R − 1 − i / n
  if (tokens) bwd_block<C, Mode::tokens>(p, item, smem);
  else bwd_block<C, Mode::direct>(p, item, smem);
}

// Element i (< H (F² + 3F) + K) of the reduction of the blocks' partials, slots (b, h, r) of R per
// (b, h): dW0 and db0 sum slot r = 0 over the batch (the state gradient has one slot per (b, h)),
// dln_w and dln_b every slot over the batch and ranges, dtok every slot; all in index order. Run by
// a grid-stride kernel (and by the host emulation in the tests).
TTT_HD int64_t reduce_count(int H, int F, int K) { return static_cast<int64_t>(H) * (F * F + 3 * F) + K; }
TTT_HD void reduce_partials_at(int64_t i, const float* partials, int B, int H, int F, int K, int R, float* dw0,
                                float* db0, float* dlnw, float* dlnb, float* dtok) {
  const int per = F * F + 3 * F + K;
  const int64_t heads_part = static_cast<int64_t>(H) * (F * F + 3 * F);
  if (i >= heads_part) {
    const int j = static_cast<int>(i - heads_part);
    float s = 0;
    for (int64_t slot = 0; slot < static_cast<int64_t>(B) * H * R; ++slot) s += partials[slot * per + F * F + 3 * F + j];
    dtok[j] = s;
    return;
  }
  const int h = static_cast<int>(i / (F * F + 3 * F)), e = static_cast<int>(i % (F * F + 3 * F));
  const int ranges = e < F * F + F ? 1 : R;
  float s = 0;
  for (int b = 0; b < B; ++b)
    for (int r = 0; r < ranges; ++r) s += partials[(static_cast<int64_t>(b * H + h) * R + r) * per + e];
  if (e < F * F) {
    dw0[static_cast<int64_t>(h) * F * F + e] = s;
    return;
  }
  const int k = (e - F * F) / F, c = (e - F * F) % F;
  float* dst = k == 0 ? db0 : k == 1 ? dlnw : dlnb;
  if (dst) dst[h * F + c] = s;
}

}  // namespace ttt::cuda_impl::tttk
