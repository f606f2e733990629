// kernels/cuda/block_mm.cuh — float32 products of small tiles by one thread block, on the CUDA
// cores (mm) or on the tensor cores in 3xTF32 (mm_tc), written against simt.cuh (so the same source
// runs on the host SIMT emulator). They are the building blocks of the chunked gated delta kernels
// (gated_delta_chunk*.cuh), whose chunk-sized products ([32, 32] · [32, d] and the like) are too
// small and too many for a GEMM library call.
//
// mm: each thread computes 4 × 4 outputs at a time in registers (4 + 4 operand loads per 16 FMAs, half
// a shared-memory load per FMA), or 2 × 2 for products too small to give every thread a 4 × 4 tile.
// Shared-memory operands should have odd leading dimensions (`odd_ld`): then neither a transposed
// operand nor a warp spanning several row tiles meets bank conflicts (see mm_tiles).
// No barrier inside: the caller makes the operands ready before (simt::sync()) and syncs after
// before anyone reads `out` or overwrites an operand.
// `out` may be shared or global memory; it must not overlap A or B. Two products of the same M × N
// into the same `out` need no barrier between them: a thread owns the same outputs in both.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cuda/simt.cuh"

namespace ttt::cuda_impl::blk {

// The product with R × R outputs a thread (see mm). Thread tile (it, jt) owns rows it + r·mt and
// columns jt + s·nt (r, s < R): lanes of a warp take consecutive jt, so they read consecutive
// columns of B (distinct banks) and, for a transposed B or several row tiles in a warp, rows of an
// odd leading dimension (distinct banks again); the same row of A is a broadcast.
template <bool TA, bool TB, int R>
TTT_DEV void mm_tiles(float* out, int ldo, const float* A, int lda, const float* B, int ldb, int M, int N, int K,
                      float alpha, float beta) {
  const int mt = (M + R - 1) / R, nt = (N + R - 1) / R, tiles = mt * nt;
  for (int e = simt::tid(); e < tiles; e += simt::threads()) {
    const int it = e / nt, jt = e % nt;
    int ri[R], cj[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      ri[r] = it + r * mt < M ? it + r * mt : M - 1;  // a clamped row or column: computed, never stored
      cj[r] = jt + r * nt < N ? jt + r * nt : N - 1;
    }
    float c[R][R] = {};
    for (int k = 0; k < K; ++k) {
      float a[R], b[R];
#pragma unroll
      for (int r = 0; r < R; ++r) a[r] = TA ? A[k * lda + ri[r]] : A[ri[r] * lda + k];
#pragma unroll
      for (int s = 0; s < R; ++s) b[s] = TB ? B[cj[s] * ldb + k] : B[k * ldb + cj[s]];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int s = 0; s < R; ++s) c[r][s] = fmaf(a[r], b[s], c[r][s]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int s = 0; s < R; ++s) {
        if (it + r * mt >= M || jt + s * nt >= N) continue;
        float* o = out + (it + r * mt) * ldo + (jt + s * nt);
        *o = beta == 0.f ? alpha * c[r][s] : fmaf(alpha, c[r][s], beta * *o);
      }
  }
}

// out[i·ldo + j] = alpha · Σ_k a(i, k) b(k, j) + beta · out[i·ldo + j] for i < M, j < N (M, N ≥ 1), with
// a(i, k) = TA ? A[k·lda + i] : A[i·lda + k] and b(k, j) = TB ? B[j·ldb + k] : B[k·ldb + j].
// beta == 0 writes without reading out (it may hold NaN). 4 × 4 outputs a thread where that gives
// every thread work, else 2 × 2 (a [32, 32] product has 64 tiles of 4 × 4 for 128 threads); the
// choice depends on M and N only.
template <bool TA, bool TB>
TTT_DEV void mm(float* out, int ldo, const float* A, int lda, const float* B, int ldb, int M, int N, int K, float alpha,
                float beta) {
  if (((M + 3) / 4) * ((N + 3) / 4) >= simt::threads())
    mm_tiles<TA, TB, 4>(out, ldo, A, lda, B, ldb, M, N, K, alpha, beta);
  else
    mm_tiles<TA, TB, 2>(out, ldo, A, lda, B, ldb, M, N, K, alpha, beta);
}

// The same product on the tensor cores in 3xTF32 (as CUTLASS's "fast accurate" float32 GEMMs): every
// operand x splits into hi = tf32(x) and lo = tf32(x − hi), and a·b ≈ hi_a hi_b + hi_a lo_b + lo_a hi_b
// (lo_a lo_b, about 2⁻²² of the product, dropped), so the result keeps float32-level accuracy at
// three mma.m16n8k8 a step. Warp w takes the [16, 8] output tiles w, w + warps, ...; fragments are
// read from the operands by scalar loads, zeros past M, N and K. Same contract as mm (the owner of
// an output depends on M and N only).
template <bool TA, bool TB>
TTT_DEV void mm_tc(float* out, int ldo, const float* A, int lda, const float* B, int ldb, int M, int N, int K, float alpha,
                   float beta) {
  const int g = simt::lane() >> 2, t = simt::lane() & 3, warps = simt::threads() / 32;
  const int tiles_n = (N + 7) / 8, tiles = ((M + 15) / 16) * tiles_n;
  auto a_at = [&](int i, int k) { return i < M && k < K ? (TA ? A[k * lda + i] : A[i * lda + k]) : 0.f; };
  auto b_at = [&](int k, int j) { return k < K && j < N ? (TB ? B[j * ldb + k] : B[k * ldb + j]) : 0.f; };
  auto split = [](float x, uint32_t& hi, uint32_t& lo) {
    hi = simt::to_tf32(x);
    float h;
    memcpy(&h, &hi, 4);
    lo = simt::to_tf32(x - h);
  };
  for (int tile = simt::warp(); tile < tiles; tile += warps) {
    const int i0 = (tile / tiles_n) * 16, j0 = (tile % tiles_n) * 8;
    float c[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k0 = 0; k0 < K; k0 += 8) {
      const float av[4] = {a_at(i0 + g, k0 + t), a_at(i0 + g + 8, k0 + t), a_at(i0 + g, k0 + t + 4),
                           a_at(i0 + g + 8, k0 + t + 4)};
      const float bv[2] = {b_at(k0 + t, j0 + g), b_at(k0 + t + 4, j0 + g)};
      uint32_t ah[4], al[4], bh[2], bl[2];
#pragma unroll
      for (int r = 0; r < 4; ++r) split(av[r], ah[r], al[r]);
#pragma unroll
      for (int r = 0; r < 2; ++r) split(bv[r], bh[r], bl[r]);
      simt::mma_tf32(c, al, bh);  // the small terms first
      simt::mma_tf32(c, ah, bl);
      simt::mma_tf32(c, ah, bh);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = i0 + g + (e >> 1) * 8, j = j0 + 2 * t + (e & 1);
      if (i >= M || j >= N) continue;
      float* o = out + i * ldo + j;
      *o = beta == 0.f ? alpha * c[e] : fmaf(alpha, c[e], beta * *o);
    }
  }
}

// out[i] (+)= Σ_{d < n} a[i·lda + d] · b[i·ldb + d] for i < rows: one warp a row, a fixed-order
// butterfly over its lanes (deterministic). `accumulate` false overwrites. Caller syncs after.
TTT_DEV void row_dots(float* out, const float* a, int lda, const float* b, int ldb, int rows, int n, bool accumulate) {
  const int warps = simt::threads() / 32;
  for (int i = simt::warp(); i < rows; i += warps) {
    float s = 0.f;
    for (int d = simt::lane(); d < n; d += 32) s = fmaf(a[i * lda + d], b[i * ldb + d], s);
    s = simt::group_sum<32>(s);
    if (simt::lane() == 0) out[i] = accumulate ? out[i] + s : s;
  }
}

// The leading dimension of a shared [rows, n] tile: n rounded up to odd, so that a column walked by
// consecutive lanes (rows) falls in distinct banks.
constexpr int odd_ld(int n) { return n | 1; }

// Shared memory carved into float arrays, each rounded up to 4 floats (16 bytes).
struct Carve {
  float* at;
  TTT_DEV float* take(int n) {
    float* r = at;
    at += (n + 3) & ~3;
    return r;
  }
};
// Floats a carve of these array sizes takes (host and device).
constexpr int carve_floats(int n) { return (n + 3) & ~3; }

}  // namespace ttt::cuda_impl::blk
