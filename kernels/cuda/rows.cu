// kernels/cuda/rows.cu — softmax / log-softmax, LayerNorm and RMSNorm, forward and backward, on
// contiguous rows `cols` wide (formulas as in kernels/cpu/rows.cpp).
//
// add_rms_norm (kernels/add_rms_norm.h) runs the RMSNorm kernels with the residual add fused in:
// the forward reads h and y and writes their sum as it takes the squares; the backward adds the
// residual's gradient to dx before storing it.
//
// gated_layer_norm (kernels/gated_layer_norm.h) runs the LayerNorm kernels with a gate read in:
// the forward multiplies the normalized row by gelu_tanh(gate); the backward multiplies dy by it
// before the LayerNorm's dx and parameter sums, and writes the gate's gradient in the same pass.
//
// The weight/bias gradients sum over rows: a column-tiled kernel writes per-chunk partial sums
// and a second kernel adds the chunks in a fixed order, so the result is deterministic.
#include "kernels/add_rms_norm.h"
#include "kernels/gated_layer_norm.h"
#include "kernels/scalar_math.h"
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/rows.cuh"

namespace ttt::cuda_impl {

namespace {

// y = exp(x - lse) (or x - lse for log-softmax): one pass for the online (max, sum), one to write.
template <class T, int VEC>
__global__ void __launch_bounds__(1024) softmax_fwd_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t rows,
                                                           int64_t cols, bool log) {
  using A = compute_t<T>;
  __shared__ A sm[32], ss[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    A m = -INFINITY, s = 0;  // online max and sum of exp(x - max)
    row_pass<VEC, 4, A>(xr, cols, [&](const A(&v)[VEC], int64_t) { online_max_sum_vec(m, s, v); });
    block_max_sum(m, s, sm, ss);
    const A lse = m + ::log(s);
    // Second read of the row: this block just read it, so it mostly comes from L2.
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A v[VEC];
      load_row<VEC>(v, xr, c);
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[j] = log ? v[j] - lse : ::exp(v[j] - lse);
      store_row<VEC>(yr, c, v);
    }
  }
}

// dx = y (dy - sum(dy y))   or, for log-softmax, dx = dy - exp(y) sum(dy)
template <class T, int VEC>
__global__ void __launch_bounds__(1024) softmax_bwd_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                                           const T* __restrict__ y, int64_t rows, int64_t cols,
                                                           bool log) {
  using A = compute_t<T>;
  __shared__ A sh[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *dyr = dy + r * cols, *yr = y + r * cols;
    A s = 0;
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A g[VEC], v[VEC];
      load_row<VEC>(g, dyr, c);
      load_row<VEC>(v, yr, c);
#pragma unroll
      for (int j = 0; j < VEC; ++j) s += log ? g[j] : g[j] * v[j];
    }
    s = block_sum(s, sh);
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A g[VEC], v[VEC];
      load_row<VEC>(g, dyr, c);
      load_row<VEC>(v, yr, c);
#pragma unroll
      for (int j = 0; j < VEC; ++j) g[j] = log ? g[j] - ::exp(v[j]) * s : v[j] * (g[j] - s);
      store_row<VEC>(dx + r * cols, c, g);
    }
  }
}

// a rounded to T and widened back (what a value stored as T and loaded again is).
template <class T, class A> __device__ __forceinline__ A round_to(A a) {
  return static_cast<A>(to_compute(from_compute<T>(static_cast<compute_t<T>>(a))));
}
// a + b, never contracted with a product that computed b into an FMA (so b is rounded first, as
// it is when it was stored before a separate add).
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// g *= gelu_tanh(gate[c..c+VEC)): the gradient reaching the norm's output through the gate.
template <int VEC, class A, class T>
__device__ __forceinline__ void gate_grad(A (&g)[VEC], const T* __restrict__ gate_row, int64_t c) {
  A gv[VEC];
  load_row<VEC>(gv, gate_row, c);
#pragma unroll
  for (int j = 0; j < VEC; ++j) g[j] *= smath::gelu_tanh(gv[j]);
}

// LayerNorm (rms = false) and RMSNorm (rms = true) forward; mean/rstd outputs optional.
// kAdd (RMSNorm only; add_rms_norm): the row normalized is x + res, computed and written to `sum`
// in the first pass (the squares are taken of the stored, rounded sums), and the second pass
// reads it back from `sum` (this thread's own writes, mostly from L2). The arithmetic and its
// order are the same as for an x that held the sum, so the results are those of add + rms_norm.
template <class T, int VEC, bool kAdd = false>
__global__ void __launch_bounds__(1024) norm_fwd_kernel(T* __restrict__ y, float* __restrict__ mean_out,
                                                        float* __restrict__ rstd_out, const T* __restrict__ x,
                                                        const T* __restrict__ w, const T* __restrict__ b,
                                                        int64_t rows, int64_t cols, double eps, bool rms,
                                                        const T* __restrict__ res = nullptr,
                                                        T* __restrict__ sum = nullptr,
                                                        const T* __restrict__ gate = nullptr,
                                                        bf16* __restrict__ low = nullptr) {
  using A = compute_t<T>;
  __shared__ A sh[32];
  const A inv_n = A(1) / static_cast<A>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    A mu = 0;
    A q = 0;  // sum of squares of the centred values (two passes: no cancellation)
    if constexpr (kAdd) {
      // The same per-thread order of columns as row_pass, so q is summed exactly as there.
      T* sr = sum + r * cols;
#pragma unroll 4
      for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
        A v[VEC], u[VEC];
        load_row<VEC>(v, xr, c);
        load_row<VEC>(u, res + r * cols, c);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] = round_to<T>(v[j] + u[j]);
        store_row<VEC>(sr, c, v);
#pragma unroll
        for (int j = 0; j < VEC; ++j) q += (v[j] - mu) * (v[j] - mu);
      }
      xr = sr;
    }
    if (!rms) {
      A s = 0;
      row_pass<VEC, 4, A>(xr, cols, [&](const A(&v)[VEC], int64_t) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) s += v[j];
      });
      mu = block_sum(s, sh) * inv_n;
    }
    if constexpr (!kAdd)
      row_pass<VEC, 4, A>(xr, cols, [&](const A(&v)[VEC], int64_t) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) q += (v[j] - mu) * (v[j] - mu);
      });
    const A rs = A(1) / ::sqrt(block_sum(q, sh) * inv_n + static_cast<A>(eps));
    if (threadIdx.x == 0) {
      if (mean_out) mean_out[r] = static_cast<float>(mu);
      if (rstd_out) rstd_out[r] = static_cast<float>(rs);
    }
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A v[VEC], wv[VEC], bv[VEC];
      load_row<VEC>(v, xr, c);
      load_row<VEC>(wv, w, c, A(1));
      load_row<VEC>(bv, b, c, A(0));
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[j] = (v[j] - mu) * rs * wv[j] + bv[j];
      if (gate) {  // gated_layer_norm: y = gelu_tanh(gate) · LN(x)
        A gv[VEC];
        load_row<VEC>(gv, gate + r * cols, c);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] *= smath::gelu_tanh(gv[j]);
      }
      store_row<VEC>(y + r * cols, c, v);
      if (low) store_row<VEC>(low + r * cols, c, v);  // float32 y: its bf16 rounding (T = float only)
    }
  }
}

// dx of LayerNorm / RMSNorm with g = dy * w, xhat = (x - mean) * rstd (mean = 0 for RMSNorm):
//   LayerNorm: dx = rstd (g - mean(g) - xhat mean(g xhat));  RMSNorm: dx = rstd (g - xhat mean(g xhat))
// kAdd (add_rms_norm's backward): writes dres + dx instead, dx rounded to T first, as the separate
// add of the stored dx would see it.
// gate (gated_layer_norm's backward): the norm's output was multiplied by gelu_tanh(gate), so dy
// is multiplied by it first; dgate (when non-null) = dy · (xhat w + b) · gelu_tanh'(gate). dx may
// then be null (not wanted).
template <class T, int VEC, bool kAdd = false>
__global__ void __launch_bounds__(1024) norm_bwd_dx_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                                           const T* __restrict__ x, const float* __restrict__ mean,
                                                           const float* __restrict__ rstd, const T* __restrict__ w,
                                                           int64_t rows, int64_t cols, bool rms,
                                                           const T* __restrict__ dres = nullptr,
                                                           const T* __restrict__ gate = nullptr,
                                                           const T* __restrict__ b = nullptr,
                                                           T* __restrict__ dgate = nullptr) {
  using A = compute_t<T>;
  __shared__ A sh[32];
  const A inv_n = A(1) / static_cast<A>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * cols, *dyr = dy + r * cols;
    const A mu = rms ? A(0) : static_cast<A>(mean[r]), rs = static_cast<A>(rstd[r]);
    A sg = 0, sgx = 0;
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A v[VEC], g[VEC], wv[VEC];
      load_row<VEC>(v, xr, c);
      load_row<VEC>(g, dyr, c);
      load_row<VEC>(wv, w, c, A(1));
      if (gate) gate_grad(g, gate + r * cols, c);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const A gj = g[j] * wv[j];
        sg += gj;
        sgx += gj * (v[j] - mu) * rs;
      }
    }
    sg = rms ? A(0) : block_sum(sg, sh) * inv_n;
    sgx = block_sum(sgx, sh) * inv_n;
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A v[VEC], g[VEC], wv[VEC];
      load_row<VEC>(v, xr, c);
      load_row<VEC>(g, dyr, c);
      load_row<VEC>(wv, w, c, A(1));
      if (gate) {
        A gv[VEC], bv[VEC];
        load_row<VEC>(gv, gate + r * cols, c);
        load_row<VEC>(bv, b, c, A(0));
        if (dgate) {
#pragma unroll
          for (int j = 0; j < VEC; ++j)
            gv[j] = g[j] * ((v[j] - mu) * rs * wv[j] + bv[j]) * smath::gelu_tanh_grad(gv[j]);
          store_row<VEC>(dgate + r * cols, c, gv);
          load_row<VEC>(gv, gate + r * cols, c);
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) g[j] *= smath::gelu_tanh(gv[j]);
      }
      if (!dx) continue;
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[j] = rs * (g[j] * wv[j] - sg - (v[j] - mu) * rs * sgx);
      if constexpr (kAdd) {
        load_row<VEC>(g, dres + r * cols, c);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] = add_rn(g[j], round_to<T>(v[j]));
      }
      store_row<VEC>(dx + r * cols, c, v);
    }
  }
}

// Partial column sums over a chunk of rows: dw += dy * xhat, db += dy. Block (32, 8): x walks
// 32 neighbouring columns (coalesced), y walks rows.
template <class T, class A>
__global__ void __launch_bounds__(256) norm_param_partial_kernel(A* __restrict__ pw, A* __restrict__ pb,
                                                                 const T* __restrict__ dy, const T* __restrict__ x,
                                                                 const float* __restrict__ mean,
                                                                 const float* __restrict__ rstd, int64_t rows,
                                                                 int64_t cols, int64_t rows_per_chunk,
                                                                 const T* __restrict__ gate = nullptr) {
  __shared__ A sw[8][33], sb[8][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  A aw = 0, ab = 0;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      A d = static_cast<A>(to_compute(dy[r * cols + c]));
      if (gate) d *= smath::gelu_tanh(static_cast<A>(to_compute(gate[r * cols + c])));
      const A mu = mean ? static_cast<A>(mean[r]) : A(0);
      aw += d * (static_cast<A>(to_compute(x[r * cols + c])) - mu) * static_cast<A>(rstd[r]);
      ab += d;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int i = 1; i < 8; ++i) {
      aw += sw[i][threadIdx.x];
      ab += sb[i][threadIdx.x];
    }
    pw[static_cast<int64_t>(blockIdx.y) * cols + c] = aw;
    if (pb) pb[static_cast<int64_t>(blockIdx.y) * cols + c] = ab;
  }
}

template <class A>
__global__ void norm_param_finish_kernel(float* __restrict__ dw, float* __restrict__ db, const A* __restrict__ pw,
                                         const A* __restrict__ pb, int64_t cols, int64_t chunks) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  A aw = 0, ab = 0;
  for (int64_t i = 0; i < chunks; ++i) {
    aw += pw[i * cols + c];
    if (pb) ab += pb[i * cols + c];
  }
  if (dw) dw[c] = static_cast<float>(aw);
  if (db) db[c] = static_cast<float>(ab);
}

}  // namespace

void CudaBackend::softmax_fwd(void* y, const void* x, int64_t rows, int64_t cols, DType dt, bool log) {
  if (rows == 0 || cols == 0) return;
  activate();
  dispatch_float(dt, "softmax", [&](auto tag) {
    using T = decltype(tag);
    dispatch_row_vec<T>(cols, {x, y}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(cols / V);
      softmax_fwd_kernel<T, V><<<row_grid(rows, threads, sm_count_), threads, 0, stream_>>>(
          static_cast<T*>(y), static_cast<const T*>(x), rows, cols, log);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void CudaBackend::softmax_bwd(void* dx, const void* dy, const void* y, int64_t rows, int64_t cols, DType dt,
                              bool log) {
  if (rows == 0 || cols == 0) return;
  activate();
  dispatch_float(dt, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_row_vec<T>(cols, {dx, dy, y}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(cols / V);
      softmax_bwd_kernel<T, V><<<row_grid(rows, threads, sm_count_), threads, 0, stream_>>>(
          static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(y), rows, cols, log);
      CUDA_CHECK_LAUNCH();
    });
  });
}

namespace {
// Launches the forward of either norm (LayerNorm subtracts the mean and adds the bias, RMSNorm
// does neither; one kernel with a block-uniform flag serves both). With `sum` (RMSNorm only) the
// row normalized is x + res, written to `sum` (add_rms_norm). With `gate`, y is multiplied by
// gelu_tanh(gate) (gated_layer_norm).
// With `low` (float32 data), y's bf16 rounding is written there too.
template <class T>
void norm_fwd(CudaBackend& be, void* y, float* mean, float* rstd, const void* x, const void* w, const void* b,
              int64_t rows, int64_t cols, double eps, bool rms, const void* res = nullptr, void* sum = nullptr,
              const void* gate = nullptr, void* low = nullptr) {
  dispatch_row_vec<T>(cols, {y, x, w, b, res, sum, gate, low}, [&](auto vec) {
    constexpr int V = decltype(vec)::value;
    const int threads = row_threads(cols / V);
    const auto kernel = sum ? norm_fwd_kernel<T, V, true> : norm_fwd_kernel<T, V, false>;
    kernel<<<row_grid(rows, threads, be.sm_count()), threads, 0, be.stream()>>>(
        static_cast<T*>(y), mean, rstd, static_cast<const T*>(x), static_cast<const T*>(w),
        static_cast<const T*>(b), rows, cols, eps, rms, static_cast<const T*>(res), static_cast<T*>(sum),
        static_cast<const T*>(gate), static_cast<bf16*>(low));
    CUDA_CHECK_LAUNCH();
  });
}

// dx (when dx is non-null) and the parameter gradients dw/db (when non-null) of either norm.
// With `dres`, dx is dres + the norm's dx (add_rms_norm's backward). With `gate` (LayerNorm),
// the output was gated by gelu_tanh(gate): dy is multiplied by it, and dgate (when non-null) is
// written too (gated_layer_norm's backward; b is the norm's bias).
struct NormGate {
  const void* gate = nullptr;
  const void* b = nullptr;
  void* dgate = nullptr;
};
template <class T>
void norm_bwd(CudaBackend& be, void* dx, float* dw, float* db, const void* dy, const void* x, const float* mean,
              const float* rstd, const void* w, int64_t rows, int64_t cols, bool rms, const void* dres = nullptr,
              const NormGate& gt = {}) {
  if (dx || gt.dgate) {
    dispatch_row_vec<T>(cols, {dx, dy, x, w, dres, gt.gate, gt.b, gt.dgate}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(cols / V);
      const auto kernel = dres ? norm_bwd_dx_kernel<T, V, true> : norm_bwd_dx_kernel<T, V, false>;
      kernel<<<row_grid(rows, threads, be.sm_count()), threads, 0, be.stream()>>>(
          static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(x), mean, rstd,
          static_cast<const T*>(w), rows, cols, rms, static_cast<const T*>(dres), static_cast<const T*>(gt.gate),
          static_cast<const T*>(gt.b), static_cast<T*>(gt.dgate));
      CUDA_CHECK_LAUNCH();
    });
  }
  if (!dw && !db) return;
  // Parameter gradients accumulate in the compute type (double for f64) and are written as
  // float32, as the interface asks.
  using A = compute_t<T>;
  const int64_t col_tiles = ceil_div(cols, 32);
  const int64_t chunks = column_sum_chunks(rows, cols, be.sm_count());
  const int64_t rows_per_chunk = ceil_div(rows, chunks);
  CudaBackend::Scratch pw(be, static_cast<size_t>(chunks * cols) * sizeof(A));
  CudaBackend::Scratch pb(be, db ? static_cast<size_t>(chunks * cols) * sizeof(A) : 0);
  norm_param_partial_kernel<T, A>
      <<<dim3(static_cast<unsigned>(col_tiles), static_cast<unsigned>(chunks)), dim3(32, 8), 0, be.stream()>>>(
          pw.as<A>(), pb.as<A>(), static_cast<const T*>(dy), static_cast<const T*>(x), rms ? nullptr : mean, rstd,
          rows, cols, rows_per_chunk, static_cast<const T*>(gt.gate));
  CUDA_CHECK_LAUNCH();
  norm_param_finish_kernel<A><<<static_cast<unsigned>(ceil_div(cols, kThreads)), kThreads, 0, be.stream()>>>(
      dw, db, pw.as<A>(), pb.as<A>(), cols, chunks);
  CUDA_CHECK_LAUNCH();
}
}  // namespace

void CudaBackend::layer_norm_fwd(void* y, float* mean, float* rstd, const void* x, const void* w, const void* b,
                                 int64_t rows, int64_t cols, double eps, DType dt) {
  if (rows == 0 || cols == 0) return;
  activate();
  dispatch_float(dt, "layer_norm", [&](auto tag) {
    norm_fwd<decltype(tag)>(*this, y, mean, rstd, x, w, b, rows, cols, eps, false);
  });
}

void CudaBackend::layer_norm_bwd(void* dx, float* dw, float* db, const void* dy, const void* x, const float* mean,
                                 const float* rstd, const void* w, int64_t rows, int64_t cols, DType dt) {
  if (cols == 0) return;
  activate();
  dispatch_float(dt, "layer_norm backward", [&](auto tag) {
    norm_bwd<decltype(tag)>(*this, rows ? dx : nullptr, dw, db, dy, x, mean, rstd, w, rows, cols, false);
  });
}

void CudaBackend::rms_norm_fwd(void* y, float* rstd, const void* x, const void* w, int64_t rows, int64_t cols,
                               double eps, DType dt) {
  if (rows == 0 || cols == 0) return;
  activate();
  dispatch_float(dt, "rms_norm", [&](auto tag) {
    norm_fwd<decltype(tag)>(*this, y, nullptr, rstd, x, w, nullptr, rows, cols, eps, true);
  });
}

void CudaBackend::rms_norm_bwd(void* dx, float* dw, const void* dy, const void* x, const float* rstd, const void* w,
                               int64_t rows, int64_t cols, DType dt) {
  if (cols == 0) return;
  activate();
  dispatch_float(dt, "rms_norm backward", [&](auto tag) {
    norm_bwd<decltype(tag)>(*this, rows ? dx : nullptr, dw, nullptr, dy, x, nullptr, rstd, w, rows, cols, true);
  });
}

// --- add_rms_norm (kernels/add_rms_norm.h): the RMSNorm kernels above with the residual add fused --

void add_rms_norm_forward(Backend& be0, AddRmsNormForward& c) {
  if (c.rows == 0 || c.cols == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "add_rms_norm");
  if (c.n_low && c.dtype != DType::f32) throw std::invalid_argument("add_rms_norm: n_low needs float32 data");
  dispatch_float(c.dtype, "add_rms_norm", [&](auto tag) {
    norm_fwd<decltype(tag)>(be, c.n, nullptr, c.rstd, c.h, c.w, nullptr, c.rows, c.cols, c.eps, true, c.y, c.s,
                            nullptr, c.n_low);
  });
}

void add_rms_norm_backward(Backend& be0, AddRmsNormBackward& c) {
  if (c.cols == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "add_rms_norm");
  dispatch_float(c.dtype, "add_rms_norm backward", [&](auto tag) {
    norm_bwd<decltype(tag)>(be, c.rows ? c.dsum : nullptr, c.dw, nullptr, c.dn, c.s, nullptr, c.rstd, c.w, c.rows,
                            c.cols, true, c.ds);
  });
}

// --- gated_layer_norm (kernels/gated_layer_norm.h): the LayerNorm kernels above with the gate ---

void gated_layer_norm_forward(Backend& be0, GatedLayerNormForward& c) {
  if (c.rows == 0 || c.cols == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "gated_layer_norm");
  dispatch_float(c.dtype, "gated_layer_norm", [&](auto tag) {
    norm_fwd<decltype(tag)>(be, c.y, c.mean, c.rstd, c.z, c.w, c.b, c.rows, c.cols, c.eps, false, nullptr, nullptr,
                            c.g);
  });
}

void gated_layer_norm_backward(Backend& be0, GatedLayerNormBackward& c) {
  if (c.cols == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "gated_layer_norm");
  dispatch_float(c.dtype, "gated_layer_norm backward", [&](auto tag) {
    norm_bwd<decltype(tag)>(be, c.rows ? c.dz : nullptr, c.dw, c.db, c.dy, c.z, c.mean, c.rstd, c.w, c.rows, c.cols,
                            false, nullptr, NormGate{c.g, c.b, c.rows ? c.dg : nullptr});
  });
}

}  // namespace ttt::cuda_impl
