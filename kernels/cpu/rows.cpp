// kernels/cpu/rows.cpp — the fused row kernels: softmax / log-softmax, LayerNorm, RMSNorm and
// cross-entropy, forward and backward, and the fused add_rms_norm and gated_layer_norm. Rows are
// contiguous, `cols` wide. Statistics are computed in double and stored as float32 (mean, rstd,
// logsumexp), as the CUDA kernels store them.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/add_rms_norm.h"
#include "kernels/gated_layer_norm.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/strided.h"
#include "kernels/scalar_math.h"

namespace ttt::cpu_impl {

namespace {
template <class F> void parallel_rows(int64_t rows, int64_t cols, F&& f) {
#pragma omp parallel for schedule(static) if (rows > 1 && rows * cols >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) f(r);
}

// RMSNorm of one row (the rms_norm forward; add_rms_norm runs it on the rounded sum).
template <class T>
void rms_norm_row(T* y, float* rstd, const T* x, const T* w, int64_t cols, double eps) {
  double ms = 0;
  for (int64_t c = 0; c < cols; ++c) ms += ld(x, c) * ld(x, c);
  double rs = 1.0 / std::sqrt(ms / static_cast<double>(cols) + eps);
  if (rstd) *rstd = static_cast<float>(rs);
  for (int64_t c = 0; c < cols; ++c) st(y, c, ld(x, c) * rs * (w ? ld(w, c) : 1.0));
}

// dx of one row: g = dy * w; dx = rs * (g - xhat * mean(g * xhat)), xhat = x * rs.
template <class T> void rms_norm_dx_row(T* dx, const T* dy, const T* x, double rs, const T* w, int64_t cols) {
  double sgx = 0;
  for (int64_t c = 0; c < cols; ++c) sgx += ld(dy, c) * (w ? ld(w, c) : 1.0) * ld(x, c) * rs;
  sgx /= static_cast<double>(cols);
  for (int64_t c = 0; c < cols; ++c) {
    double g = ld(dy, c) * (w ? ld(w, c) : 1.0), xh = ld(x, c) * rs;
    st(dx, c, rs * (g - xh * sgx));
  }
}

// dw = sum over rows of dy * xhat, rows in order, in double.
template <class T>
void rms_norm_dw(float* dw, const T* dy, const T* x, const float* rstd, int64_t rows, int64_t cols) {
  std::vector<double> aw(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) aw[c] += ld(dy, r * cols + c) * ld(x, r * cols + c) * rstd[r];
  for (int64_t c = 0; c < cols; ++c) dw[c] = static_cast<float>(aw[c]);
}

// A LayerNorm row's mean and 1 / sqrt(var + eps), in double (two passes: no cancellation).
template <class T> void layer_norm_stats(const T* xr, int64_t cols, double eps, double& mu, double& rs) {
  mu = 0;
  for (int64_t c = 0; c < cols; ++c) mu += ld(xr, c);
  mu /= static_cast<double>(cols);
  double var = 0;
  for (int64_t c = 0; c < cols; ++c) var += (ld(xr, c) - mu) * (ld(xr, c) - mu);
  var /= static_cast<double>(cols);
  rs = 1.0 / std::sqrt(var + eps);
}

// p[i] as double, or dflt when p is null (an optional weight or bias).
template <class T> double at_or(const T* p, int64_t i, double dflt) { return p ? ld(p, i) : dflt; }

// out = a + b in T's compute type, as the elementwise add computes it.
template <class T> void add_row(T* out, const T* a, const T* b, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) out[c] = from_compute<T>(to_compute(a[c]) + to_compute(b[c]));
}
}  // namespace

void CpuBackend::softmax_fwd(void* yv, const void* xv, int64_t rows, int64_t cols, DType dt, bool log) {
  dispatch_float(dt, "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    parallel_rows(rows, cols, [&](int64_t r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, ld(xr, c));
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += std::exp(ld(xr, c) - mx);
      double lse = mx + std::log(s);
      for (int64_t c = 0; c < cols; ++c) st(yr, c, log ? ld(xr, c) - lse : std::exp(ld(xr, c) - lse));
    });
  });
}

void CpuBackend::softmax_bwd(void* dxv, const void* dyv, const void* yv, int64_t rows, int64_t cols, DType dt,
                             bool log) {
  dispatch_float(dt, "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    const T* dy = static_cast<const T*>(dyv);
    const T* y = static_cast<const T*>(yv);
    T* dx = static_cast<T*>(dxv);
    parallel_rows(rows, cols, [&](int64_t r) {
      const T *dyr = dy + r * cols, *yr = y + r * cols;
      T* dxr = dx + r * cols;
      double s = 0;
      if (log) {
        for (int64_t c = 0; c < cols; ++c) s += ld(dyr, c);
        for (int64_t c = 0; c < cols; ++c) st(dxr, c, ld(dyr, c) - std::exp(ld(yr, c)) * s);
      } else {
        for (int64_t c = 0; c < cols; ++c) s += ld(dyr, c) * ld(yr, c);
        for (int64_t c = 0; c < cols; ++c) st(dxr, c, ld(yr, c) * (ld(dyr, c) - s));
      }
    });
  });
}

void CpuBackend::layer_norm_fwd(void* yv, float* mean, float* rstd, const void* xv, const void* wv, const void* bv,
                                int64_t rows, int64_t cols, double eps, DType dt) {
  dispatch_float(dt, "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const T *x = static_cast<const T*>(xv), *w = static_cast<const T*>(wv), *b = static_cast<const T*>(bv);
    T* y = static_cast<T*>(yv);
    parallel_rows(rows, cols, [&](int64_t r) {
      const T* xr = x + r * cols;
      double mu, rs;
      layer_norm_stats(xr, cols, eps, mu, rs);
      if (mean) mean[r] = static_cast<float>(mu);
      if (rstd) rstd[r] = static_cast<float>(rs);
      for (int64_t c = 0; c < cols; ++c) {
        double v = (ld(xr, c) - mu) * rs;
        if (w) v *= ld(w, c);
        if (b) v += ld(b, c);
        st(y + r * cols, c, v);
      }
    });
  });
}

void CpuBackend::layer_norm_bwd(void* dxv, float* dw, float* db, const void* dyv, const void* xv, const float* mean,
                                const float* rstd, const void* wv, int64_t rows, int64_t cols, DType dt) {
  dispatch_float(dt, "layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T *x = static_cast<const T*>(xv), *dy = static_cast<const T*>(dyv), *w = static_cast<const T*>(wv);
    T* dx = static_cast<T*>(dxv);
    if (dx) {
      parallel_rows(rows, cols, [&](int64_t r) {
        const T *xr = x + r * cols, *dyr = dy + r * cols;
        double mu = mean[r], rs = rstd[r];
        // g = dy * w; dx = rs * (g - mean(g) - xhat * mean(g * xhat))
        double sg = 0, sgx = 0;
        for (int64_t c = 0; c < cols; ++c) {
          double g = ld(dyr, c) * (w ? ld(w, c) : 1.0), xh = (ld(xr, c) - mu) * rs;
          sg += g;
          sgx += g * xh;
        }
        sg /= static_cast<double>(cols);
        sgx /= static_cast<double>(cols);
        for (int64_t c = 0; c < cols; ++c) {
          double g = ld(dyr, c) * (w ? ld(w, c) : 1.0), xh = (ld(xr, c) - mu) * rs;
          st(dx + r * cols, c, rs * (g - sg - xh * sgx));
        }
      });
    }
    if (dw || db) {
      std::vector<double> aw(static_cast<size_t>(cols), 0.0), ab(static_cast<size_t>(cols), 0.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          double d = ld(dy, r * cols + c);
          aw[c] += d * (ld(x, r * cols + c) - mean[r]) * rstd[r];
          ab[c] += d;
        }
      for (int64_t c = 0; c < cols; ++c) {
        if (dw) dw[c] = static_cast<float>(aw[c]);
        if (db) db[c] = static_cast<float>(ab[c]);
      }
    }
  });
}

void CpuBackend::rms_norm_fwd(void* yv, float* rstd, const void* xv, const void* wv, int64_t rows, int64_t cols,
                              double eps, DType dt) {
  dispatch_float(dt, "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    const T *x = static_cast<const T*>(xv), *w = static_cast<const T*>(wv);
    T* y = static_cast<T*>(yv);
    parallel_rows(rows, cols, [&](int64_t r) {
      rms_norm_row(y + r * cols, rstd ? rstd + r : nullptr, x + r * cols, w, cols, eps);
    });
  });
}

void CpuBackend::rms_norm_bwd(void* dxv, float* dw, const void* dyv, const void* xv, const float* rstd,
                              const void* wv, int64_t rows, int64_t cols, DType dt) {
  dispatch_float(dt, "rms_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T *x = static_cast<const T*>(xv), *dy = static_cast<const T*>(dyv), *w = static_cast<const T*>(wv);
    T* dx = static_cast<T*>(dxv);
    if (dx)
      parallel_rows(rows, cols, [&](int64_t r) {
        rms_norm_dx_row(dx + r * cols, dy + r * cols, x + r * cols, rstd[r], w, cols);
      });
    if (dw) rms_norm_dw(dw, dy, x, rstd, rows, cols);
  });
}

void CpuBackend::cross_entropy_fwd(float* loss, float* lse, const void* lv, const int64_t* targets, int64_t rows,
                                   int64_t cols, int64_t ignore_index, DType dt) {
  dispatch_float(dt, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(lv);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t t = targets[r];
      if (t != ignore_index && (t < 0 || t >= cols))
        throw std::out_of_range("cross_entropy: target " + std::to_string(t) + " out of range [0, " +
                                std::to_string(cols) + ")");
    }
    parallel_rows(rows, cols, [&](int64_t r) {
      const T* xr = x + r * cols;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, ld(xr, c));
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += std::exp(ld(xr, c) - mx);
      double l = mx + std::log(s);
      lse[r] = static_cast<float>(l);
      int64_t t = targets[r];
      loss[r] = t == ignore_index ? 0.0f : static_cast<float>(l - ld(xr, t));
    });
  });
}

// With bf16 dlogits of float32 logits, each value is rounded to float32 first (st through float),
// then to bf16: what casting the float32 dlogits would give.
void CpuBackend::cross_entropy_bwd(void* dv, const float* dloss, const void* lv, const float* lse,
                                   const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index,
                                   DType dt, DType dx_dt) {
  const auto run = [&](auto tag, auto out_tag) {
    using T = decltype(tag);
    using O = decltype(out_tag);
    const T* x = static_cast<const T*>(lv);
    O* d = static_cast<O*>(dv);
    parallel_rows(rows, cols, [&](int64_t r) {
      const T* xr = x + r * cols;
      O* dr = d + r * cols;
      int64_t t = targets[r];
      if (t == ignore_index) {
        for (int64_t c = 0; c < cols; ++c) st(dr, c, 0.0);
        return;
      }
      double g = dloss[r], l = lse[r];
      for (int64_t c = 0; c < cols; ++c) st(dr, c, g * (std::exp(ld(xr, c) - l) - (c == t ? 1.0 : 0.0)));
    });
  };
  check_dlogits_dtype(dt, dx_dt);
  if (dx_dt != dt) return run(float{}, bf16{});
  dispatch_float(dt, "cross_entropy backward", [&](auto tag) { run(tag, tag); });
}

void CpuBackend::adamw(const AdamWArgs& a) {
  const smath::AdamWScalars s{a.lr, a.beta1, a.beta2, a.eps, a.bias_correction1, a.bias_correction2, a.grad_scale};
  const bool bf16_grad = a.grad_dtype == DType::bf16;
#pragma omp parallel for schedule(static) if (a.n >= kParallelGrain)
  for (int64_t i = 0; i < a.n; ++i) {
    const float g = bf16_grad ? static_cast<const bf16*>(a.grad)[i].to_float() : static_cast<const float*>(a.grad)[i];
    smath::adamw_step(a.param[i], a.m[i], a.v[i], g, a.weight_decay, s);
  }
}

}  // namespace ttt::cpu_impl

// --- add_rms_norm (kernels/add_rms_norm.h): the rms_norm row functions above after the add ------------

namespace ttt {

namespace {
double row_io(int64_t rows, int64_t cols, DType dt, double tensors) {
  return tensors * static_cast<double>(rows * cols) * static_cast<double>(dtype_size(dt));
}
}  // namespace

double AddRmsNormForward::bytes() const {
  return row_io(rows, cols, dtype, 4) + (w ? row_io(1, cols, dtype, 1) : 0) + 4.0 * static_cast<double>(rows);
}
double AddRmsNormBackward::bytes() const {
  return row_io(rows, cols, dtype, dsum ? 4 : 2) + (w ? row_io(1, cols, dtype, 1) : 0) + 4.0 * static_cast<double>(rows);
}

void AddRmsNormForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::add_rms_norm_forward,
                           [](Backend& b, auto& c) { cuda_impl::add_rms_norm_forward(b, c); });
}

void AddRmsNormBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::add_rms_norm_backward,
                           [](Backend& b, auto& c) { cuda_impl::add_rms_norm_backward(b, c); });
}

namespace cpu_impl {

void add_rms_norm_forward(AddRmsNormForward& a) {
  dispatch_float(a.dtype, "add_rms_norm", [&](auto tag) {
    using T = decltype(tag);
    const T *h = static_cast<const T*>(a.h), *y = static_cast<const T*>(a.y), *w = static_cast<const T*>(a.w);
    T *s = static_cast<T*>(a.s), *n = static_cast<T*>(a.n);
    const int64_t cols = a.cols;
    bf16* low = static_cast<bf16*>(a.n_low);
    if (low && a.dtype != DType::f32) throw std::invalid_argument("add_rms_norm: n_low needs float32 data");
    parallel_rows(a.rows, cols, [&](int64_t r) {
      add_row(s + r * cols, h + r * cols, y + r * cols, cols);
      rms_norm_row(n + r * cols, a.rstd + r, s + r * cols, w, cols, a.eps);
      if (low)
        for (int64_t c = 0; c < cols; ++c) low[r * cols + c] = bf16::from_float(static_cast<float>(to_compute(n[r * cols + c])));
    });
  });
}

void add_rms_norm_backward(AddRmsNormBackward& a) {
  dispatch_float(a.dtype, "add_rms_norm backward", [&](auto tag) {
    using T = decltype(tag);
    const T *ds = static_cast<const T*>(a.ds), *dn = static_cast<const T*>(a.dn), *s = static_cast<const T*>(a.s),
            *w = static_cast<const T*>(a.w);
    T* dsum = static_cast<T*>(a.dsum);
    const int64_t cols = a.cols;
    if (dsum)
      parallel_rows(a.rows, cols, [&](int64_t r) {
        T* out = dsum + r * cols;
        rms_norm_dx_row(out, dn + r * cols, s + r * cols, a.rstd[r], w, cols);  // the norm's dx, in T
        add_row(out, ds + r * cols, out, cols);
      });
    if (a.dw) rms_norm_dw(a.dw, dn, s, a.rstd, a.rows, cols);
  });
}

}  // namespace cpu_impl

// --- gated_layer_norm (kernels/gated_layer_norm.h): LayerNorm rows with the gelu gate, every value in
// double, the parameter sums over rows in order ---------------------------------------------------

double GatedLayerNormForward::bytes() const {  // z, g read; y written; w, b; mean, rstd
  return row_io(rows, cols, dtype, 3) + row_io(1, cols, dtype, 2) + 8.0 * static_cast<double>(rows);
}
double GatedLayerNormBackward::bytes() const {  // dy, z, g read; dz, dg written
  return row_io(rows, cols, dtype, 3 + (dz ? 1 : 0) + (dg ? 1 : 0)) + row_io(1, cols, dtype, 2) +
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
    parallel_rows(a.rows, cols, [&](int64_t r) {
      const T *zr = z + r * cols, *gr = g + r * cols;
      double mu, rs;
      layer_norm_stats(zr, cols, a.eps, mu, rs);
      a.mean[r] = static_cast<float>(mu);
      a.rstd[r] = static_cast<float>(rs);
      for (int64_t c = 0; c < cols; ++c) {
        const double l = (ld(zr, c) - mu) * rs * at_or(w, c, 1.0) + at_or(b, c, 0.0);
        st(y + r * cols, c, smath::gelu_tanh(ld(gr, c)) * l);
      }
    });
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
    parallel_rows(a.rows, cols, [&](int64_t r) {
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
    });
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
