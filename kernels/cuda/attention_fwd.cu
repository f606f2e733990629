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

// At D = 64 two blocks must fit an SM (2 × 256 threads × 128 registers), and the loop must not need
// more than that: forced down from more, ptxas keeps fewer fragments in flight. So everything live
// across the key loop is a 32-bit int (positions: sequence lengths are below 2^31, the launcher
// checks), the rows' key bounds are computed once before it, and what only the end needs (the output
// and lse addresses) is derived there again from blockIdx. Session 27, a standalone benchmark of
// variants (bf16, causal, 12 heads of 64, outputs equal bit for bit): on an H200 this took the
// forward from 0.353 to 0.339 ms at 8 × 2048 and from 1.29 to 1.23 ms at 2 × 8192 (an H100: 0.346 →
// 0.332, 1.257 → 1.191), in the contiguous and the strided layouts alike; without the two-block
// bound the same kernel needs 0.52 ms (H100). `032a7a3`'s kernel (before the strided layouts), in
// the same benchmark, took 0.438 ms on the H200: the 0.258 ms its attention_bench measured there in
// session 16 (BENCHMARKS.md) is not reproduced, so that "regression" is not one of this kernel.
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
  const int ldk = static_cast<int>(s.k.st), ldv = static_cast<int>(s.v.st);
  const int Tq = static_cast<int>(s.q_len), Tk = static_cast<int>(s.kv_len);
  // The last query tiles see the most keys (causal): hand them out first.
  const int i0 = static_cast<int>(gridDim.y - 1 - blockIdx.y) * kBr;
  const int i_last = min(i0 + kBr, Tq) - 1;  // last real row of the tile
  const auto* K = static_cast<const __nv_bfloat16*>(a.k);
  const auto* V = static_cast<const __nv_bfloat16*>(a.v);
  {
    const HeadIndex hi(blockIdx.x, s.heads);
    K += s.k.at(hi.b, hi.h, 0);
    V += s.v.at(hi.b, hi.h, 0);
    load_rows<D, kBr, kThreads>(sQ, static_cast<const __nv_bfloat16*>(a.q) + s.q.at(hi.b, hi.h, 0), i0, Tq, Dh,
                                static_cast<int>(s.q.st));
  }

  // Key tiles seen by some row of this tile: key_begin grows with the row, key_end too.
  const int t_first = static_cast<int>(s.key_begin(i0) / kBc);
  const int n_tiles = static_cast<int>((min(s.key_end(i_last), s.kv_len) + kBc - 1) / kBc) - t_first;
  load_rows<D, kBc, kThreads>(sK, K, t_first * kBc, Tk, Dh, ldk);
  load_rows<D, kBc, kThreads>(sV, V, t_first * kBc, Tk, Dh, ldv);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  // Keys [kb, ke) are visible to this thread's two rows (g and g + 8 of the warp's 16: C fragment
  // rows); keys [full_begin, full_end) to every real row of the tile.
  int kb[2], ke[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t i = i0 + warp * 16 + g + 8 * h;
    kb[h] = static_cast<int>(s.key_begin(i));
    ke[h] = static_cast<int>(min(s.key_end(i), s.kv_len));
  }
  const int full_begin = static_cast<int>(s.key_begin(i_last));
  const int full_end = static_cast<int>(min(s.key_end(i0), s.kv_len));
  uint32_t qf[D / 16][4];  // the warp's Q rows as A fragments, one per 16 columns
  float o[D / 8][4];       // O accumulators: 16 rows x D per warp
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (log2 domain), partial sums

  for (int it = 0; it < n_tiles; ++it) {
    const int buf = it & 1;
    const int j0 = (t_first + it) * kBc;
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
    const bool full = j0 + kBc <= full_end && j0 >= full_begin;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = j0 + n * 8 + 2 * t4 + e;
          float& x = sc[n][2 * h + e];
          x = (full || (j >= kb[h] && j < ke[h])) ? x * scale_log2 : -INFINITY;
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
  const HeadIndex hi(blockIdx.x, s.heads);
  auto* O = static_cast<__nv_bfloat16*>(a.out) + s.out.at(hi.b, hi.h, 0);
  const int ldo = static_cast<int>(s.out.st);
#pragma unroll
  for (int c = lane; c < 16 * (D / 8); c += 32) {
    const int r = c / (D / 8), col = (c % (D / 8)) * 8;
    const int i = i0 + warp * 16 + r;
    if (i < Tq && col < Dh)
      *reinterpret_cast<uint4*>(O + static_cast<int64_t>(i) * ldo + col) =
          *reinterpret_cast<const uint4*>(stage + r * kLd + col);
  }
  if (t4 == 0) {
    float* lse = a.lse + static_cast<int64_t>(blockIdx.x) * Tq;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = i0 + warp * 16 + g + 8 * h;
      if (i < Tq) lse[i] = (m[h] + __log2f(l[h])) * kLn2;
    }
  }
}

template <int D, int NW> void launch(const FwdArgs& a, cudaStream_t stream) {
  using Tile = FwdTile<D, NW>;
  const int64_t q_tiles = (a.s.q_len + Tile::kBr - 1) / Tile::kBr;
  if (q_tiles > 65535)
    throw std::invalid_argument("attention (CUDA): " + std::to_string(a.s.q_len) + " query rows exceed the grid limit");
  if (a.s.kv_len > (int64_t{1} << 31) - kBc)  // the kernel's positions are 32-bit
    throw std::invalid_argument("attention (CUDA): " + std::to_string(a.s.kv_len) + " keys exceed 2^31 - 64");
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
