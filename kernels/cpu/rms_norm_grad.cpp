// kernels/cpu/rms_norm_grad.cpp — the CPU reference of RMSNorm's double backward
// (kernels/rms_norm_grad.h has the math): every value in double, rows in parallel, gw summed over
// the rows in order.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/strided.h"
#include "kernels/rms_norm_grad.h"

namespace ttt {

double RmsNormGradBackward::bytes() const {
  const double row = static_cast<double>(rows * cols) * static_cast<double>(dtype_size(dtype));
  const double vec = static_cast<double>(cols) * static_cast<double>(dtype_size(dtype));
  return row * (2 + (gdx ? 1 : 0) + (gdy ? 1 : 0) + (gx ? 1 : 0)) + vec * ((w ? 1 : 0) + (gdw ? 1 : 0) + (gw ? 1 : 0));
}

void RmsNormGradBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::rms_norm_grad_backward,
                           [](Backend& b, auto& c) { cuda_impl::rms_norm_grad_backward(b, c); });
}

namespace cpu_impl {

namespace {

// One row: writes gdy and gx (when wanted) and q · dy (the row's part of gw) into t.
template <class T>
void grad_row(const RmsNormGradBackward& a, int64_t r, double* t) {
  const int64_t C = a.cols, o = r * C;
  const T *dy = static_cast<const T*>(a.dy) + o, *x = static_cast<const T*>(a.x) + o;
  const T *w = static_cast<const T*>(a.w), *gdw = static_cast<const T*>(a.gdw);
  const T* gdx = a.gdx ? static_cast<const T*>(a.gdx) + o : nullptr;
  const double inv_c = 1.0 / static_cast<double>(C);
  const auto wt = [&](int64_t c) { return w ? ld(w, c) : 1.0; };
  double ms = 0;
  for (int64_t c = 0; c < C; ++c) ms += ld(x, c) * ld(x, c);
  const double rs = 1.0 / std::sqrt(ms * inv_c + a.eps);
  double m = 0, sa = 0, sb = 0;  // mean(g x̂), Σ Gx x̂, Σ Gx g
  for (int64_t c = 0; c < C; ++c) {
    const double g = ld(dy, c) * wt(c), xh = ld(x, c) * rs, G = gdx ? ld(gdx, c) : 0.0;
    m += g * xh;
    sa += G * xh;
    sb += G * g;
  }
  m *= inv_c;
  const double rho = sb - m * sa;
  std::vector<double> h(static_cast<size_t>(C));
  double sh = 0;  // Σ h x̂
  for (int64_t c = 0; c < C; ++c) {
    const double g = ld(dy, c) * wt(c), xh = ld(x, c) * rs, G = gdx ? ld(gdx, c) : 0.0;
    h[c] = -rs * (sa * g * inv_c + m * G) + (gdw ? ld(gdw, c) * ld(dy, c) : 0.0);
    sh += h[c] * xh;
  }
  for (int64_t c = 0; c < C; ++c) {
    const double xh = ld(x, c) * rs, G = gdx ? ld(gdx, c) : 0.0;
    const double q = rs * (G - sa * xh * inv_c);
    if (a.gdy) st(static_cast<T*>(a.gdy) + o, c, q * wt(c) + (gdw ? ld(gdw, c) * xh : 0.0));
    if (a.gx) st(static_cast<T*>(a.gx) + o, c, rs * (h[c] - xh * (sh + rs * rho) * inv_c));
    if (t) t[c] = q * ld(dy, c);
  }
}

}  // namespace

void rms_norm_grad_backward(RmsNormGradBackward& a) {
  dispatch_float(a.dtype, "rms_norm double backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t C = a.cols;
    const bool gw = a.gw && a.w;
    std::vector<double> t(gw ? static_cast<size_t>(a.rows * C) : 0);
#pragma omp parallel for schedule(static) if (a.rows > 1 && a.rows * C >= kParallelGrain)
    for (int64_t r = 0; r < a.rows; ++r) grad_row<T>(a, r, gw ? t.data() + r * C : nullptr);
    if (!gw) return;
    std::vector<double> sum(static_cast<size_t>(C), 0.0);
    for (int64_t r = 0; r < a.rows; ++r)
      for (int64_t c = 0; c < C; ++c) sum[c] += t[r * C + c];
    for (int64_t c = 0; c < C; ++c) st(static_cast<T*>(a.gw), c, sum[c]);
  });
}

}  // namespace cpu_impl

}  // namespace ttt
