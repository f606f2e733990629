// kernels/cuda/rows.cuh — shared plumbing of the fused row kernels (rows.cu, cross_entropy.cu):
// one block per row (grid-stride over rows), the row read with 16-byte vectors when its width
// and pointers allow, statistics reduced with warp shuffles. Math is float for f32/bf16 storage
// and double for f64. The column loops are unrolled (#pragma unroll 4) so each thread keeps
// several 16-byte loads in flight: with one load at a time these kernels are latency-bound
// (measured on an H100: cross-entropy forward at ~1 TB/s).
#pragma once

#include "kernels/cuda/cuda_common.cuh"

namespace ttt::cuda_impl {

// Threads per row: about four vectors per thread, between one warp and 1024 threads.
inline int row_threads(int64_t cols_vec) {
  return static_cast<int>(std::clamp<int64_t>(next_pow2(ceil_div(cols_vec, 4)), 32, 1024));
}
inline unsigned row_grid(int64_t rows, int threads, int sm_count) {
  return static_cast<unsigned>(std::min<int64_t>(rows, int64_t{sm_count} * (2048 / threads)));
}

// Column sums over rows (norm weight gradients) go as per-chunk partials over tiles of 32 columns,
// then a sum over the chunks in order (deterministic): enough row chunks to give every SM several
// blocks, each chunk at least 32 rows, at most the grid's y limit.
inline int64_t column_sum_chunks(int64_t rows, int64_t cols, int sm_count) {
  return std::max<int64_t>(
      1, std::min<int64_t>({ceil_div(int64_t{sm_count} * 8, ceil_div(cols, 32)), ceil_div(rows, 32), 65535}));
}

// Calls f(VEC_tag) with the widest vector width usable for rows of `cols` elements of T whose
// base pointers are `ptrs` (null pointers are ignored).
template <class T, class F> void dispatch_row_vec(int64_t cols, std::initializer_list<const void*> ptrs, F&& f) {
  constexpr int V = 16 / sizeof(T);
  bool ok = cols % V == 0;
  for (const void* p : ptrs) ok = ok && (p == nullptr || is_aligned(p, 16));
  if (ok) f(std::integral_constant<int, V>{});
  else f(std::integral_constant<int, 1>{});
}

// Loads VEC elements at p[c..c+VEC) widened to A (p may be null: then `dflt`).
template <int VEC, class A, class T> __device__ __forceinline__ void load_row(A (&out)[VEC], const T* p, int64_t c,
                                                                              A dflt = A(0)) {
  if (p == nullptr) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = dflt;
    return;
  }
  const Vec<T, VEC> v = load_vec<VEC>(p + c);
#pragma unroll
  for (int j = 0; j < VEC; ++j) out[j] = static_cast<A>(to_compute(v.v[j]));
}
template <int VEC, class A, class T> __device__ __forceinline__ void store_row(T* p, int64_t c, const A (&in)[VEC]) {
  Vec<T, VEC> v;
#pragma unroll
  for (int j = 0; j < VEC; ++j) v.v[j] = from_compute<T>(static_cast<compute_t<T>>(in[j]));
  store_vec<VEC>(p + c, v);
}

// One pass over a row of `cols` values of p: f(v, c) for each VEC-wide vector v at column c.
// U vectors per thread are loaded before any is used, so U loads are in flight at once.
template <int VEC, int U, class A, class T, class F>
__device__ __forceinline__ void row_pass(const T* __restrict__ p, int64_t cols, F&& f) {
  const int64_t step = static_cast<int64_t>(blockDim.x) * VEC;
  int64_t c = static_cast<int64_t>(threadIdx.x) * VEC;
  for (; c + (U - 1) * step < cols; c += U * step) {
    A v[U][VEC];
#pragma unroll
    for (int u = 0; u < U; ++u) load_row<VEC>(v[u], p, c + u * step);
#pragma unroll
    for (int u = 0; u < U; ++u) f(v[u], c + u * step);
  }
  for (; c < cols; c += step) {
    A v[VEC];
    load_row<VEC>(v, p, c);
    f(v, c);
  }
}

// Adds VEC values to a running (max m, sum s of exp(x - m)) pair: the vector's max first, then
// one exp per value (no per-element branch). -inf values add nothing; NaN makes s NaN.
template <int VEC, class A> __device__ __forceinline__ void online_max_sum_vec(A& m, A& s, const A (&v)[VEC]) {
  A cm = v[0];
#pragma unroll
  for (int j = 1; j < VEC; ++j) cm = v[j] > cm ? v[j] : cm;
  if (cm > m) {
    s *= exp(m - cm);  // exp(-inf) = 0 on the first finite value
    m = cm;
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) s += v[j] == -INFINITY ? A(0) : exp(v[j] - m);
}

}  // namespace ttt::cuda_impl
