// kernels/cuda/map.cuh — the generic elementwise launcher: out[i] = f(in_0[i], ..., in_k[i]) over
// Views of one shape with arbitrary strides (0 = broadcast).
//
// Two kernels per functor:
//   - contiguous: every operand dense after coalescing. Each thread moves VEC elements per
//     iteration with 16-byte (or narrower, for mixed widths) aligned vector loads/stores, in a
//     grid-stride loop sized to the SM count; no index arithmetic at all.
//   - strided: one element per iteration; offsets from the coalesced shape with 32-bit
//     magic-number division (64-bit division only beyond 2^31 elements).
#pragma once

#include <utility>

#include "kernels/cuda/cuda_common.cuh"

namespace ttt::cuda_impl {

template <int VEC, class Out, class F, class... V>
__device__ __forceinline__ Vec<Out, VEC> apply_vec(const F& f, const V&... v) {
  Vec<Out, VEC> r;
#pragma unroll
  for (int j = 0; j < VEC; ++j) r.v[j] = f(v.v[j]...);
  return r;
}

template <int VEC, class F, class Out, class... In>
__global__ void __launch_bounds__(kThreads) map_contig_kernel(F f, int64_t n, Out* __restrict__ out,
                                                              const In* __restrict__... in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nvec = n / VEC;
  for (int64_t v = tid; v < nvec; v += step)
    store_vec<VEC>(out + v * VEC, apply_vec<VEC, Out>(f, load_vec<VEC>(in + v * VEC)...));
  for (int64_t i = nvec * VEC + tid; i < n; i += step) out[i] = f(in[i]...);
}

template <class F, class Out, class... In, size_t... I>
__device__ __forceinline__ void map_one(const F& f, const int64_t* off, std::index_sequence<I...>, Out* out,
                                        const In*... in) {
  out[off[0]] = f(in[off[I + 1]]...);
}

template <bool Idx32, class F, class Out, class... In>
__global__ void __launch_bounds__(kThreads) map_strided_kernel(F f, OffsetCalc<1 + sizeof...(In)> oc, int64_t n,
                                                               Out* out, const In*... in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[1 + sizeof...(In)];
    if constexpr (Idx32) oc.get32(static_cast<uint32_t>(i), off);
    else oc.get64(i, off);
    map_one(f, off, std::index_sequence_for<In...>{}, out, in...);
  }
}

// Vector width: 16 bytes of the widest operand.
template <class Out, class... In> constexpr int map_vec_width() {
  size_t w = sizeof(Out);
  ((w = sizeof(In) > w ? sizeof(In) : w), ...);
  return static_cast<int>(16 / w) > 0 ? static_cast<int>(16 / w) : 1;
}

template <class Out, class... In, class F, size_t... I>
void launch_map_impl(F f, cudaStream_t stream, int sm_count, const View& out,
                     const std::array<const View*, sizeof...(In)>& ins, std::index_sequence<I...>) {
  constexpr int N = 1 + sizeof...(In);
  std::array<const View*, N> all{&out, ins[I]...};
  OffsetCalc<N> oc = make_offset_calc<N>(out, all);
  const int64_t n = oc.numel();
  if (n == 0) return;
  Out* o = static_cast<Out*>(out.data);
  if (oc.all_unit_stride()) {
    constexpr int VEC = map_vec_width<Out, In...>();
    bool aligned = is_aligned(o, VEC * sizeof(Out));
    ((aligned = aligned && is_aligned(ins[I]->data, VEC * sizeof(In))), ...);
    if (VEC > 1 && aligned && n >= VEC) {
      map_contig_kernel<VEC><<<grid_for(n / VEC, kThreads, sm_count), kThreads, 0, stream>>>(
          f, n, o, static_cast<const In*>(ins[I]->data)...);
    } else {
      map_contig_kernel<1><<<grid_for(n, kThreads, sm_count), kThreads, 0, stream>>>(
          f, n, o, static_cast<const In*>(ins[I]->data)...);
    }
  } else if (fits_32bit_index(n)) {
    map_strided_kernel<true><<<grid_for(n, kThreads, sm_count), kThreads, 0, stream>>>(
        f, oc, n, o, static_cast<const In*>(ins[I]->data)...);
  } else {
    map_strided_kernel<false><<<grid_for(n, kThreads, sm_count), kThreads, 0, stream>>>(
        f, oc, n, o, static_cast<const In*>(ins[I]->data)...);
  }
  CUDA_CHECK_LAUNCH();
}

// out = f(ins...) elementwise; `Out`/`In...` are the storage types behind the views' pointers
// (raw bits are fine for ops that only move data). All views have out's ndim and sizes.
template <class Out, class... In, class F>
void launch_map(F f, cudaStream_t stream, int sm_count, const View& out,
                const std::array<const View*, sizeof...(In)>& ins) {
  launch_map_impl<Out, In...>(f, stream, sm_count, out, ins, std::index_sequence_for<In...>{});
}

}  // namespace ttt::cuda_impl
