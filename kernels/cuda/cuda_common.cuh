// kernels/cuda/cuda_common.cuh — helpers shared by the CUDA backend's kernel files: error checks,
// launch sizing, strided index math (dims coalesced on the host, magic-number division on the
// device), aligned vector types and warp/block reductions.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/backend.h"

namespace ttt::cuda_impl {

// --- errors ------------------------------------------------------------------------------------

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " +
                           cudaGetErrorString(e) + " (" + expr + ")");
}
#define CUDA_CHECK(expr)                                                            \
  do {                                                                              \
    cudaError_t ttt_err_ = (expr);                                                  \
    if (ttt_err_ != cudaSuccess) ::ttt::cuda_impl::throw_cuda_error(ttt_err_, #expr, __FILE__, __LINE__); \
  } while (0)
// After every kernel launch: a bad configuration shows up here, a fault at the next sync.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// --- launch sizing ------------------------------------------------------------------------------

constexpr int kThreads = 256;         // default block for elementwise / grid-stride kernels
constexpr int kBlocksPerSm = 8;       // 8 x 256 threads = the 2048 resident threads of an SM

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int next_pow2(int64_t v) {
  int p = 1;
  while (p < v && p < (1 << 30)) p <<= 1;
  return p;
}
// Blocks for a grid-stride loop over `work` items: enough to fill every SM, no more.
inline unsigned grid_for(int64_t work, int threads, int sm_count) {
  int64_t want = ceil_div(std::max<int64_t>(work, 1), threads);
  return static_cast<unsigned>(std::min<int64_t>(want, static_cast<int64_t>(sm_count) * kBlocksPerSm));
}

// Multi-tensor launches (kernels/multi_tensor.h): items [0, count) go into tables of at most
// `capacity` entries and fewer than 2^31 blocks (the grid's x limit), one launch per table.
// blocks_of(i): the blocks item i needs (0: leave it out); add(k, i, blocks_end): put item i in
// entry k, the table's blocks up to and including it being blocks_end; launch(entries, blocks).
template <class BlocksOf, class Add, class Launch>
void launch_in_tables(size_t count, int capacity, BlocksOf&& blocks_of, Add&& add, Launch&& launch) {
  size_t i = 0;
  while (i < count) {
    int k = 0;
    int64_t blocks = 0;
    for (; i < count && k < capacity; ++i) {
      const int64_t need = blocks_of(i);
      if (need == 0) continue;
      if (k > 0 && blocks + need > INT32_MAX) break;  // the next table starts with item i
      blocks += need;
      add(k++, i, blocks);
    }
    if (k > 0) launch(k, blocks);
  }
}

// --- strided index math ----------------------------------------------------------------------

// Division by a run-time constant with a multiply-high and a shift (round-up method, Hacker's
// Delight ch. 10): valid for dividends and divisors below 2^31, which the 32-bit path guarantees.
struct IntDiv {
  uint32_t d = 1, m = 1, s = 0;
  IntDiv() = default;
  explicit IntDiv(uint32_t div) : d(div) {
    s = 0;
    while ((uint64_t{1} << s) < div) ++s;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - div)) / div + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// N operands sharing one shape, each with its own element strides. Built on the host by
// coalescing: size-1 dims drop out and neighbouring dims that are contiguous in every operand
// merge, so a dense tensor becomes one dim and needs no division at all.
template <int N> struct OffsetCalc {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  IntDiv div[kMaxDims];
  int64_t stride[kMaxDims][N] = {};

  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= size[d];
    return n;
  }
  bool all_unit_stride() const {
    if (ndim != 1) return false;
    for (int o = 0; o < N; ++o)
      if (stride[0][o] != 1) return false;
    return true;
  }
  // Offsets (elements) of linear index i (row-major over the coalesced shape). 32-bit path:
  // the caller guarantees numel < 2^31.
  __device__ __forceinline__ void get32(uint32_t i, int64_t (&off)[N]) const {
#pragma unroll
    for (int o = 0; o < N; ++o) off[o] = 0;
    for (int d = ndim - 1; d > 0; --d) {
      uint32_t q = div[d].div(i);
      uint32_t r = i - q * static_cast<uint32_t>(size[d]);
#pragma unroll
      for (int o = 0; o < N; ++o) off[o] += static_cast<int64_t>(r) * stride[d][o];
      i = q;
    }
#pragma unroll
    for (int o = 0; o < N; ++o) off[o] += static_cast<int64_t>(i) * stride[0][o];
  }
  __device__ __forceinline__ void get64(int64_t i, int64_t (&off)[N]) const {
#pragma unroll
    for (int o = 0; o < N; ++o) off[o] = 0;
    for (int d = ndim - 1; d > 0; --d) {
      int64_t q = i / size[d];
      int64_t r = i - q * size[d];
#pragma unroll
      for (int o = 0; o < N; ++o) off[o] += r * stride[d][o];
      i = q;
    }
#pragma unroll
    for (int o = 0; o < N; ++o) off[o] += i * stride[0][o];
  }
};

// Coalesces `shape` with the strides of each operand (ops[o] must have shape's ndim).
template <int N> OffsetCalc<N> make_offset_calc(const View& shape, const std::array<const View*, N>& ops) {
  OffsetCalc<N> c;
  for (int d = 0; d < shape.ndim; ++d) {
    if (shape.size[d] == 1) continue;
    int k = c.ndim;
    bool merge = k > 0;
    for (int o = 0; o < N && merge; ++o) merge = c.stride[k - 1][o] == ops[o]->stride[d] * shape.size[d];
    if (merge) {
      c.size[k - 1] *= shape.size[d];
      for (int o = 0; o < N; ++o) c.stride[k - 1][o] = ops[o]->stride[d];
    } else {
      c.size[k] = shape.size[d];
      for (int o = 0; o < N; ++o) c.stride[k][o] = ops[o]->stride[d];
      c.ndim++;
    }
  }
  if (c.ndim == 0) {  // one element: call it a contiguous run of length 1
    c.ndim = 1;
    c.size[0] = 1;
    for (int o = 0; o < N; ++o) c.stride[0][o] = 1;
  }
  for (int d = 0; d < c.ndim; ++d)
    c.div[d] = IntDiv(static_cast<uint32_t>(std::min<int64_t>(c.size[d], INT32_MAX)));
  return c;
}

inline bool fits_32bit_index(int64_t n) { return n < (int64_t{1} << 31); }

// --- vector access ------------------------------------------------------------------------------

template <class T, int V> struct alignas(sizeof(T) * V) Vec {
  T v[V];
};
template <int V, class T> __device__ __forceinline__ Vec<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, V>*>(p);
}
template <int V, class T> __device__ __forceinline__ void store_vec(T* p, const Vec<T, V>& v) {
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}
inline bool is_aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// The type arithmetic is done in: float for f32/bf16, double for f64, int64 for integers.
template <class T> using compute_t = decltype(to_compute(T{}));
// Raw bits of the same width: ops that only move elements (where, fill, triangle, gather) are
// compiled once per element size, not once per dtype.
template <size_t S> struct BitsOf;
template <> struct BitsOf<2> { using type = uint16_t; };
template <> struct BitsOf<4> { using type = uint32_t; };
template <> struct BitsOf<8> { using type = uint64_t; };
template <class F> decltype(auto) dispatch_bits(DType t, F&& f) {
  switch (dtype_size(t)) {
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    default: return f(uint64_t{});
  }
}
template <class T> inline auto to_bits(T v) {
  typename BitsOf<sizeof(T)>::type b;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}

// --- reductions ---------------------------------------------------------------------------------

template <class T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `smem` holds 32 values; the call ends with a barrier so smem can be reused.
template <class T> __device__ __forceinline__ T block_sum(T v, T* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (nwarps == 1) return v;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? smem[lane] : T(0);
  r = warp_sum(r);
  __syncthreads();
  return r;
}
// Online (max, sum of exp(x - max)) pairs, merged across the block: the logsumexp of a row in
// one pass. Pairs with max == -inf carry no mass.
template <class A> __device__ __forceinline__ void merge_max_sum(A& m, A& s, A m2, A s2) {
  A M = m > m2 ? m : m2;
  if (M == -INFINITY) return;
  s = (m == -INFINITY ? A(0) : s * exp(m - M)) + (m2 == -INFINITY ? A(0) : s2 * exp(m2 - M));
  m = M;
}
template <class A> __device__ __forceinline__ void block_max_sum(A& m, A& s, A* smem_m, A* smem_s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge_max_sum(m, s, m2, s2);
  }
  if (nwarps == 1) return;
  if (lane == 0) {
    smem_m[warp] = m;
    smem_s[warp] = s;
  }
  __syncthreads();
  m = lane < nwarps ? smem_m[lane] : A(-INFINITY);
  s = lane < nwarps ? smem_s[lane] : A(0);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge_max_sum(m, s, m2, s2);
  }
  __syncthreads();
}

}  // namespace ttt::cuda_impl
