// kernels/cuda/attention_fwd.cu — fused attention forward for bfloat16 on tensor cores, in the
// manner of FlashAttention-2 (Dao 2023, Algorithm 1); our own code.
//
// One block per (batch·head, tile of kBr = 16·NW query rows); warp w owns query rows 16w..16w+15.
// The block walks the key tiles (kBc = 64 keys) its rows can see, in order:
//   S = Q Kᵀ            (mma.sync m16n8k16: Q fragments live in registers for the whole loop,
//                         K through ldmatrix from shared memory)
//   scale, mask         (only tiles that straddle the causal diagonal, the window edge or the
//                         sequence end are masked element by element; tiles nobody sees are skipped)
//   online softmax      (running max m and sum l per row in float32, base-2 exponentials)
//   O += P V            (P converted in registers from the S accumulators to bf16 A fragments)
// and writes O / l (bf16, staged through shared memory for 16-byte stores) and the natural-log
// lse = (m + log2 l) · ln 2 per row. K/V tiles are double-buffered with cp.async: tile t+1 loads
// while tile t is computed.
//
// Tiles (D = head_dim rounded up to 64, 96 or 128; shared rows padded by 16 bytes so ldmatrix
// is free of bank conflicts):
//   D = 64:  NW = 8, kBr = 128, kBc = 64, 55 KB shared memory (Q + 2 K + 2 V tiles)
//   D = 96:  NW = 4, kBr = 64,  kBc = 64, 67 KB
//   D = 128: NW = 4, kBr = 64,  kBc = 64, 87 KB
// Arithmetic intensity: per key tile a block does 4·kBr·kBc·D FLOPs (QKᵀ and PV) for 2·kBc·D·2
// bytes of K/V read from L2, i.e. kBr FLOPs per byte (128 for D = 64, 64 otherwise); from DRAM
// each head's K/V is read once per concurrently resident q tile, so the kernel is tensor-core
// bound at the paper's sizes (T = 2048: about 2·B·H·T²·D causal FLOPs against 4·B·H·T·D bytes).
#include "kernels/cuda/attention.cuh"

namespace ttt::cuda_impl::attn {

namespace {

constexpr int kBc = 64;  // keys per tile

template <int D, int NW> struct FwdTile {
  static constexpr int kBr = 16 * NW;
  static constexpr int kThreads = 32 * NW;
  static constexpr int kLd = D + 8;  // padded shared row, elements
  static constexpr int kSmemBytes = (kBr * kLd + 4 * kBc * kLd) * 2;
};

// At D = 64 two blocks must fit an SM (2 × 256 threads × 128 registers). Since the strided layouts
// the compiler takes 137-149 registers without the bound and runs one block per SM (8 × 12 × 2048 on
// an H200: 0.443 ms; with the bound 0.369 ms; before the layouts, at 128 registers unbounded,
// 0.258 ms: BENCHMARKS.md, session 16; the rest of that gap is not understood yet). What ptxas
// (sm_90, nvcc 13.0) says without the bound, session 26, not yet timed: the output address kept live
// across the key loop costs about 14 registers (149 → 135 when the end derives it from blockIdx
// again); this file's 32-bit load_rows offsets beat 64-bit ones (135 against 143); the rows' key
// bounds hoisted out of the loop as ints, 132; but the counts move unpredictably with small changes
// (positions all in 32 bits: 158), so a change here needs the timing, not the count.
template <int D, int NW>
__global__ void __launch_bounds__(32 * NW, NW == 8 ? 2 : 1) attention_fwd_bf16_kernel(FwdArgs a, float scale_log2) {
  using Tile = FwdTile<D, NW>;
  constexpr int kBr = Tile::kBr, kLd = Tile::kLd, kThreads = Tile::kThreads;
  extern __shared__ __align__(16) unsigned char smem[];
  __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem);  // [kBr][kLd], later the output staging
  __nv_bfloat16* sK = sQ + kBr * kLd;                           // [2][kBc][kLd]
  __nv_bfloat16* sV = sK + 2 * kBc * kLd;                       // [2][kBc][kLd]

  const AttentionShape& s = a.s;
  const int Dh = static_cast<int>(s.head_dim);
  const int ldq = static_cast<int>(s.q.st), ldk = static_cast<int>(s.k.st), ldv = static_cast<int>(s.v.st);
  const int64_t Tq = s.q_len, Tk = s.kv_len, bh = blockIdx.x, H = s.heads;
  const HeadIndex hi(bh, H);
  // The last query tiles see the most keys (causal): hand them out first.
  const int64_t i0 = static_cast<int64_t>(gridDim.y - 1 - blockIdx.y) * kBr;
  const int64_t i_last = min(i0 + kBr, Tq) - 1;  // last real row of the tile
  const auto* Q = static_cast<const __nv_bfloat16*>(a.q) + s.q.at(hi.b, hi.h, 0);
  const auto* K = static_cast<const __nv_bfloat16*>(a.k) + s.k.at(hi.b, hi.h, 0);
  const auto* V = static_cast<const __nv_bfloat16*>(a.v) + s.v.at(hi.b, hi.h, 0);

  // Key tiles seen by some row of this tile: key_begin grows with the row, key_end too.
  const int64_t t_first = s.key_begin(i0) / kBc;
  const int n_tiles = static_cast<int>((min(s.key_end(i_last), Tk) + kBc - 1) / kBc - t_first);

  load_rows<D, kBr, kThreads>(sQ, Q, i0, Tq, Dh, ldq);
  load_rows<D, kBc, kThreads>(sK, K, t_first * kBc, Tk, Dh, ldk);
  load_rows<D, kBc, kThreads>(sV, V, t_first * kBc, Tk, Dh, ldv);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  // This thread's two rows: g and g + 8 of the warp's 16 (C fragment rows).
  const int64_t row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
  uint32_t qf[D / 16][4];  // the warp's Q rows as A fragments, one per 16 columns
  float o[D / 8][4];       // O accumulators: 16 rows x D per warp
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (log2 domain), partial sums

  for (int it = 0; it < n_tiles; ++it) {
    const int buf = it & 1;
    const int64_t j0 = (t_first + it) * kBc;
    if (it + 1 < n_tiles) {  // prefetch the next K/V tile into the other buffer
      load_rows<D, kBc, kThreads>(sK + (buf ^ 1) * kBc * kLd, K, j0 + kBc, Tk, Dh, ldk);
      load_rows<D, kBc, kThreads>(sV + (buf ^ 1) * kBc * kLd, V, j0 + kBc, Tk, Dh, ldv);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(qf[kk], sQ + (warp * 16 + a_row(lane)) * kLd + kk * 16 + a_col(lane));
    }
    const __nv_bfloat16* k_s = sK + buf * kBc * kLd;
    const __nv_bfloat16* v_s = sV + buf * kBc * kLd;

    // S = Q Kᵀ for the warp's 16 rows x kBc keys.
    float sc[kBc / 8][4];
#pragma unroll
    for (int n = 0; n < kBc / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kBc / 16; ++np) {
        uint32_t b[4];
        ldsm_x4(b, k_s + (np * 16 + b_row(lane)) * kLd + kk * 16 + b_col(lane));
        mma_bf16(sc[2 * np], qf[kk], b[0], b[1]);
        mma_bf16(sc[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }

    // Scale into the log2 domain; mask where the tile is not entirely visible to every real row.
    const bool full = j0 + kBc <= min(s.key_end(i0), Tk) && j0 >= s.key_begin(i_last);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t kb = s.key_begin(row[h]), ke = min(s.key_end(row[h]), Tk);
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t j = j0 + n * 8 + 2 * t4 + e;
          float& x = sc[n][2 * h + e];
          x = (full || (j >= kb && j < ke)) ? x * scale_log2 : -INFINITY;
        }
    }

    // Online softmax: new row max over the quad (4 lanes share a row), rescale, exponentiate.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = m[h];
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) mx = fmaxf(mx, fmaxf(sc[n][2 * h], sc[n][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float base = mx == -INFINITY ? 0.f : mx;  // a row with nothing visible yet stays at 0
      const float alpha = fast_exp2(m[h] - base);     // 0 when m was -inf
      m[h] = mx;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) {
        sc[n][2 * h] = fast_exp2(sc[n][2 * h] - base);
        sc[n][2 * h + 1] = fast_exp2(sc[n][2 * h + 1] - base);
        sum += sc[n][2 * h] + sc[n][2 * h + 1];
      }
      l[h] = l[h] * alpha + sum;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * h] *= alpha;
        o[n][2 * h + 1] *= alpha;
      }
    }

    // O += P V: P's accumulators become A fragments (Note [mma.sync m16n8k16 fragments]).
#pragma unroll
    for (int ks = 0; ks < kBc / 16; ++ks) {
      const uint32_t pa[4] = {pack_bf16(sc[2 * ks][0], sc[2 * ks][1]), pack_bf16(sc[2 * ks][2], sc[2 * ks][3]),
                              pack_bf16(sc[2 * ks + 1][0], sc[2 * ks + 1][1]),
                              pack_bf16(sc[2 * ks + 1][2], sc[2 * ks + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, v_s + (ks * 16 + bt_row(lane)) * kLd + dp * 16 + bt_col(lane));
        mma_bf16(o[2 * dp], pa, b[0], b[1]);
        mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

  // Finish: full row sums over the quad, O / l staged into the warp's own rows of sQ (no other
  // warp reads them), then 16-byte coalesced stores; lse from lane t4 == 0 of each quad.
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    inv[h] = 1.f / l[h];
  }
  __nv_bfloat16* stage = sQ + warp * 16 * kLd;
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    *reinterpret_cast<uint32_t*>(stage + g * kLd + n * 8 + 2 * t4) = pack_bf16(o[n][0] * inv[0], o[n][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(stage + (g + 8) * kLd + n * 8 + 2 * t4) =
        pack_bf16(o[n][2] * inv[1], o[n][3] * inv[1]);
  }
  __syncwarp();
  auto* O = static_cast<__nv_bfloat16*>(a.out) + s.out.at(hi.b, hi.h, 0);
  const int ldo = static_cast<int>(s.out.st);
#pragma unroll
  for (int c = lane; c < 16 * (D / 8); c += 32) {
    const int r = c / (D / 8), col = (c % (D / 8)) * 8;
    const int64_t i = i0 + warp * 16 + r;
    if (i < Tq && col < Dh)
      *reinterpret_cast<uint4*>(O + i * ldo + col) = *reinterpret_cast<const uint4*>(stage + r * kLd + col);
  }
  if (t4 == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h)
      if (row[h] < Tq) a.lse[bh * Tq + row[h]] = (m[h] + __log2f(l[h])) * kLn2;
  }
}

template <int D, int NW> void launch(const FwdArgs& a, cudaStream_t stream) {
  using Tile = FwdTile<D, NW>;
  const int64_t q_tiles = (a.s.q_len + Tile::kBr - 1) / Tile::kBr;
  if (q_tiles > 65535)
    throw std::invalid_argument("attention (CUDA): " + std::to_string(a.s.q_len) + " query rows exceed the grid limit");
  auto kernel = attention_fwd_bf16_kernel<D, NW>;
  allow_smem(kernel, Tile::kSmemBytes);
  const dim3 grid(static_cast<unsigned>(a.s.batch * a.s.heads), static_cast<unsigned>(q_tiles));
  kernel<<<grid, Tile::kThreads, Tile::kSmemBytes, stream>>>(a, static_cast<float>(a.s.scale) * kLog2e);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_fwd_bf16(const FwdArgs& a, cudaStream_t stream) {
  if (a.s.head_dim <= 64) launch<64, 8>(a, stream);
  else if (a.s.head_dim <= 96) launch<96, 4>(a, stream);
  else launch<128, 4>(a, stream);
}

}  // namespace ttt::cuda_impl::attn
