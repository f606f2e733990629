// kernels/cpu/fused.cpp — the reference for the fused elementwise kernels of backend.h: rotary
// position embedding (rope) and SwiGLU's activation (swiglu_fwd / swiglu_bwd). Plain strided
// loops (strided.h); the CUDA versions (kernels/cuda/fused.cu) follow the same index scheme and
// are tested against these (tests/test_cuda_fused.cpp).
//
// RoPE walks the "pair view" of the tensors: the last dim halved with twice its stride, so one
// element of the walk is one (x[2i], x[2i+1]) pair. The tables are walked as a third operand of
// the same shape whose strides are d/2 along the time dim, 1 along the pair dim and 0 elsewhere:
// its offset is t · d/2 + i, the table entry of that pair.
#include <stdexcept>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/strided.h"
#include "kernels/scalar_math.h"

namespace ttt::cpu_impl {

namespace {

void check_same_shape(const char* who, const View& a, const View& b) {
  bool ok = a.ndim == b.ndim;
  for (int d = 0; ok && d < a.ndim; ++d) ok = a.size[d] == b.size[d];
  if (!ok) throw std::invalid_argument(std::string(who) + ": operands must have the same shape");
}

}  // namespace

void CpuBackend::rope(const View& out, const View& in, const View& cos, const View& sin, int time_dim,
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
  const int64_t os = out.stride[nd - 1], is = in.stride[nd - 1];
  dispatch_float(out.dtype, "rope", [&](auto otag) {
    using O = decltype(otag);
    dispatch_float(in.dtype, "rope", [&](auto itag) {
      using I = decltype(itag);
      using C = std::conditional_t<std::is_same_v<I, double>, double, float>;
      O* o = static_cast<O*>(out.data);
      const I* x = static_cast<const I*>(in.data);
      const C* cs = static_cast<const C*>(cos.data);
      const C* sn = static_cast<const C*>(sin.data);
      const C sign = inverse ? C(-1) : C(1);
      for_each_element<3>(po, {&po, &pi, &pt}, [&](const std::array<int64_t, 3>& off) {
        const C x0 = static_cast<C>(to_compute(x[off[1]])), x1 = static_cast<C>(to_compute(x[off[1] + is]));
        const C c = cs[off[2]], s = sign * sn[off[2]];
        o[off[0]] = from_compute<O>(x0 * c - x1 * s);
        o[off[0] + os] = from_compute<O>(x0 * s + x1 * c);
      });
    });
  });
}

void CpuBackend::swiglu_fwd(const View& out, const View& a, const View& b) {
  check_same_shape("swiglu", out, a);
  check_same_shape("swiglu", out, b);
  if (a.dtype != out.dtype || b.dtype != out.dtype) throw std::invalid_argument("swiglu: operand dtypes differ");
  dispatch_float(out.dtype, "swiglu", [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.data);
    const T* x = static_cast<const T*>(a.data);
    const T* y = static_cast<const T*>(b.data);
    for_each_element<3>(out, {&out, &a, &b}, [&](const std::array<int64_t, 3>& off) {
      o[off[0]] = from_compute<T>(smath::silu(to_compute(x[off[1]])) * to_compute(y[off[2]]));
    });
  });
}

void CpuBackend::swiglu_bwd(const View& da, const View& db, const View& dy, const View& a, const View& b) {
  for (const View* v : {&db, &dy, &a, &b}) {
    check_same_shape("swiglu backward", da, *v);
    if (v->dtype != da.dtype) throw std::invalid_argument("swiglu backward: operand dtypes differ");
  }
  dispatch_float(da.dtype, "swiglu backward", [&](auto tag) {
    using T = decltype(tag);
    T* ga = static_cast<T*>(da.data);
    T* gb = static_cast<T*>(db.data);
    const T* g = static_cast<const T*>(dy.data);
    const T* x = static_cast<const T*>(a.data);
    const T* y = static_cast<const T*>(b.data);
    for_each_element<5>(da, {&da, &db, &dy, &a, &b}, [&](const std::array<int64_t, 5>& off) {
      const auto gv = to_compute(g[off[2]]), av = to_compute(x[off[3]]), bv = to_compute(y[off[4]]);
      ga[off[0]] = from_compute<T>(gv * bv * smath::silu_grad(av));
      gb[off[1]] = from_compute<T>(gv * smath::silu(av));
    });
  });
}

}  // namespace ttt::cpu_impl
