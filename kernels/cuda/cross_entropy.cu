// kernels/cuda/cross_entropy.cu — per-row cross-entropy on logits rows (vocabulary-wide, e.g.
// 32000 columns): one block per row, the logsumexp in a single pass with an online (max, sum)
// pair, then loss = lse - x[target] (0 for ignore_index rows). The backward writes
// dloss * (softmax(x) - onehot(target)) from the saved lse without a second reduction.
// A target outside [0, cols) is reported through the backend's error slot (raised at the next
// synchronization), and its row's loss is NaN.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/rows.cuh"

namespace ttt::cuda_impl {

namespace {

template <class T, int VEC>
__global__ void __launch_bounds__(1024) cross_entropy_fwd_kernel(float* __restrict__ loss, float* __restrict__ lse_out,
                                                                 const T* __restrict__ x,
                                                                 const int64_t* __restrict__ targets, int64_t rows,
                                                                 int64_t cols, int64_t ignore_index,
                                                                 DeviceError* err) {
  using A = compute_t<T>;
  __shared__ A sm[32], ss[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    // Thread 0 fetches the target and its logit first, so their latency overlaps the row pass.
    int64_t t = 0;
    A xt = 0;
    if (threadIdx.x == 0) {
      t = targets[r];
      if (t != ignore_index && t >= 0 && t < cols) xt = static_cast<A>(to_compute(xr[t]));
    }
    A m = -INFINITY, s = 0;
    row_pass<VEC, 4, A>(xr, cols, [&](const A(&v)[VEC], int64_t) { online_max_sum_vec(m, s, v); });
    block_max_sum(m, s, sm, ss);
    if (threadIdx.x == 0) {
      const A lse = m + ::log(s);
      lse_out[r] = static_cast<float>(lse);
      if (t == ignore_index) {
        loss[r] = 0.0f;
      } else if (t < 0 || t >= cols) {
        report_error(err, kErrCrossEntropy, t, cols);
        loss[r] = NAN;
      } else {
        loss[r] = static_cast<float>(lse - xt);
      }
    }
  }
}

// Elementwise once lse is known: dlogits = dloss * (exp(x - lse) - [c == target]), written as O
// (T, or bf16 for float32 logits: the float32 value rounded once, as a cast of it would be).
template <class T, class O, int VEC>
__global__ void __launch_bounds__(1024) cross_entropy_bwd_kernel(O* __restrict__ dx, const float* __restrict__ dloss,
                                                                 const T* __restrict__ x,
                                                                 const float* __restrict__ lse,
                                                                 const int64_t* __restrict__ targets, int64_t rows,
                                                                 int64_t cols, int64_t ignore_index) {
  using A = compute_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    O* dr = dx + r * cols;
    const int64_t t = targets[r];
    const bool ignored = t == ignore_index;
    const A g = ignored ? A(0) : static_cast<A>(dloss[r]), l = static_cast<A>(lse[r]);
#pragma unroll 4
    for (int64_t c = threadIdx.x * VEC; c < cols; c += blockDim.x * VEC) {
      A v[VEC];
      load_row<VEC>(v, xr, c);
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        v[j] = ignored ? A(0) : g * (::exp(v[j] - l) - (c + j == t ? A(1) : A(0)));
      store_row<VEC>(dr, c, v);
    }
  }
}

}  // namespace

void CudaBackend::cross_entropy_fwd(float* loss, float* lse, const void* logits, const int64_t* targets,
                                    int64_t rows, int64_t cols, int64_t ignore_index, DType dt) {
  if (rows == 0) return;
  activate();
  dispatch_float(dt, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    dispatch_row_vec<T>(cols, {logits}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(cols / V);
      cross_entropy_fwd_kernel<T, V><<<row_grid(rows, threads, sm_count_), threads, 0, stream_>>>(
          loss, lse, static_cast<const T*>(logits), targets, rows, cols, ignore_index, error_dev_);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void CudaBackend::cross_entropy_bwd(void* dlogits, const float* dloss, const void* logits, const float* lse,
                                    const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index,
                                    DType dt, DType dx_dt) {
  check_dlogits_dtype(dt, dx_dt);
  if (rows == 0 || cols == 0) return;
  activate();
  const auto launch = [&](auto tag, auto out_tag) {
    using T = decltype(tag);
    using O = decltype(out_tag);
    // The vector width of T; O's rows then hold VEC values of 2 or 4 bytes at 8- or 16-byte steps.
    dispatch_row_vec<T>(cols, {dlogits, logits}, [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const int threads = row_threads(cols / V);
      cross_entropy_bwd_kernel<T, O, V><<<row_grid(rows, threads, sm_count_), threads, 0, stream_>>>(
          static_cast<O*>(dlogits), dloss, static_cast<const T*>(logits), lse, targets, rows, cols, ignore_index);
      CUDA_CHECK_LAUNCH();
    });
  };
  if (dx_dt != dt) return launch(float{}, bf16{});
  dispatch_float(dt, "cross_entropy backward", [&](auto tag) { launch(tag, tag); });
}

}  // namespace ttt::cuda_impl
