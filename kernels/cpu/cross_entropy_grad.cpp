// kernels/cpu/cross_entropy_grad.cpp — the CPU reference of cross-entropy's double backward
// (kernels/cross_entropy_grad.h has the math): every value in double, rows in parallel.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/strided.h"
#include "kernels/cross_entropy_grad.h"

namespace ttt {

double CrossEntropyGradBackward::bytes() const {
  const double es = static_cast<double>(dtype_size(dtype));
  const double row = static_cast<double>(rows * classes) * es;
  return row * (2 + (gx ? 1 : 0)) + static_cast<double>(rows) * (es * (1 + (gw ? 1 : 0)) + 8);
}

void CrossEntropyGradBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::cross_entropy_grad_backward,
                           [](Backend& b, auto& c) { cuda_impl::cross_entropy_grad_backward(b, c); });
}

namespace cpu_impl {

void cross_entropy_grad_backward(CrossEntropyGradBackward& c) {
  dispatch_float(c.dtype, "cross_entropy double backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t C = c.classes;
#pragma omp parallel for schedule(static) if (c.rows > 1 && c.rows * C >= kParallelGrain)
    for (int64_t r = 0; r < c.rows; ++r) {
      const T *x = static_cast<const T*>(c.x) + r * C, *G = static_cast<const T*>(c.g) + r * C;
      T* gx = c.gx ? static_cast<T*>(c.gx) + r * C : nullptr;
      const int64_t t = c.targets[r];
      if (t == c.ignore_index) {
        if (gx)
          for (int64_t j = 0; j < C; ++j) st(gx, j, 0.0);
        if (c.gw) st(static_cast<T*>(c.gw), r, 0.0);
        continue;
      }
      double m = -INFINITY;
      for (int64_t j = 0; j < C; ++j) m = std::fmax(m, ld(x, j));
      double z = 0;
      for (int64_t j = 0; j < C; ++j) z += std::exp(ld(x, j) - m);
      const double lse = m + std::log(z);
      double s = 0;
      for (int64_t j = 0; j < C; ++j) s += ld(G, j) * std::exp(ld(x, j) - lse);
      if (c.gw) st(static_cast<T*>(c.gw), r, s - ld(G, t));
      if (gx) {
        const double w = ld(static_cast<const T*>(c.w), r);
        for (int64_t j = 0; j < C; ++j) st(gx, j, w * std::exp(ld(x, j) - lse) * (ld(G, j) - s));
      }
    }
  });
}

}  // namespace cpu_impl

}  // namespace ttt
