// kernels/cuda/attention_bwd.cu — fused attention backward for bfloat16 on tensor cores, in the
// manner of FlashAttention-2 (Dao 2023, Algorithm 2); our own code.
//
// One block per (batch·head, tile of kBc = 16·NW keys); warp w owns keys 16w..16w+15 and keeps
// their dK and dV accumulators (float32) in registers for the whole loop. The block walks the
// query tiles (kBr rows) that see any of its keys, with Q, dO, lse and D = rowsum(dO ∘ O)
// (precomputed by attention.cu) double-buffered in shared memory:
//   Sᵀ = K Qᵀ, Pᵀ = 2^(Sᵀ·scale·log2 e − lse·log2 e)   (probabilities recomputed, masked to 0)
//   dV += Pᵀ dO
//   dPᵀ = V dOᵀ,  dSᵀ = Pᵀ ∘ (dPᵀ − D)
//   dK += dSᵀ Q                                          (scale applied once at the end)
//   dQ_tile = scale · dS K  -> atomicAdd (float2) into a float32 [B,H,Tq,D] buffer
// Working with the transposes keeps the key index on the accumulator rows, so Pᵀ and dSᵀ feed
// the dV and dK products straight from registers; dS goes through shared memory once for dQ,
// whose rows (queries) are split over the warps. The float32 atomics make dQ's summation order
// (over key tiles) non-deterministic at the level of float32 rounding; in deterministic mode each
// key tile stores its partial in a slab of its own instead and attention.cu adds the slabs in
// order (BwdArgs::dq_tile_stride).
//
// Tiles (D = head_dim rounded up to 64, 96 or 128):
//   D = 64:  NW = 4, kBc = 64,  kBr = 32, 42 KB (168 registers: three blocks an SM); in
//            deterministic mode NW = 8, kBc = 128, kBr = 64, 93 KB (half the dQ slabs; below)
//   D = 96:  NW = 4, kBc = 64,  kBr = 64, 89 KB
//   D = 128: NW = 4, kBc = 64,  kBr = 32, 75 KB (kBr 32 keeps Sᵀ and dPᵀ small next to dK, dV)
// Work: 5 products of kBr·kBc·D per tile pair (Sᵀ, dV, dPᵀ, dK, dQ) = 2.5x the forward's FLOPs;
// per tile pair the block reads 2·kBr·D·2 bytes of Q/dO from L2 (kBc FLOPs per byte... ·5/2).
// The D = 64 tile, measured on an H200 (session 27, `attention_bench --B B --H 12 --T T --D 64
// --no-composite`, forward + backward ms, two runs; the forward is 0.35 / 1.24 ms of them):
//   NW, kBr      8 × 2048        2 × 8192     registers (ptxas -v, sm_90)
//   8, 64        1.550 / 1.557   5.175 / 5.156   255 (one block an SM; the tile until then)
//   8, 32        1.820 / 1.807   6.101 / 6.092   172
//   8, 128       1.479 / 1.471   4.867 / 4.900   255
//   4, 64        1.472 / 1.502   5.036 / 5.040   215
//   4, 32        1.356 / 1.355   4.639 / 4.648   168
// so the backward alone 1.20 → 1.01 ms and 3.92 → 3.40 ms, although twice the key tiles add their dQ
// atomics to each query row (an H100 in another call: 1.56 → 1.37 and 5.13 → 4.62 ms; tiles of 4
// warps × 16 rows, 2 × 32 and 2 × 16: 1.58–1.71 ms). Not profiled; presumably three 4-warp blocks an
// SM hide the dependent products of a tile pair better than one 8-warp block at 255 registers. At
// D = 96 and 128 the same search (4 × 32, 2 × 32, 2 × 16; 2 × 32, 4 × 16, 2 × 16) found nothing
// faster than the tiles above (H100: 2.03–2.05 ms against 2.23–2.53 at D = 96, 2.61 against
// 2.93–3.31 at D = 128, 8 × 12 × 2048).
#include "kernels/cuda/attention.cuh"

namespace ttt::cuda_impl::attn {

namespace {

template <int D, int NW, int BR> struct BwdTile {
  static constexpr int kD = D, kNW = NW;
  static constexpr int kBc = 16 * NW, kBr = BR;
  static constexpr int kThreads = 32 * NW;
  static constexpr int kLd = D + 8;   // padded rows of K, V, Q, dO tiles
  static constexpr int kLdS = BR + 8;  // padded rows of the dSᵀ tile [kBc][kBr]
  static constexpr int kBf16Elems = 2 * kBc * kLd + 4 * kBr * kLd + kBc * kLdS;
  static constexpr int kSmemBytes = kBf16Elems * 2 + 4 * kBr * 4;  // + lse, D (double-buffered)
  // dQ = dS K: kBr / 16 row groups, each split over kParts warps by columns.
  static constexpr int kParts = NW / (BR / 16);
  static constexpr int kDq = D / kParts;
  static_assert(NW % (BR / 16) == 0 && kDq % 16 == 0, "dQ work split must be whole 16x16 blocks");
};

template <int D, int NW, int BR>
__global__ void __launch_bounds__(32 * NW) attention_bwd_bf16_kernel(BwdArgs a, float scale_log2) {
  using Tile = BwdTile<D, NW, BR>;
  constexpr int kBc = Tile::kBc, kBr = Tile::kBr, kLd = Tile::kLd, kLdS = Tile::kLdS, kThreads = Tile::kThreads;
  extern __shared__ __align__(16) unsigned char smem[];
  __nv_bfloat16* sK = reinterpret_cast<__nv_bfloat16*>(smem);  // [kBc][kLd]
  __nv_bfloat16* sV = sK + kBc * kLd;                           // [kBc][kLd]
  __nv_bfloat16* sQ = sV + kBc * kLd;                           // [2][kBr][kLd]
  __nv_bfloat16* sdO = sQ + 2 * kBr * kLd;                      // [2][kBr][kLd]
  __nv_bfloat16* sdS = sdO + 2 * kBr * kLd;                     // [kBc][kLdS]: dSᵀ, keys x queries
  float* sLse = reinterpret_cast<float*>(sdS + kBc * kLdS);     // [2][kBr], times log2 e
  float* sDelta = sLse + 2 * kBr;                               // [2][kBr]

  const AttentionShape& s = a.s;
  const int Dh = static_cast<int>(s.head_dim);
  const int ldq = static_cast<int>(s.q.st), ldk = static_cast<int>(s.k.st), ldv = static_cast<int>(s.v.st);
  const int ldo = static_cast<int>(s.dout.st);
  const int64_t Tq = s.q_len, Tk = s.kv_len, off = s.q_offset(), H = s.heads;
  const int64_t bh = a.bh_begin + blockIdx.x;  // flat head b·H + h
  const HeadIndex hi(bh, H);
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kBc;  // first key of the tile
  const int64_t j_last = min(j0 + kBc, Tk) - 1;
  const auto* Q = static_cast<const __nv_bfloat16*>(a.q) + s.q.at(hi.b, hi.h, 0);
  const auto* K = static_cast<const __nv_bfloat16*>(a.k) + s.k.at(hi.b, hi.h, 0);
  const auto* V = static_cast<const __nv_bfloat16*>(a.v) + s.v.at(hi.b, hi.h, 0);
  const auto* dO = static_cast<const __nv_bfloat16*>(a.dout) + s.dout.at(hi.b, hi.h, 0);
  const float* lse = a.lse + bh * Tq;
  const float* delta = a.delta + bh * Tq;

  // Query rows that see some key of the tile: key_end(i) > j0 and key_begin(i) <= j_last.
  const int64_t i_lo = s.causal && j0 - off > 0 ? j0 - off : 0;
  const int64_t i_hi = s.causal && s.window > 0 ? min(Tq - 1, j_last + s.window - 1 - off) : Tq - 1;
  const int64_t qt_first = i_lo / kBr;
  const int n_tiles = i_lo <= i_hi ? static_cast<int>(i_hi / kBr - qt_first + 1) : 0;

  // Stage a query tile: Q and dO by cp.async, lse and D by plain loads (ordered by the barrier
  // that follows the wait).
  auto load_query_tile = [&](int buf, int64_t i0) {
    load_rows<D, kBr, kThreads>(sQ + buf * kBr * kLd, Q, i0, Tq, Dh, ldq);
    load_rows<D, kBr, kThreads>(sdO + buf * kBr * kLd, dO, i0, Tq, Dh, ldo);
    for (int r = threadIdx.x; r < kBr; r += kThreads) {
      const bool ok = i0 + r < Tq;
      sLse[buf * kBr + r] = ok ? lse[i0 + r] * kLog2e : 0.f;
      sDelta[buf * kBr + r] = ok ? delta[i0 + r] : 0.f;
    }
  };
  if (n_tiles > 0) {  // (a tile no query sees only writes zeros)
    load_rows<D, kBc, kThreads>(sK, K, j0, Tk, Dh, ldk);
    load_rows<D, kBc, kThreads>(sV, V, j0, Tk, Dh, ldv);
    load_query_tile(0, qt_first * kBr);
    cp_async_commit();
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int64_t key[2] = {j0 + warp * 16 + g, j0 + warp * 16 + g + 8};  // this thread's accumulator rows
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  for (int it = 0; it < n_tiles; ++it) {
    const int buf = it & 1;
    const int64_t i0 = (qt_first + it) * kBr;
    if (it + 1 < n_tiles) {
      load_query_tile(buf ^ 1, i0 + kBr);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile `it` is in; every warp finished the previous iteration's dQ
    const __nv_bfloat16* q_s = sQ + buf * kBr * kLd;
    const __nv_bfloat16* do_s = sdO + buf * kBr * kLd;
    const float* lse_s = sLse + buf * kBr;
    const float* delta_s = sDelta + buf * kBr;

    // Sᵀ = K Qᵀ: the warp's 16 keys x kBr queries.
    float st[kBr / 8][4];
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n) st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4];
      ldsm_x4(ka, sK + (warp * 16 + a_row(lane)) * kLd + kk * 16 + a_col(lane));
#pragma unroll
      for (int np = 0; np < kBr / 16; ++np) {
        uint32_t b[4];
        ldsm_x4(b, q_s + (np * 16 + b_row(lane)) * kLd + kk * 16 + b_col(lane));
        mma_bf16(st[2 * np], ka, b[0], b[1]);
        mma_bf16(st[2 * np + 1], ka, b[2], b[3]);
      }
    }

    // Pᵀ from the saved lse; 0 where the query may not see the key (or is padding).
    const bool full = i0 + kBr <= Tq && j0 + kBc <= Tk && j0 + kBc <= s.key_end(i0) &&
                      j0 >= s.key_begin(i0 + kBr - 1);
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = n * 8 + 2 * t4 + e;  // query within the tile
        const int64_t i = i0 + c;
        const bool row_ok = i < Tq;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const bool ok = full || (row_ok && key[h] < Tk && key[h] >= s.key_begin(i) && key[h] < s.key_end(i));
          float& x = st[n][2 * h + e];
          x = ok ? fast_exp2(x * scale_log2 - lse_s[c]) : 0.f;
        }
      }

    // dV += Pᵀ dO (Pᵀ's accumulators are the A fragments).
#pragma unroll
    for (int ks = 0; ks < kBr / 16; ++ks) {
      const uint32_t pa[4] = {pack_bf16(st[2 * ks][0], st[2 * ks][1]), pack_bf16(st[2 * ks][2], st[2 * ks][3]),
                              pack_bf16(st[2 * ks + 1][0], st[2 * ks + 1][1]),
                              pack_bf16(st[2 * ks + 1][2], st[2 * ks + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, do_s + (ks * 16 + bt_row(lane)) * kLd + dp * 16 + bt_col(lane));
        mma_bf16(dv[2 * dp], pa, b[0], b[1]);
        mma_bf16(dv[2 * dp + 1], pa, b[2], b[3]);
      }
    }

    // dPᵀ = V dOᵀ, then dSᵀ = Pᵀ ∘ (dPᵀ − D) in place.
    float ds[kBr / 8][4];
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n) ds[n][0] = ds[n][1] = ds[n][2] = ds[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t va[4];
      ldsm_x4(va, sV + (warp * 16 + a_row(lane)) * kLd + kk * 16 + a_col(lane));
#pragma unroll
      for (int np = 0; np < kBr / 16; ++np) {
        uint32_t b[4];
        ldsm_x4(b, do_s + (np * 16 + b_row(lane)) * kLd + kk * 16 + b_col(lane));
        mma_bf16(ds[2 * np], va, b[0], b[1]);
        mma_bf16(ds[2 * np + 1], va, b[2], b[3]);
      }
    }
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float d_i = delta_s[n * 8 + 2 * t4 + e];
        ds[n][e] = st[n][e] * (ds[n][e] - d_i);
        ds[n][2 + e] = st[n][2 + e] * (ds[n][2 + e] - d_i);
      }

    // dSᵀ to shared memory (bf16, keys x queries) for the dQ product below.
#pragma unroll
    for (int n = 0; n < kBr / 8; ++n) {
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g) * kLdS + n * 8 + 2 * t4) = pack_bf16(ds[n][0], ds[n][1]);
      *reinterpret_cast<uint32_t*>(sdS + (warp * 16 + g + 8) * kLdS + n * 8 + 2 * t4) = pack_bf16(ds[n][2], ds[n][3]);
    }

    // dK += dSᵀ Q.
#pragma unroll
    for (int ks = 0; ks < kBr / 16; ++ks) {
      const uint32_t da[4] = {pack_bf16(ds[2 * ks][0], ds[2 * ks][1]), pack_bf16(ds[2 * ks][2], ds[2 * ks][3]),
                              pack_bf16(ds[2 * ks + 1][0], ds[2 * ks + 1][1]),
                              pack_bf16(ds[2 * ks + 1][2], ds[2 * ks + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_trans(b, q_s + (ks * 16 + bt_row(lane)) * kLd + dp * 16 + bt_col(lane));
        mma_bf16(dk[2 * dp], da, b[0], b[1]);
        mma_bf16(dk[2 * dp + 1], da, b[2], b[3]);
      }
    }
    __syncthreads();  // dSᵀ complete

    // dQ rows of this warp: query group qg (16 rows), columns [c0, c0 + kDq).
    {
      constexpr int kDq = Tile::kDq;
      const int qg = warp % (kBr / 16), c0 = (warp / (kBr / 16)) * kDq;
      float dq[kDq / 8][4];
#pragma unroll
      for (int n = 0; n < kDq / 8; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < kBc / 16; ++ks) {
        uint32_t aa[4];  // dS (queries x keys) read transposed from dSᵀ
        ldsm_x4_trans(aa, sdS + (ks * 16 + at_row(lane)) * kLdS + qg * 16 + at_col(lane));
#pragma unroll
        for (int dp = 0; dp < kDq / 16; ++dp) {
          uint32_t b[4];
          ldsm_x4_trans(b, sK + (ks * 16 + bt_row(lane)) * kLd + c0 + dp * 16 + bt_col(lane));
          mma_bf16(dq[2 * dp], aa, b[0], b[1]);
          mma_bf16(dq[2 * dp + 1], aa, b[2], b[3]);
        }
      }
      const float scale = a.s.scale;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t i = i0 + qg * 16 + g + 8 * h;
        if (i >= Tq) continue;
        float* dst = a.dq_accum + ((bh - a.bh_begin) * Tq + i) * Dh;
#pragma unroll
        for (int n = 0; n < kDq / 8; ++n) {
          const int d = c0 + n * 8 + 2 * t4;
          if (d < Dh && a.dq_tile_stride > 0) {  // deterministic: this tile's own slab (see BwdArgs)
            *reinterpret_cast<float2*>(dst + static_cast<int64_t>(blockIdx.y) * a.dq_tile_stride + d) =
                make_float2(dq[n][2 * h] * scale, dq[n][2 * h + 1] * scale);
          } else if (d < Dh) {
#if __CUDA_ARCH__ >= 900
            atomicAdd(reinterpret_cast<float2*>(dst + d), make_float2(dq[n][2 * h] * scale, dq[n][2 * h + 1] * scale));
#else
            atomicAdd(dst + d, dq[n][2 * h] * scale);
            atomicAdd(dst + d + 1, dq[n][2 * h + 1] * scale);
#endif
          }
        }
      }
    }
  }

  // dK (times scale) and dV of the warp's keys; keys no query sees get zeros.
  const float scale = a.s.scale;
  auto* dK = static_cast<__nv_bfloat16*>(a.dk) + s.dk.at(hi.b, hi.h, 0);
  auto* dV = static_cast<__nv_bfloat16*>(a.dv) + s.dv.at(hi.b, hi.h, 0);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (key[h] >= Tk) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int d = n * 8 + 2 * t4;
      if (d >= Dh) continue;
      *reinterpret_cast<uint32_t*>(dK + key[h] * static_cast<int>(s.dk.st) + d) = pack_bf16(dk[n][2 * h] * scale, dk[n][2 * h + 1] * scale);
      *reinterpret_cast<uint32_t*>(dV + key[h] * static_cast<int>(s.dv.st) + d) = pack_bf16(dv[n][2 * h], dv[n][2 * h + 1]);
    }
  }
}

template <int D, int NW, int BR> void launch(const BwdArgs& a, cudaStream_t stream) {
  using Tile = BwdTile<D, NW, BR>;
  const int64_t k_tiles = (a.s.kv_len + Tile::kBc - 1) / Tile::kBc;
  if (k_tiles > 65535)
    throw std::invalid_argument("attention backward (CUDA): " + std::to_string(a.s.kv_len) +
                                " keys exceed the grid limit");
  auto kernel = attention_bwd_bf16_kernel<D, NW, BR>;
  allow_smem(kernel, Tile::kSmemBytes);
  const dim3 grid(static_cast<unsigned>(a.bh_count), static_cast<unsigned>(k_tiles));
  kernel<<<grid, Tile::kThreads, Tile::kSmemBytes, stream>>>(a, static_cast<float>(a.s.scale) * kLog2e);
  CUDA_CHECK_LAUNCH();
}

// The tile for head_dim (the header's table): fn(BwdTile<…>{}). At D = 64 the deterministic mode
// (dq_tile_stride > 0: each key tile writes a dQ slab of its own, added in order afterwards) keeps
// the 128-key tile: with 64 keys a block twice the slabs cost more than the tile gains (125M
// Transformer++ in deterministic mode on an H100, session 27: 282k tok/s with 128 keys, 258k with
// 64), while the atomic path gains (309k–312k → 325k).
template <class Fn>
auto with_bwd_tile(int64_t head_dim, bool deterministic, Fn&& fn) {
  if (head_dim <= 64) return deterministic ? fn(BwdTile<64, 8, 64>{}) : fn(BwdTile<64, 4, 32>{});
  if (head_dim <= 96) return fn(BwdTile<96, 4, 64>{});
  return fn(BwdTile<128, 4, 32>{});
}

}  // namespace

int64_t bwd_key_tile_bf16(int64_t head_dim) {  // the dQ slabs' key tile: deterministic mode only
  return with_bwd_tile(head_dim, true, [](auto tile) { return int64_t{decltype(tile)::kBc}; });
}

void launch_bwd_bf16(const BwdArgs& a, cudaStream_t stream) {
  with_bwd_tile(a.s.head_dim, a.dq_tile_stride > 0, [&](auto tile) {
    using T = decltype(tile);
    launch<T::kD, T::kNW, T::kBr>(a, stream);
  });
}

}  // namespace ttt::cuda_impl::attn
