// kernels/cuda/reduce.cu — sum / max / min / sum_sq over any set of dims, argmax, cumsum.
//
// reduce: the input is split into kept dims (one output each) and reduced dims, each set
// coalesced, the reduced dims ordered so the fastest-moving one has the smallest stride. A group
// of "lanes" reduces one output:
//   - row mode (the reduced dims are the dense inner ones, e.g. sum over the last dim): lanes
//     along threadIdx.x read consecutive elements;
//   - column mode (the kept dims are the dense inner ones, e.g. a bias gradient summed over
//     rows): consecutive threads own consecutive outputs, lanes along threadIdx.y split the rows.
// When there are too few outputs to fill the GPU, the reduced range is split over gridDim.y and
// partial results (in the accumulation type) are combined by a second, deterministic kernel.
// Accumulation: float for f32/bf16, double for f64, int64 for integers. max/min propagate NaN.
#include <cfloat>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ttt::cuda_impl {

namespace {

template <class A> __device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return v != v;
  else return false;
}
template <class A> __device__ __forceinline__ A reduce_init(ReduceOp op) {
  // As on the CPU: floating max/min start at -inf/+inf (so a max over all -inf is -inf).
  if (op == ReduceOp::max) {
    if constexpr (std::is_same_v<A, float>) return -INFINITY;
    else if constexpr (std::is_same_v<A, double>) return -static_cast<double>(INFINITY);
    else return INT64_MIN;
  }
  if (op == ReduceOp::min) {
    if constexpr (std::is_same_v<A, float>) return INFINITY;
    else if constexpr (std::is_same_v<A, double>) return static_cast<double>(INFINITY);
    else return INT64_MAX;
  }
  return A(0);
}
template <class A> __device__ __forceinline__ A reduce_combine(ReduceOp op, A a, A b) {
  switch (op) {
    case ReduceOp::max: return (b > a || is_nan(b)) ? b : a;  // once NaN, stays NaN
    case ReduceOp::min: return (b < a || is_nan(b)) ? b : a;
    default: return a + b;
  }
}

// One output per group of lanes; gridDim.y splits the reduced range (partials when > 1).
template <class T, class A>
__global__ void __launch_bounds__(1024) reduce_kernel(ReduceOp op, const T* __restrict__ in, T* __restrict__ out,
                                                      A* __restrict__ partial, ReduceGeom g, bool row_mode,
                                                      int64_t r_chunk) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  const int lane = row_mode ? threadIdx.x : threadIdx.y;
  const int nlanes = row_mode ? blockDim.x : blockDim.y;
  const int64_t k = row_mode ? static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y
                             : static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * r_chunk;
  const int64_t r1 = r0 + r_chunk < g.R ? r0 + r_chunk : g.R;
  A acc = reduce_init<A>(op);
  int64_t in_off = 0, out_off = 0;
  auto add = [&](T x) {
    const A v = static_cast<A>(to_compute(x));
    acc = op == ReduceOp::sum_sq ? square_add(acc, v) : reduce_combine(op, acc, v);
  };
  if (k < g.K) {
    g.kept_offsets(k, in_off, out_off);
    int64_t r = r0 + lane;
    if (g.nr == 1) {
      // One reduced dim: no division, and four independent loads in flight per step.
      const T* p = in + in_off;
      const int64_t st = g.rin[0];
      for (; r + 3 * nlanes < r1; r += 4 * nlanes) {
        const T x0 = p[r * st], x1 = p[(r + nlanes) * st], x2 = p[(r + 2 * nlanes) * st],
                x3 = p[(r + 3 * nlanes) * st];
        add(x0);
        add(x1);
        add(x2);
        add(x3);
      }
    }
    for (; r < r1; r += nlanes) add(in[in_off + g.reduced_offset(r)]);
  }
  if (row_mode) {
    // Lanes are threadIdx.x (a power of two >= 32): shuffles within each warp, then the warps of
    // one output through shared memory.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc = reduce_combine(op, acc, __shfl_xor_sync(0xffffffffu, acc, o));
    const int nwarps = nlanes >> 5;
    if (nwarps > 1) {
      if ((lane & 31) == 0) smem[threadIdx.y * 32 + (lane >> 5)] = acc;
      __syncthreads();
      if (lane < 32) {
        acc = lane < nwarps ? smem[threadIdx.y * 32 + lane] : reduce_init<A>(op);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc = reduce_combine(op, acc, __shfl_xor_sync(0xffffffffu, acc, o));
      }
    }
  } else {
    // Lanes are threadIdx.y (at most 16): a tree in shared memory.
    smem[lane * blockDim.x + threadIdx.x] = acc;
    __syncthreads();
    for (int s = nlanes / 2; s > 0; s >>= 1) {
      if (lane < s)
        smem[lane * blockDim.x + threadIdx.x] =
            reduce_combine(op, smem[lane * blockDim.x + threadIdx.x], smem[(lane + s) * blockDim.x + threadIdx.x]);
      __syncthreads();
    }
    acc = smem[threadIdx.x];
  }
  if (lane == 0 && k < g.K) {
    if (gridDim.y == 1) out[out_off] = from_compute<T>(static_cast<compute_t<T>>(acc));
    else partial[static_cast<int64_t>(blockIdx.y) * g.K + k] = acc;
  }
}

// Second stage of split reductions: one thread per output adds the splits in order, so the
// result does not depend on which block finished first.
template <class T, class A>
__global__ void reduce_finish_kernel(ReduceOp op, const A* __restrict__ partial, int splits, T* __restrict__ out,
                                     ReduceGeom g) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= g.K) return;
  A acc = reduce_init<A>(op);
  for (int s = 0; s < splits; ++s) acc = reduce_combine(op, acc, partial[static_cast<int64_t>(s) * g.K + k]);
  int64_t in_off, out_off;
  g.kept_offsets(k, in_off, out_off);
  out[out_off] = from_compute<T>(static_cast<compute_t<T>>(acc));
}

// --- argmax: one warp per output ---------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(256) argmax_kernel(const T* __restrict__ in, int64_t* __restrict__ out,
                                                     OffsetCalc<2> outer, int64_t K, int64_t n, int64_t st) {
  const int lane = threadIdx.x & 31;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (k >= K) return;
  int64_t off[2];
  outer.get64(k, off);
  const T* x = in + off[1];
  // CPU semantics: the first strict maximum scanning forward from x[0]; NaNs never win, and a
  // NaN at x[0] wins outright (nothing compares greater than it).
  using C = compute_t<T>;
  C bv = C(0);
  int64_t bi = -1;
  for (int64_t i = lane; i < n; i += 32) {
    const C v = to_compute(x[i * st]);
    if (!is_nan(v) && (bi < 0 || v > bv)) {
      bv = v;
      bi = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const C v2 = __shfl_xor_sync(0xffffffffu, bv, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, bi, o);
    if (i2 >= 0 && (bi < 0 || v2 > bv || (v2 == bv && i2 < bi))) {
      bv = v2;
      bi = i2;
    }
  }
  if (lane == 0) out[off[0]] = (bi < 0 || is_nan(to_compute(x[0]))) ? 0 : bi;
}

// --- cumsum: a thread per line when lines are many or short, else a block-wide scan per line ----

template <class T, class A>
__global__ void cumsum_lines_kernel(const T* __restrict__ in, T* __restrict__ out, OffsetCalc<2> lines, int64_t L,
                                    int64_t n, int64_t si, int64_t so) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; l < L; l += step) {
    int64_t off[2];
    lines.get64(l, off);
    A acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      acc += static_cast<A>(to_compute(in[off[1] + i * si]));
      out[off[0] + i * so] = from_compute<T>(static_cast<compute_t<T>>(acc));
    }
  }
}

template <class T, class A>
__global__ void __launch_bounds__(256) cumsum_block_kernel(const T* __restrict__ in, T* __restrict__ out,
                                                           OffsetCalc<2> lines, int64_t L, int64_t n, int64_t si,
                                                           int64_t so) {
  __shared__ A warp_tot[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int64_t l = blockIdx.x; l < L; l += gridDim.x) {
    int64_t off[2];
    lines.get64(l, off);
    A carry = 0;
    for (int64_t base = 0; base < n; base += blockDim.x) {
      const int64_t i = base + threadIdx.x;
      A v = i < n ? static_cast<A>(to_compute(in[off[1] + i * si])) : A(0);
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const A t = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += t;
      }
      if (lane == 31) warp_tot[warp] = v;
      __syncthreads();
      if (warp == 0) {
        A w = lane < nwarps ? warp_tot[lane] : A(0);
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const A t = __shfl_up_sync(0xffffffffu, w, o);
          if (lane >= o) w += t;
        }
        if (lane < nwarps) warp_tot[lane] = w;  // inclusive prefix of the warp totals
      }
      __syncthreads();
      v += carry + (warp > 0 ? warp_tot[warp - 1] : A(0));
      if (i < n) out[off[0] + i * so] = from_compute<T>(static_cast<compute_t<T>>(v));
      carry += warp_tot[nwarps - 1];
      __syncthreads();
    }
  }
}

template <class T> using reduce_acc_t = std::conditional_t<std::is_same_v<compute_t<T>, int64_t>, int64_t, compute_t<T>>;
template <class T> using scan_acc_t = std::conditional_t<std::is_same_v<compute_t<T>, int64_t>, int64_t, double>;

}  // namespace

void CudaBackend::reduce(ReduceOp op, const View& out, const View& in) {
  if (out.dtype != in.dtype) throw std::invalid_argument("reduce: dtypes differ");
  activate();
  const ReduceGeom g = plan_reduce(out, in);
  if (g.K == 0) return;
  const ReduceLaunch L = plan_launch(g, sm_count_);
  const bool row_mode = L.row_mode;
  const dim3 block = L.block;
  const int64_t grid_x = L.grid_x, splits = L.splits, r_chunk = L.r_chunk;
  dispatch_dtype(in.dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = reduce_acc_t<T>;
    Scratch partial(*this, splits > 1 ? static_cast<size_t>(splits * g.K) * sizeof(A) : 0);
    const size_t smem = static_cast<size_t>(row_mode ? block.y * 32 : block.x * block.y) * sizeof(A);
    reduce_kernel<T, A><<<dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(splits)), block, smem, stream_>>>(
        op, static_cast<const T*>(in.data), static_cast<T*>(out.data), partial.as<A>(), g, row_mode, r_chunk);
    CUDA_CHECK_LAUNCH();
    if (splits > 1) {
      reduce_finish_kernel<T, A><<<static_cast<unsigned>(ceil_div(g.K, kThreads)), kThreads, 0, stream_>>>(
          op, partial.as<A>(), static_cast<int>(splits), static_cast<T*>(out.data), g);
      CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::argmax(const View& out, const View& in, int dim) {
  if (out.dtype != DType::i64) throw std::invalid_argument("argmax: output must be int64");
  activate();
  View ishape = in;
  ishape.size[dim] = 1;
  OffsetCalc<2> outer = make_offset_calc<2>(ishape, {&out, &ishape});
  const int64_t K = outer.numel(), n = in.size[dim];
  if (K == 0 || n == 0) return;
  dispatch_dtype(in.dtype, [&](auto tag) {
    using T = decltype(tag);
    argmax_kernel<T><<<static_cast<unsigned>(ceil_div(K, 8)), 256, 0, stream_>>>(
        static_cast<const T*>(in.data), static_cast<int64_t*>(out.data), outer, K, n, in.stride[dim]);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::cumsum(const View& out, const View& in, int dim) {
  if (out.dtype != in.dtype) throw std::invalid_argument("cumsum: dtypes differ");
  activate();
  View oshape = out, ishape = in;
  oshape.size[dim] = 1;
  ishape.size[dim] = 1;
  OffsetCalc<2> lines = make_offset_calc<2>(oshape, {&oshape, &ishape});
  const int64_t L = lines.numel(), n = in.size[dim];
  if (L == 0 || n == 0) return;
  // Many or short lines: one thread each, sequential like the CPU. Few long lines: a block-wide
  // scan per line, so a 100k-long cumsum does not run on one thread.
  dispatch_dtype(in.dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = scan_acc_t<T>;
    const T* x = static_cast<const T*>(in.data);
    T* y = static_cast<T*>(out.data);
    if (n <= 64 || L >= int64_t{sm_count_} * 256) {
      cumsum_lines_kernel<T, A><<<grid_for(L, kThreads, sm_count_), kThreads, 0, stream_>>>(
          x, y, lines, L, n, in.stride[dim], out.stride[dim]);
    } else {
      const unsigned grid = static_cast<unsigned>(std::min<int64_t>(L, int64_t{sm_count_} * 8));
      cumsum_block_kernel<T, A><<<grid, 256, 0, stream_>>>(x, y, lines, L, n, in.stride[dim], out.stride[dim]);
    }
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ttt::cuda_impl
