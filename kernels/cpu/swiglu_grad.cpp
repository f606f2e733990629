// kernels/cpu/swiglu_grad.cpp — the CPU reference of SwiGLU's double backward (kernels/swiglu_grad.h
// has the math), elementwise in the compute type (float for float32 / bfloat16, double for float64).
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/strided.h"
#include "kernels/scalar_math.h"
#include "kernels/swiglu_grad.h"

namespace ttt {

double SwigluGradBackward::bytes() const {
  const int tensors = 3 + (ga_in ? 1 : 0) + (gb_in ? 1 : 0) + (gdy ? 1 : 0) + (ga ? 1 : 0) + (gb ? 1 : 0);
  return static_cast<double>(n) * static_cast<double>(dtype_size(dtype)) * tensors;
}

void SwigluGradBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::swiglu_grad_backward,
                           [](Backend& b, auto& c) { cuda_impl::swiglu_grad_backward(b, c); });
}

namespace cpu_impl {

void swiglu_grad_backward(SwigluGradBackward& c) {
  dispatch_float(c.dtype, "swiglu double backward", [&](auto tag) {
    using T = decltype(tag);
    const T *dy = static_cast<const T*>(c.dy), *a = static_cast<const T*>(c.a), *b = static_cast<const T*>(c.b);
    const T *Ga = static_cast<const T*>(c.ga_in), *Gb = static_cast<const T*>(c.gb_in);
    T *gdy = static_cast<T*>(c.gdy), *ga = static_cast<T*>(c.ga), *gb = static_cast<T*>(c.gb);
#pragma omp parallel for schedule(static) if (c.n >= kParallelGrain)
    for (int64_t i = 0; i < c.n; ++i) {
      const auto d = to_compute(dy[i]), x = to_compute(a[i]), y = to_compute(b[i]);
      const auto u = Ga ? to_compute(Ga[i]) : decltype(d)(0), v = Gb ? to_compute(Gb[i]) : decltype(d)(0);
      const auto s1 = smath::silu_grad(x);
      if (gdy) gdy[i] = from_compute<T>(u * y * s1 + v * smath::silu(x));
      if (ga) ga[i] = from_compute<T>(u * d * y * smath::silu_second(x) + v * d * s1);
      if (gb) gb[i] = from_compute<T>(u * d * s1);
    }
  });
}

}  // namespace cpu_impl

}  // namespace ttt
