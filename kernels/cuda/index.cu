// kernels/cuda/index.cu — index_select (gather along a dim: embedding lookups) and index_add (its
// scatter-add transpose: embedding gradients).
//
// Out-of-range indices cannot throw inside a kernel: they are recorded in the backend's error
// slot and raised at the next synchronize()/copy_to_host() (see cuda_backend.cuh).
//
// index_add adds duplicates with atomics: float/double atomicAdd for f32/f64 (the summation
// order, and so the last bits, vary from run to run), integer atomics for i32/i64/u16, and bf16
// through a float32 copy of the output so repeated additions do not round to bf16 each time.
// In deterministic mode (backend.h) f32/f64 (and so bf16) take an ordered path instead: a stable
// radix sort (CUB) of (destination, position) pairs groups the source rows by destination, and one
// block adds each group in increasing position order, starting from the output's value — the
// CPU's order, so the result equals the CPU reference bit for bit.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {

template <class I> __device__ __forceinline__ int64_t load_idx(const I* p, int64_t off) {
  return static_cast<int64_t>(p[off]);
}

// Dense case: in [outer, n_in, inner] -> out [outer, n_idx, inner]; one block per output row,
// 16-byte chunks when the rows allow it.
template <class Chunk, class I>
__global__ void __launch_bounds__(kThreads) gather_rows_kernel(Chunk* __restrict__ out, const Chunk* __restrict__ in,
                                                               const I* __restrict__ index, int64_t istride,
                                                               int64_t rows, int64_t n_idx, int64_t n_in,
                                                               int64_t inner_chunks, DeviceError* err) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t o = row / n_idx, i = row - o * n_idx;
    const int64_t j = load_idx(index, i * istride);
    Chunk* dst = out + row * inner_chunks;
    if (j < 0 || j >= n_in) {
      if (threadIdx.x == 0) report_error(err, kErrIndexSelect, j, n_in);
      continue;
    }
    const Chunk* src = in + (o * n_in + j) * inner_chunks;
    for (int64_t c = threadIdx.x; c < inner_chunks; c += blockDim.x) dst[c] = src[c];
  }
}

// General strided case. Operand 2 of the offset calculator has stride 1 along `dim` and 0
// elsewhere, so its "offset" is the coordinate along dim (that dim never coalesces away).
template <class Bits, class I>
__global__ void __launch_bounds__(kThreads) gather_strided_kernel(Bits* out, const Bits* in, const I* index,
                                                                  int64_t istride, OffsetCalc<3> oc, int64_t n,
                                                                  int64_t in_dim_stride, int64_t n_in,
                                                                  DeviceError* err) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    int64_t off[3];
    oc.get64(e, off);
    const int64_t j = load_idx(index, off[2] * istride);
    if (j < 0 || j >= n_in) {
      report_error(err, kErrIndexSelect, j, n_in);
      continue;
    }
    out[off[0]] = in[off[1] + j * in_dim_stride];
  }
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int32_t* p, int32_t v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));  // two's complement
}
__device__ __forceinline__ void atomic_add(uint16_t* p, uint16_t v) {
  // No 16-bit atomic add: CAS on the aligned 32-bit word holding it.
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  unsigned int* word = reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3});
  const unsigned int shift = (addr & 2) ? 16u : 0u;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const unsigned int cur = (assumed >> shift) & 0xffffu;
    const unsigned int sum = (cur + v) & 0xffffu;
    old = atomicCAS(word, assumed, (assumed & ~(0xffffu << shift)) | (sum << shift));
  } while (old != assumed);
}

// Scatter-add over src's elements; operands: src, out (stride 0 along dim), coordinate along dim.
template <class T, class I>
__global__ void __launch_bounds__(kThreads) scatter_add_kernel(T* out, const T* src, const I* index, int64_t istride,
                                                               OffsetCalc<3> oc, int64_t n, int64_t out_dim_stride,
                                                               int64_t n_out, DeviceError* err) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    int64_t off[3];
    oc.get64(e, off);
    const int64_t j = load_idx(index, off[2] * istride);
    if (j < 0 || j >= n_out) {
      report_error(err, kErrIndexAdd, j, n_out);
      continue;
    }
    atomic_add(out + off[1] + j * out_dim_stride, src[off[0]]);
  }
}

// Deterministic index_add, step 1: key = destination (n_out for an invalid index, reported), value
// = source position.
template <class I>
__global__ void index_keys_kernel(uint64_t* keys, int64_t* positions, const I* index, int64_t istride, int64_t n_idx,
                                  int64_t n_out, DeviceError* err) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_idx; i += step) {
    int64_t j = load_idx(index, i * istride);
    if (j < 0 || j >= n_out) {
      report_error(err, kErrIndexAdd, j, n_out);
      j = n_out;
    }
    keys[i] = static_cast<uint64_t>(j);
    positions[i] = i;
  }
}

// Step 2, after the stable sort: the block of a sorted position that starts a run of equal keys
// adds the run's source slices, in increasing position, into the destination slice; threads
// split the slice (the elements of every dim but `dim`, offsets from oc: operand 0 src, 1 out).
template <class T>
__global__ void __launch_bounds__(kThreads) sorted_runs_add_kernel(T* out, const T* src, const uint64_t* keys,
                                                                   const int64_t* positions, int64_t n_idx,
                                                                   int64_t n_out, OffsetCalc<2> oc, int64_t slice,
                                                                   int64_t out_dim_stride, int64_t src_dim_stride) {
  for (int64_t p = blockIdx.x; p < n_idx; p += gridDim.x) {
    const uint64_t j = keys[p];
    if (j >= static_cast<uint64_t>(n_out) || (p > 0 && keys[p - 1] == j)) continue;
    for (int64_t e = threadIdx.x; e < slice; e += blockDim.x) {
      int64_t off[2];
      oc.get64(e, off);
      T* dst = out + off[1] + static_cast<int64_t>(j) * out_dim_stride;
      T acc = *dst;
      for (int64_t q = p; q < n_idx && keys[q] == j; ++q) acc = acc + src[off[0] + positions[q] * src_dim_stride];
      *dst = acc;
    }
  }
}

template <class F> void dispatch_index(DType t, F&& f) {
  switch (t) {
    case DType::i64: f(int64_t{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::u16: f(uint16_t{}); return;
    default: throw std::invalid_argument(std::string("index tensors must be integer, got ") + dtype_name(t));
  }
}

// The coordinate-extracting pseudo operand for `shape`: stride 1 along dim, 0 elsewhere.
View coordinate_view(const View& shape, int dim) {
  View c = shape;
  for (int d = 0; d < c.ndim; ++d) c.stride[d] = d == dim ? 1 : 0;
  return c;
}

}  // namespace

// Embedding lookups (dense table, dense output) take the row-gather kernel; anything else the
// element-wise strided kernel. The index may itself be a strided 1-D view.
void CudaBackend::index_select(const View& out, const View& in, int dim, const View& index) {
  if (out.dtype != in.dtype) throw std::invalid_argument("index_select: dtypes differ");
  activate();
  const int64_t n_idx = index.numel(), n_in = in.size[dim];
  const int64_t istride = index.ndim ? index.stride[0] : 0;
  if (out.numel() == 0) return;
  const size_t es = dtype_size(out.dtype);
  dispatch_index(index.dtype, [&](auto itag) {
    using I = decltype(itag);
    const I* idx = static_cast<const I*>(index.data);
    if (out.is_contiguous() && in.is_contiguous()) {
      int64_t outer = 1, inner = 1;
      for (int d = 0; d < dim; ++d) outer *= out.size[d];
      for (int d = dim + 1; d < out.ndim; ++d) inner *= out.size[d];
      const int64_t rows = outer * n_idx, bytes = inner * static_cast<int64_t>(es);
      const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{sm_count_} * 16));
      const int threads = static_cast<int>(std::clamp<int64_t>(next_pow2(ceil_div(bytes, 16)), 32, kThreads));
      auto launch = [&](auto chunk) {
        using Chunk = decltype(chunk);
        gather_rows_kernel<Chunk, I><<<grid, threads, 0, stream_>>>(
            static_cast<Chunk*>(out.data), static_cast<const Chunk*>(in.data), idx, istride, rows, n_idx, n_in,
            bytes / static_cast<int64_t>(sizeof(Chunk)), error_dev_);
      };
      if (bytes % 16 == 0 && is_aligned(out.data, 16) && is_aligned(in.data, 16)) launch(uint4{});
      else dispatch_bits(out.dtype, [&](auto bits) { launch(bits); });
      CUDA_CHECK_LAUNCH();
      return;
    }
    View in_b = in;  // in with its dim stride removed: added back per element from the index
    in_b.stride[dim] = 0;
    View coord = coordinate_view(out, dim);
    OffsetCalc<3> oc = make_offset_calc<3>(out, {&out, &in_b, &coord});
    const int64_t n = out.numel();
    dispatch_bits(out.dtype, [&](auto bits) {
      using B = decltype(bits);
      gather_strided_kernel<B, I><<<grid_for(n, kThreads, sm_count_), kThreads, 0, stream_>>>(
          static_cast<B*>(out.data), static_cast<const B*>(in.data), idx, istride, oc, n, in.stride[dim], n_in,
          error_dev_);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void CudaBackend::index_add(const View& out, int dim, const View& index, const View& src) {
  if (out.dtype != src.dtype) throw std::invalid_argument("index_add: dtypes differ");
  activate();
  const int64_t n = src.numel();
  if (n == 0) return;
  if (out.dtype == DType::bf16) {
    // Accumulate in a float32 copy of out, then round once.
    Scratch acc(*this, static_cast<size_t>(out.numel()) * sizeof(float));
    View f = out;
    f.data = acc.as<float>();
    f.dtype = DType::f32;
    int64_t s = 1;
    for (int d = f.ndim - 1; d >= 0; --d) {
      f.stride[d] = s;
      s *= f.size[d];
    }
    Scratch src32(*this, static_cast<size_t>(n) * sizeof(float));
    View fs = src;
    fs.data = src32.as<float>();
    fs.dtype = DType::f32;
    s = 1;
    for (int d = fs.ndim - 1; d >= 0; --d) {
      fs.stride[d] = s;
      s *= fs.size[d];
    }
    unary(UnaryOp::copy, f, out, 0, 0);
    unary(UnaryOp::copy, fs, src, 0, 0);
    index_add(f, dim, index, fs);
    unary(UnaryOp::copy, out, f, 0, 0);
    return;
  }
  const int64_t istride = index.ndim ? index.stride[0] : 0;
  if (deterministic() && (out.dtype == DType::f32 || out.dtype == DType::f64)) {
    index_add_ordered(out, dim, index, src);
    return;
  }
  // Iterate over src: each element knows its destination from its coordinate along dim.
  View out_b = src;  // out's strides on src's shape, without the dim stride
  for (int d = 0; d < out_b.ndim; ++d) out_b.stride[d] = d == dim ? 0 : out.stride[d];
  View coord = coordinate_view(src, dim);
  OffsetCalc<3> oc = make_offset_calc<3>(src, {&src, &out_b, &coord});
  dispatch_index(index.dtype, [&](auto itag) {
    using I = decltype(itag);
    auto launch = [&](auto tag) {
      using T = decltype(tag);
      scatter_add_kernel<T, I><<<grid_for(n, kThreads, sm_count_), kThreads, 0, stream_>>>(
          static_cast<T*>(out.data), static_cast<const T*>(src.data), static_cast<const I*>(index.data), istride, oc,
          n, out.stride[dim], out.size[dim], error_dev_);
      CUDA_CHECK_LAUNCH();
    };
    switch (out.dtype) {
      case DType::f32: launch(float{}); break;
      case DType::f64: launch(double{}); break;
      case DType::i64: launch(int64_t{}); break;
      case DType::i32: launch(int32_t{}); break;
      case DType::u16: launch(uint16_t{}); break;
      default: throw std::invalid_argument("index_add: unsupported dtype");
    }
  });
}

// See the file comment: deterministic index_add for f32/f64.
void CudaBackend::index_add_ordered(const View& out, int dim, const View& index, const View& src) {
  const int64_t n_idx = index.numel(), n_out = out.size[dim];
  const int64_t istride = index.ndim ? index.stride[0] : 0;
  int end_bit = 1;  // keys are in [0, n_out]
  while (end_bit < 64 && (uint64_t{1} << end_bit) <= static_cast<uint64_t>(n_out)) ++end_bit;
  Scratch keys(*this, static_cast<size_t>(2 * n_idx) * sizeof(uint64_t));
  Scratch pos(*this, static_cast<size_t>(2 * n_idx) * sizeof(int64_t));
  uint64_t* k_in = keys.as<uint64_t>();
  uint64_t* k_out = k_in + n_idx;
  int64_t* p_in = pos.as<int64_t>();
  int64_t* p_out = p_in + n_idx;
  dispatch_index(index.dtype, [&](auto itag) {
    using I = decltype(itag);
    index_keys_kernel<I><<<grid_for(n_idx, kThreads, sm_count_), kThreads, 0, stream_>>>(
        k_in, p_in, static_cast<const I*>(index.data), istride, n_idx, n_out, error_dev_);
    CUDA_CHECK_LAUNCH();
  });
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, k_in, k_out, p_in, p_out, n_idx, 0, end_bit, stream_));
  Scratch temp(*this, std::max<size_t>(temp_bytes, 1));
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.as<void>(), temp_bytes, k_in, k_out, p_in, p_out, n_idx, 0, end_bit,
                                             stream_));
  // The slice shape: src's shape with dim dropped (size 1); operands src and out on it.
  View shape = src;
  shape.size[dim] = 1;
  View src_s = src, out_s = src;
  for (int d = 0; d < src.ndim; ++d) out_s.stride[d] = out.stride[d];
  OffsetCalc<2> oc = make_offset_calc<2>(shape, {&src_s, &out_s});
  const int64_t slice = shape.numel();
  const int threads = static_cast<int>(std::clamp<int64_t>(next_pow2(slice), 32, kThreads));
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(n_idx, int64_t{sm_count_} * 32));
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    sorted_runs_add_kernel<T><<<grid, threads, 0, stream_>>>(static_cast<T*>(out.data), static_cast<const T*>(src.data),
                                                             k_out, p_out, n_idx, n_out, oc, slice, out.stride[dim],
                                                             src.stride[dim]);
    CUDA_CHECK_LAUNCH();
  };
  if (out.dtype == DType::f32) launch(float{});
  else launch(double{});
}

}  // namespace ttt::cuda_impl
