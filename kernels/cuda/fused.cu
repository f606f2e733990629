// kernels/cuda/fused.cu — the CUDA backend's fused elementwise kernels (backend.h): rotary
// position embedding and SwiGLU's activation. Reference: kernels/cpu/fused.cpp (same index
// scheme, same formulas from scalar_math.h); test: tests/test_cuda_fused.cpp.
//
// RoPE: one thread per (x[2i], x[2i+1]) pair, offsets from an OffsetCalc over the "pair view"
// (last dim halved, its stride doubled) with the tables as a third operand (strides d/2 along
// the time dim, 1 along the pair dim, 0 elsewhere). So a strided input, e.g. the [B, T, H, D]
// projection read as [B, H, T, D], is rotated and laid out contiguously in one pass, with a dtype
// conversion when out and in differ. The tables ([T, d/2], a few hundred KB) stay in L2.
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
