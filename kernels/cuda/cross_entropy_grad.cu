// kernels/cuda/cross_entropy_grad.cu — cross-entropy's double backward on the GPU (math:
// kernels/cross_entropy_grad.h; reference: kernels/cpu/cross_entropy_grad.cpp; test:
// tests/test_cross_entropy_grad.cpp). One block per row, as the cross-entropy kernels (plumbing:
// rows.cuh): the row's logsumexp (online max and sum), s = Σ G p, then gx; gw by thread 0.
#include "kernels/cross_entropy_grad.h"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/rows.cuh"

namespace ttt::cuda_impl {

namespace {

template <class T, int VEC>
__global__ void __launch_bounds__(1024) cross_entropy_grad_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                                  const int64_t* __restrict__ targets,
                                                                  const T* __restrict__ G, T* __restrict__ gx,
                                                                  T* __restrict__ gw, int64_t rows, int64_t cols,
                                                                  int64_t ignore_index) {
  using A = compute_t<T>;
  __shared__ A sm[32], ss[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * cols, *gr = G + r * cols;
    const int64_t t = targets[r];
    if (t == ignore_index) {  // the whole block takes this branch
      if (gx)
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) gx[r * cols + c] = from_compute<T>(compute_t<T>(0));
      if (gw && threadIdx.x == 0) gw[r] = from_compute<T>(compute_t<T>(0));
      continue;
    }
    A m = -INFINITY, z = 0;
    row_pass<VEC, 4, A>(xr, cols, [&](const A(&v)[VEC], int64_t) { online_max_sum_vec(m, z, v); });
    block_max_sum(m, z, sm, ss);
    const A lse = m + ::log(z);
    // f(p, G, c) for each VEC-wide vector of the row: p = softmax(x) there, G the upstream gradient.
    const auto columns = [&](auto&& f) {
#pragma unroll 4
      for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
        A p[VEC], g[VEC];
        load_row<VEC>(p, xr, c);
        load_row<VEC>(g, gr, c);
#pragma unroll
        for (int j = 0; j < VEC; ++j) p[j] = ::exp(p[j] - lse);
        f(p, g, c);
      }
    };
    using Vec = A[VEC];
    A s = 0;
    columns([&](const Vec& p, const Vec& g, int64_t) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) s += g[j] * p[j];
    });
    s = block_sum(s, sm);
    if (gw && threadIdx.x == 0) gw[r] = from_compute<T>(static_cast<compute_t<T>>(s - static_cast<A>(to_compute(gr[t]))));
    if (!gx) continue;
    const A wr = static_cast<A>(to_compute(w[r]));
    columns([&](const Vec& p, const Vec& g, int64_t c) {
      A out[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) out[j] = wr * p[j] * (g[j] - s);
      store_row<VEC>(gx + r * cols, c, out);
    });
  }
}

}  // namespace

void cross_entropy_grad_backward(Backend& be0, CrossEntropyGradBackward& c) {
  if (c.rows == 0 || c.classes == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "cross_entropy double backward");
  dispatch_float(c.dtype, "cross_entropy double backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_row_vec<T>(c.classes, {c.x, c.g, c.gx}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(c.classes / V);
      cross_entropy_grad_kernel<T, V><<<row_grid(c.rows, threads, be.sm_count()), threads, 0, be.stream()>>>(
          static_cast<const T*>(c.x), static_cast<const T*>(c.w), c.targets, static_cast<const T*>(c.g),
          static_cast<T*>(c.gx), static_cast<T*>(c.gw), c.rows, c.classes, c.ignore_index);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace ttt::cuda_impl
