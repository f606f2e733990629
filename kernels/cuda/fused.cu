// kernels/cuda/fused.cu — the CUDA backend's fused elementwise kernels (backend.h): rotary
// position embedding and SwiGLU's activation. Reference: kernels/cpu/fused.cpp (same index
// scheme, same formulas from scalar_math.h); test: tests/test_cuda_fused.cpp.
//
// RoPE: one thread per (x[2i], x[2i+1]) pair, offsets from an OffsetCalc over the "pair view"
// (last dim halved, its stride doubled) with the tables as a third operand (strides d/2 along
// the time dim, 1 along the pair dim, 0 elsewhere). So a strided input, e.g. the [B, T, H, D]
// projection read as [B, H, T, D], is rotated and laid out contiguously in one pass, with a dtype
// conversion when out and in differ. The tables ([T, d/2], a few hundred KB) stay in L2. Rows of
// contiguous bf16 / float32 values (the common case) take rope_rows_kernel instead: 16-byte loads and
// stores, one offset computation per 16 bytes.
// SwiGLU forward goes through launch_map (vectorized when dense); the backward writes two
// outputs, so it has its own grid-stride kernel over an OffsetCalc of the five operands.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/map.cuh"
#include "kernels/scalar_math.h"

namespace ttt::cuda_impl {

namespace {

void check_same_shape(const char* who, const View& a, const View& b) {
  bool ok = a.ndim == b.ndim;
  for (int d = 0; ok && d < a.ndim; ++d) ok = a.size[d] == b.size[d];
  if (!ok) throw std::invalid_argument(std::string(who) + ": operands must have the same shape");
}

template <bool Idx32, class O, class I, class C>
__global__ void __launch_bounds__(kThreads) rope_kernel(O* __restrict__ out, const I* __restrict__ in,
                                                        const C* __restrict__ cos, const C* __restrict__ sin,
                                                        OffsetCalc<3> oc, int64_t n, int64_t os, int64_t is,
                                                        C sign) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += step) {
    int64_t off[3];
    if constexpr (Idx32) oc.get32(static_cast<uint32_t>(p), off);
    else oc.get64(p, off);
    const C x0 = static_cast<C>(to_compute(in[off[1]])), x1 = static_cast<C>(to_compute(in[off[1] + is]));
    const C c = cos[off[2]], s = sign * sin[off[2]];
    out[off[0]] = from_compute<O>(x0 * c - x1 * s);
    out[off[0] + os] = from_compute<O>(x0 * s + x1 * c);
  }
}

// The fast path of rope for rows of contiguous values (out's and in's last stride 1) of bf16 or
// float32: one thread per 16 bytes of a row (V elements, V/2 pairs), vector loads and stores, the
// row offsets and the row's time index from an OffsetCalc over the rows (one per V elements instead
// of one per pair). half = D/2, vpr = D/V vectors per row.
template <bool Idx32, class T>
__global__ void __launch_bounds__(kThreads) rope_rows_kernel(T* __restrict__ out, const T* __restrict__ in,
                                                             const float* __restrict__ cos,
                                                             const float* __restrict__ sin, OffsetCalc<3> oc,
                                                             int64_t n, int vpr, int64_t half, float sign) {
  constexpr int V = 16 / sizeof(T);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += step) {
    const int64_t row = p / vpr;
    const int c = static_cast<int>(p - row * vpr);
    int64_t off[3];
    if constexpr (Idx32) oc.get32(static_cast<uint32_t>(row), off);
    else oc.get64(row, off);
    alignas(16) T x[V];
    *reinterpret_cast<uint4*>(x) = *reinterpret_cast<const uint4*>(in + off[1] + c * V);
    const float* cs = cos + off[2] * half + c * (V / 2);
    const float* sn = sin + off[2] * half + c * (V / 2);
#pragma unroll
    for (int j = 0; j < V / 2; ++j) {
      const float x0 = to_compute(x[2 * j]), x1 = to_compute(x[2 * j + 1]);
      const float co = cs[j], si = sign * sn[j];
      x[2 * j] = from_compute<T>(x0 * co - x1 * si);
      x[2 * j + 1] = from_compute<T>(x0 * si + x1 * co);
    }
    *reinterpret_cast<uint4*>(out + off[0] + c * V) = *reinterpret_cast<const uint4*>(x);
  }
}

// Whether rope_rows_kernel handles (out, in): same bf16 / float32 dtype, rows of contiguous values
// whose starts are 16-byte aligned.
bool rope_rows_ok(const View& out, const View& in) {
  const int nd = in.ndim;
  if (out.dtype != in.dtype || (in.dtype != DType::bf16 && in.dtype != DType::f32)) return false;
  const int64_t V = 16 / static_cast<int64_t>(dtype_size(in.dtype));
  if (in.stride[nd - 1] != 1 || out.stride[nd - 1] != 1 || in.size[nd - 1] % V != 0) return false;
  if (!is_aligned(in.data, 16) || !is_aligned(out.data, 16)) return false;
  for (int d = 0; d < nd - 1; ++d)
    if (in.stride[d] % V != 0 || out.stride[d] % V != 0) return false;
  return true;
}

template <class T> struct SwigluFn {
  __device__ __forceinline__ T operator()(T a, T b) const {
    return from_compute<T>(smath::silu(to_compute(a)) * to_compute(b));
  }
};

template <bool Idx32, class T>
__global__ void __launch_bounds__(kThreads) swiglu_bwd_kernel(T* da, T* db, const T* __restrict__ dy,
                                                              const T* __restrict__ a, const T* __restrict__ b,
                                                              OffsetCalc<5> oc, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[5];
    if constexpr (Idx32) oc.get32(static_cast<uint32_t>(i), off);
    else oc.get64(i, off);
    const auto g = to_compute(dy[off[2]]), av = to_compute(a[off[3]]), bv = to_compute(b[off[4]]);
    da[off[0]] = from_compute<T>(g * bv * smath::silu_grad(av));
    db[off[1]] = from_compute<T>(g * smath::silu(av));
  }
}

}  // namespace

void CudaBackend::rope(const View& out, const View& in, const View& cos, const View& sin, int time_dim,
                       bool inverse) {
  check_same_shape("rope", out, in);
  const int nd = in.ndim;
  if (nd < 2 || time_dim < 0 || time_dim >= nd - 1 || in.size[nd - 1] % 2 != 0)
    throw std::invalid_argument("rope: need rank >= 2, an even last dim and time_dim < ndim - 1");
  const int64_t T = in.size[time_dim], half = in.size[nd - 1] / 2;
  const DType tdt = in.dtype == DType::f64 ? DType::f64 : DType::f32;
  if (cos.dtype != tdt || sin.dtype != tdt || cos.numel() != T * half || sin.numel() != T * half ||
      !cos.is_contiguous() || !sin.is_contiguous())
    throw std::invalid_argument(std::string("rope: cos/sin must be contiguous [T, d/2] tables of ") + dtype_name(tdt));
  if (tdt == DType::f32 && rope_rows_ok(out, in)) {
    rope_rows(out, in, cos, sin, time_dim, inverse);
    return;
  }
  View po = out, pi = in, pt = out;
  po.size[nd - 1] = pi.size[nd - 1] = pt.size[nd - 1] = half;
  po.stride[nd - 1] *= 2;
  pi.stride[nd - 1] *= 2;
  for (int d = 0; d < nd; ++d) pt.stride[d] = d == time_dim ? half : d == nd - 1 ? 1 : 0;
  OffsetCalc<3> oc = make_offset_calc<3>(po, {&po, &pi, &pt});
  const int64_t n = oc.numel();
  if (n == 0) return;
  activate();
  const int64_t os = out.stride[nd - 1], is = in.stride[nd - 1];
  const unsigned grid = grid_for(n, kThreads, sm_count_);
  dispatch_float(out.dtype, "rope", [&](auto otag) {
    using O = decltype(otag);
    dispatch_float(in.dtype, "rope", [&](auto itag) {
      using I = decltype(itag);
      using C = std::conditional_t<std::is_same_v<I, double>, double, float>;
      auto* o = static_cast<O*>(out.data);
      auto* x = static_cast<const I*>(in.data);
      auto* cs = static_cast<const C*>(cos.data);
      auto* sn = static_cast<const C*>(sin.data);
      const C sign = inverse ? C(-1) : C(1);
      if (fits_32bit_index(n))
        rope_kernel<true><<<grid, kThreads, 0, stream_>>>(o, x, cs, sn, oc, n, os, is, sign);
      else
        rope_kernel<false><<<grid, kThreads, 0, stream_>>>(o, x, cs, sn, oc, n, os, is, sign);
      CUDA_CHECK_LAUNCH();
    });
  });
}

// rope over rows (rope_rows_ok): the row view drops the last dim; its third operand is the
// row's index along time_dim.
void CudaBackend::rope_rows(const View& out, const View& in, const View& cos, const View& sin, int time_dim,
                            bool inverse) {
  const int nd = in.ndim;
  const int64_t D = in.size[nd - 1];
  View ro = out, ri = in, rt = out;
  ro.ndim = ri.ndim = rt.ndim = nd - 1;
  for (int d = 0; d < nd - 1; ++d) rt.stride[d] = d == time_dim ? 1 : 0;
  OffsetCalc<3> oc = make_offset_calc<3>(ro, {&ro, &ri, &rt});
  const int64_t rows = oc.numel();
  if (rows == 0) return;
  activate();
  dispatch_float(in.dtype, "rope", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, double>) {
      throw std::logic_error("rope_rows: float64 has no fast path");
    } else {
      constexpr int V = 16 / sizeof(T);
      const int vpr = static_cast<int>(D / V);
      const int64_t n = rows * vpr;
      const unsigned grid = grid_for(n, kThreads, sm_count_);
      auto* o = static_cast<T*>(out.data);
      auto* x = static_cast<const T*>(in.data);
      auto* cs = static_cast<const float*>(cos.data);
      auto* sn = static_cast<const float*>(sin.data);
      const float sign = inverse ? -1.f : 1.f;
      if (fits_32bit_index(rows))
        rope_rows_kernel<true><<<grid, kThreads, 0, stream_>>>(o, x, cs, sn, oc, n, vpr, D / 2, sign);
      else
        rope_rows_kernel<false><<<grid, kThreads, 0, stream_>>>(o, x, cs, sn, oc, n, vpr, D / 2, sign);
      CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::swiglu_fwd(const View& out, const View& a, const View& b) {
  check_same_shape("swiglu", out, a);
  check_same_shape("swiglu", out, b);
  if (a.dtype != out.dtype || b.dtype != out.dtype) throw std::invalid_argument("swiglu: operand dtypes differ");
  activate();
  dispatch_float(out.dtype, "swiglu", [&](auto tag) {
    using T = decltype(tag);
    launch_map<T, T, T>(SwigluFn<T>{}, stream_, sm_count_, out, {&a, &b});
  });
}

void CudaBackend::swiglu_bwd(const View& da, const View& db, const View& dy, const View& a, const View& b) {
  for (const View* v : {&db, &dy, &a, &b}) {
    check_same_shape("swiglu backward", da, *v);
    if (v->dtype != da.dtype) throw std::invalid_argument("swiglu backward: operand dtypes differ");
  }
  OffsetCalc<5> oc = make_offset_calc<5>(da, {&da, &db, &dy, &a, &b});
  const int64_t n = oc.numel();
  if (n == 0) return;
  activate();
  const unsigned grid = grid_for(n, kThreads, sm_count_);
  dispatch_float(da.dtype, "swiglu backward", [&](auto tag) {
    using T = decltype(tag);
    auto* ga = static_cast<T*>(da.data);
    auto* gb = static_cast<T*>(db.data);
    auto* g = static_cast<const T*>(dy.data);
    auto* x = static_cast<const T*>(a.data);
    auto* y = static_cast<const T*>(b.data);
    if (fits_32bit_index(n))
      swiglu_bwd_kernel<true><<<grid, kThreads, 0, stream_>>>(ga, gb, g, x, y, oc, n);
    else
      swiglu_bwd_kernel<false><<<grid, kThreads, 0, stream_>>>(ga, gb, g, x, y, oc, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ttt::cuda_impl
