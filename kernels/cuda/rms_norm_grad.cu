// kernels/cuda/rms_norm_grad.cu — RMSNorm's double backward on the GPU (math: kernels/rms_norm_grad.h;
// reference: kernels/cpu/rms_norm_grad.cpp; test: tests/test_rms_norm_grad.cpp). One block per row,
// as the norm kernels of rows.cu (plumbing: rows.cuh), four passes over the row (the later ones
// from L1/L2): Σ x²; mean(g x̂), Σ Gx x̂, Σ Gx g; h and Σ h x̂; the outputs. Compute type float for
// float32 / bfloat16 data, double for float64. gw: each row's q · dy goes to a scratch [rows, cols]
// in the compute type, summed over chunks of rows and then over the chunks in order (no atomics:
// runs reproduce bit for bit).
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/rows.cuh"
#include "kernels/rms_norm_grad.h"

namespace ttt::cuda_impl {

namespace {

// The call's pointers for the kernels (RmsNormGradBackward has a vtable: not a kernel argument).
template <class T> struct Args {
  const T *dy, *x, *w, *gdx, *gdw;
  T *gdy, *gx;
  int64_t rows, cols;
  double eps;
};

template <class T, int VEC>
__global__ void __launch_bounds__(1024) rms_norm_grad_kernel(Args<T> a, compute_t<T>* __restrict__ t) {
  using A = compute_t<T>;
  __shared__ A sh[32];
  const int64_t cols = a.cols;
  const A inv_n = A(1) / static_cast<A>(cols);
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T *xr = a.x + r * cols, *dyr = a.dy + r * cols, *gr = a.gdx ? a.gdx + r * cols : nullptr;
    A ss = 0;
    row_pass<VEC, 4, A>(xr, cols, [&](const A(&v)[VEC], int64_t) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) ss += v[j] * v[j];
    });
    const A rs = A(1) / ::sqrt(block_sum(ss, sh) * inv_n + static_cast<A>(a.eps));
    // f(x, dy, w, Gx, Gw, c) for each VEC-wide vector of the row (w = 1, Gx and Gw = 0 where absent).
    const auto columns = [&](auto&& f) {
#pragma unroll 4
      for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
        A xv[VEC], d[VEC], wv[VEC], G[VEC], gw[VEC];
        load_row<VEC>(xv, xr, c);
        load_row<VEC>(d, dyr, c);
        load_row<VEC>(wv, a.w, c, A(1));
        load_row<VEC>(G, gr, c);
        load_row<VEC>(gw, a.gdw, c);
        f(xv, d, wv, G, gw, c);
      }
    };
    using Vec = A[VEC];
    A m = 0, sa = 0, sb = 0;  // Σ g x̂ (then its mean), Σ Gx x̂, Σ Gx g
    columns([&](const Vec& xv, const Vec& d, const Vec& wv, const Vec& G, const Vec&, int64_t) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const A g = d[j] * wv[j], xh = xv[j] * rs;
        m += g * xh;
        sa += G[j] * xh;
        sb += G[j] * g;
      }
    });
    m = block_sum(m, sh) * inv_n;
    sa = block_sum(sa, sh);
    sb = block_sum(sb, sh);
    const A rho = sb - m * sa;
    // h = ∂L/∂x̂ with r held fixed; its value per column is formed again in the last pass.
    const auto h_of = [&](A g, A G, A gw, A d) { return -rs * (sa * g * inv_n + m * G) + gw * d; };
    A shx = 0;
    columns([&](const Vec& xv, const Vec& d, const Vec& wv, const Vec& G, const Vec& gw, int64_t) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) shx += h_of(d[j] * wv[j], G[j], gw[j], d[j]) * xv[j] * rs;
    });
    shx = block_sum(shx, sh);
    const A coef = (shx + rs * rho) * inv_n;
    columns([&](const Vec& xv, const Vec& d, const Vec& wv, const Vec& G, const Vec& gw, int64_t c) {
      A q[VEC], gdy[VEC], gx[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const A xh = xv[j] * rs;
        q[j] = rs * (G[j] - sa * xh * inv_n);  // ∂L/∂g
        gdy[j] = q[j] * wv[j] + gw[j] * xh;
        gx[j] = rs * (h_of(d[j] * wv[j], G[j], gw[j], d[j]) - xh * coef);
      }
      if (a.gdy) store_row<VEC>(a.gdy + r * cols, c, gdy);
      if (a.gx) store_row<VEC>(a.gx + r * cols, c, gx);
      if (t)
#pragma unroll
        for (int j = 0; j < VEC; ++j) t[r * cols + c + j] = q[j] * d[j];
    });
  }
}

// Column sums of t [rows, cols] over chunks of rows_per_chunk rows: part[chunk][c]. Block (32, 8):
// x walks 32 neighbouring columns (coalesced), y the rows; the 8 row lanes are added in order.
template <class A>
__global__ void __launch_bounds__(256) column_partial_kernel(A* __restrict__ part, const A* __restrict__ t, int64_t rows,
                                                              int64_t cols, int64_t rows_per_chunk) {
  __shared__ A s[8][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  A acc = 0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += t[r * cols + c];
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int i = 1; i < 8; ++i) acc += s[i][threadIdx.x];
    part[static_cast<int64_t>(blockIdx.y) * cols + c] = acc;
  }
}

template <class T, class A>
__global__ void column_finish_kernel(T* __restrict__ out, const A* __restrict__ part, int64_t cols, int64_t chunks) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  A acc = 0;
  for (int64_t i = 0; i < chunks; ++i) acc += part[i * cols + c];
  out[c] = from_compute<T>(static_cast<compute_t<T>>(acc));
}

}  // namespace

void rms_norm_grad_backward(Backend& be0, RmsNormGradBackward& c) {
  if (c.rows == 0 || c.cols == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "rms_norm double backward");
  dispatch_float(c.dtype, "rms_norm double backward", [&](auto tag) {
    using T = decltype(tag);
    using A = compute_t<T>;
    const bool want_gw = c.gw && c.w;
    CudaBackend::Scratch t(be, want_gw ? static_cast<size_t>(c.rows * c.cols) * sizeof(A) : 0);
    const Args<T> a{static_cast<const T*>(c.dy), static_cast<const T*>(c.x), static_cast<const T*>(c.w),
                    static_cast<const T*>(c.gdx), static_cast<const T*>(c.gdw), static_cast<T*>(c.gdy),
                    static_cast<T*>(c.gx), c.rows, c.cols, c.eps};
    dispatch_row_vec<T>(c.cols, {c.dy, c.x, c.w, c.gdx, c.gdw, c.gdy, c.gx}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(c.cols / V);
      rms_norm_grad_kernel<T, V><<<row_grid(c.rows, threads, be.sm_count()), threads, 0, be.stream()>>>(
          a, want_gw ? t.as<A>() : nullptr);
      CUDA_CHECK_LAUNCH();
    });
    if (!want_gw) return;
    const int64_t col_tiles = ceil_div(c.cols, 32);
    const int64_t chunks = column_sum_chunks(c.rows, c.cols, be.sm_count());  // as rows.cu's norms
    const int64_t rows_per_chunk = ceil_div(c.rows, chunks);
    CudaBackend::Scratch part(be, static_cast<size_t>(chunks * c.cols) * sizeof(A));
    column_partial_kernel<A><<<dim3(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks)), dim3(32, 8), 0,
                               be.stream()>>>(part.as<A>(), t.as<A>(), c.rows, c.cols, rows_per_chunk);
    CUDA_CHECK_LAUNCH();
    column_finish_kernel<T, A><<<static_cast<unsigned>(ceil_div(c.cols, kThreads)), kThreads, 0, be.stream()>>>(
        static_cast<T*>(c.gw), part.as<A>(), c.cols, chunks);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ttt::cuda_impl
