// kernels/cpu/gated_layer_norm.cpp — the CPU reference of the gated LayerNorm
// (kernels/gated_layer_norm.h, whose header has the math): plain loops, every value in double,
// rows in parallel, the parameter gradients summed over rows in order.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/strided.h"
#include "kernels/gated_layer_norm.h"
#include "kernels/scalar_math.h"

namespace ttt {

namespace {
double rows_bytes(int64_t rows, int64_t cols, DType dt, double tensors) {
  return tensors * static_cast<double>(rows * cols) * static_cast<double>(dtype_size(dt));
}
template <class T> double at_or(const T* p, int64_t i, double dflt) { return p ? cpu_impl::ld(p, i) : dflt; }
}  // namespace

double GatedLayerNormForward::bytes() const {  // z, g read; y written; w, b; mean, rstd
  return rows_bytes(rows, cols, dtype, 3) + rows_bytes(1, cols, dtype, 2) + 8.0 * static_cast<double>(rows);
}
double GatedLayerNormBackward::bytes() const {  // dy, z, g read; dz, dg written
  return rows_bytes(rows, cols, dtype, 3 + (dz ? 1 : 0) + (dg ? 1 : 0)) + rows_bytes(1, cols, dtype, 2) +
         8.0 * static_cast<double>(rows);
}

void GatedLayerNormForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::gated_layer_norm_forward,
                           [](Backend& b, auto& c) { cuda_impl::gated_layer_norm_forward(b, c); });
}
void GatedLayerNormBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::gated_layer_norm_backward,
                           [](Backend& b, auto& c) { cuda_impl::gated_layer_norm_backward(b, c); });
}

namespace cpu_impl {

void gated_layer_norm_forward(GatedLayerNormForward& a) {
  dispatch_float(a.dtype, "gated_layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const T *z = static_cast<const T*>(a.z), *g = static_cast<const T*>(a.g), *w = static_cast<const T*>(a.w),
            *b = static_cast<const T*>(a.b);
    T* y = static_cast<T*>(a.y);
    const int64_t cols = a.cols;
#pragma omp parallel for schedule(static) if (a.rows > 1 && a.rows * cols >= kParallelGrain)
    for (int64_t r = 0; r < a.rows; ++r) {
      const T *zr = z + r * cols, *gr = g + r * cols;
      double mu = 0, var = 0;
      for (int64_t c = 0; c < cols; ++c) mu += ld(zr, c);
      mu /= static_cast<double>(cols);
      for (int64_t c = 0; c < cols; ++c) var += (ld(zr, c) - mu) * (ld(zr, c) - mu);
      const double rs = 1.0 / std::sqrt(var / static_cast<double>(cols) + a.eps);
      a.mean[r] = static_cast<float>(mu);
      a.rstd[r] = static_cast<float>(rs);
      for (int64_t c = 0; c < cols; ++c) {
        const double l = (ld(zr, c) - mu) * rs * at_or(w, c, 1.0) + at_or(b, c, 0.0);
        st(y + r * cols, c, smath::gelu_tanh(ld(gr, c)) * l);
      }
    }
  });
}

void gated_layer_norm_backward(GatedLayerNormBackward& a) {
  dispatch_float(a.dtype, "gated_layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T *dy = static_cast<const T*>(a.dy), *z = static_cast<const T*>(a.z), *g = static_cast<const T*>(a.g),
            *w = static_cast<const T*>(a.w), *b = static_cast<const T*>(a.b);
    T *dz = static_cast<T*>(a.dz), *dg = static_cast<T*>(a.dg);
    const int64_t cols = a.cols;
    // e = dy · gelu(g) and n, element (r, c).
    const auto terms = [&](int64_t r, int64_t c, double& e, double& n) {
      const int64_t i = r * cols + c;
      e = ld(dy, i) * smath::gelu_tanh(ld(g, i));
      n = (ld(z, i) - a.mean[r]) * a.rstd[r];
    };
#pragma omp parallel for schedule(static) if (a.rows > 1 && a.rows * cols >= kParallelGrain)
    for (int64_t r = 0; r < a.rows; ++r) {
      double se = 0, sen = 0;  // sums of e·w and e·w·n over the row
      for (int64_t c = 0; c < cols; ++c) {
        double e, n;
        terms(r, c, e, n);
        const double ew = e * at_or(w, c, 1.0);
        se += ew;
        sen += ew * n;
        if (dg) {
          const int64_t i = r * cols + c;
          st(dg, i, ld(dy, i) * (n * at_or(w, c, 1.0) + at_or(b, c, 0.0)) * smath::gelu_tanh_grad(ld(g, i)));
        }
      }
      se /= static_cast<double>(cols);
      sen /= static_cast<double>(cols);
      if (dz)
        for (int64_t c = 0; c < cols; ++c) {
          double e, n;
          terms(r, c, e, n);
          st(dz, r * cols + c, a.rstd[r] * (e * at_or(w, c, 1.0) - se - n * sen));
        }
    }
    if (!a.dw && !a.db) return;
    std::vector<double> aw(static_cast<size_t>(cols), 0.0), ab(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < a.rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        double e, n;
        terms(r, c, e, n);
        aw[c] += e * n;
        ab[c] += e;
      }
    for (int64_t c = 0; c < cols; ++c) {
      if (a.dw) a.dw[c] = static_cast<float>(aw[c]);
      if (a.db) a.db[c] = static_cast<float>(ab[c]);
    }
  });
}

}  // namespace cpu_impl
}  // namespace ttt
