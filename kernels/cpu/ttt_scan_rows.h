// kernels/cpu/ttt_scan_rows.h — what the CPU references of the fused TTT scans (ttt_linear_scan.cpp,
// ttt_mlp_scan.cpp) share: per-(batch, head) element access, and the per-row inner LayerNorm, its
// LN-fused L2 gradient (ttt.py ln_fused_l2_bwd) and the backward of both, in double.
//
// LN-L2 gradient of one row z with target tgt, LN weight w and bias β:
//   x̂ = (z − μ)/σ,  gx = w ⊙ (w x̂ + β − tgt),  G = L(gx),  L(v) = (v − mean v − x̂ mean(v x̂)) / σ
// Its backward, given dG:
//   dgx = L(dG);  dx̂ = w² dgx − (mean(gx x̂) dG + gx mean(dG x̂)) / σ;  dσ = −Σ dG G / σ
//   dw += dgx ⊙ (2 w x̂ + β − tgt);  dβ += dgx ⊙ w;  dtgt = −w dgx;  dz = L(dx̂) + dσ x̂ / f
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "kernels/ttt_linear_decode.h"
#include "kernels/ttt_linear_scan.h"

namespace ttt::cpu_impl::scan_rows {

using Vec = std::vector<double>;

// Bytes a scan call moves (the profiler's count): `bhtf` [B, H, T, f] tensors in the I/O dtype,
// `bht` [B, H, T] ones and the stored states in the data dtype. Shape: a TTT*ScanShape.
template <class Shape>
double io_bytes(const Shape& s, double bhtf, double bht) {
  const double e = static_cast<double>(dtype_size(s.dtype)), eio = static_cast<double>(dtype_size(s.io_dtype()));
  const double n = static_cast<double>(s.batch * s.heads * s.len);
  return eio * n * static_cast<double>(s.head_dim) * bhtf + e * (n * bht + static_cast<double>(s.state_elems()));
}

// Element access of one (b, h) slice of XQ, XK, XV and lr, storage type S.
template <class S>
struct Head {
  const S *xq, *xk, *xv, *lr;
  int64_t st_q, st_k, st_v, st_lr;
  double q(int64_t t, int64_t c) const { return xq[t * st_q + c]; }
  double k(int64_t t, int64_t c) const { return xk[t * st_k + c]; }
  double v(int64_t t, int64_t c) const { return xv[t * st_v + c]; }
  double l(int64_t t) const { return lr[t * st_lr]; }
};

template <class S>
Head<S> head_of(const BHTView& xq, const BHTView& xk, const BHTView& xv, const BHTView& lr, int64_t b, int64_t h) {
  auto at = [&](const BHTView& v) { return static_cast<const S*>(v.data) + b * v.sb + h * v.sh; };
  return {at(xq), at(xk), at(xv), at(lr), xq.st, xk.st, xv.st, lr.st};
}

// Row statistics: x̂ = (z − μ)/σ, σ = sqrt(var + eps), biased variance.
inline void normalize_row(const double* z, int64_t f, double eps, double* xh, double* sig) {
  double mu = 0, var = 0;
  for (int64_t j = 0; j < f; ++j) mu += z[j];
  mu /= static_cast<double>(f);
  for (int64_t j = 0; j < f; ++j) var += (z[j] - mu) * (z[j] - mu);
  *sig = std::sqrt(var / static_cast<double>(f) + eps);
  for (int64_t j = 0; j < f; ++j) xh[j] = (z[j] - mu) / *sig;
}

// L(v) = (v − mean v − x̂ mean(v x̂)) / σ on one row: the LayerNorm's input gradient given the
// gradient v of x̂.
inline void ln_vjp_row(const double* v, const double* xh, double sig, int64_t f, double* out) {
  double m1 = 0, m2 = 0;
  for (int64_t j = 0; j < f; ++j) {
    m1 += v[j];
    m2 += v[j] * xh[j];
  }
  m1 /= static_cast<double>(f);
  m2 /= static_cast<double>(f);
  for (int64_t j = 0; j < f; ++j) out[j] = (v[j] - m1 - xh[j] * m2) / sig;
}

// The LN-L2 gradient G of row z (header comment); also x̂, σ and gx, which the backward needs.
inline void ln_l2_grad_row(const double* z, const double* tgt, const double* w, const double* beta, int64_t f,
                           double eps, double* xh, double* sig, double* gx, double* G) {
  normalize_row(z, f, eps, xh, sig);
  for (int64_t j = 0; j < f; ++j) gx[j] = (w[j] * xh[j] + beta[j] - tgt[j]) * w[j];
  ln_vjp_row(gx, xh, *sig, f, G);
}

// The backward of ln_l2_grad_row given dG: writes dz and dtgt, adds to dw and dbeta.
inline void ln_l2_grad_row_backward(const double* dG, const double* xh, double sig, const double* gx, const double* G,
                                    const double* tgt, const double* w, const double* beta, int64_t f, double* dz,
                                    double* dtgt, double* dw, double* dbeta) {
  const double fd = static_cast<double>(f);
  Vec dgx(f), dxh(f);
  ln_vjp_row(dG, xh, sig, f, dgx.data());
  double c_gx = 0, c_dg = 0, dsig = 0;
  for (int64_t j = 0; j < f; ++j) {
    c_gx += gx[j] * xh[j];
    c_dg += dG[j] * xh[j];
    dsig -= dG[j] * G[j];
  }
  c_gx /= fd;
  c_dg /= fd;
  dsig /= sig;
  for (int64_t j = 0; j < f; ++j) {
    dxh[j] = w[j] * w[j] * dgx[j] - (c_gx * dG[j] + gx[j] * c_dg) / sig;
    dw[j] += dgx[j] * (2 * w[j] * xh[j] + beta[j] - tgt[j]);
    dbeta[j] += dgx[j] * w[j];
    dtgt[j] = -w[j] * dgx[j];
  }
  ln_vjp_row(dxh.data(), xh, sig, f, dz);
  for (int64_t j = 0; j < f; ++j) dz[j] += dsig * xh[j] / fd;
}

// The backward of the output rule out = XQ + w x̂ + β (x̂ = LN of z̄) for one row given dout:
// writes dz̄, adds to dw and dbeta (dXQ = dout is the caller's).
inline void output_ln_row_backward(const double* dout, const double* xh, double sig, const double* w, int64_t f,
                                   double* dz, double* dw, double* dbeta) {
  Vec dxh(f);
  for (int64_t j = 0; j < f; ++j) {
    dxh[j] = dout[j] * w[j];
    dw[j] += dout[j] * xh[j];
    dbeta[j] += dout[j];
  }
  ln_vjp_row(dxh.data(), xh, sig, f, dz);
}

// dst[h, i] = Σ_b part(b · heads + h)[i] for i < size, summed in batch order (deterministic: the
// backward's per-(batch, head) partials of a shared parameter); nothing when dst is null.
template <class S, class Part>
void reduce_over_batch(void* dst, int64_t batch, int64_t heads, int64_t size, Part part) {
  if (!dst) return;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < size; ++i) {
      double sum = 0;
      for (int64_t b = 0; b < batch; ++b) sum += part(b * heads + h)[i];
      static_cast<S*>(dst)[h * size + i] = static_cast<S>(sum);
    }
}

// --- the decode steps' per-(batch, head) pieces (ttt_linear_decode.cpp, ttt_mlp_decode.cpp) ----------

// The (b, h) row of a [B, H, T, c] view, and the (b, h) block of a state tensor (null without data).
template <class S>
const S* row_at(const BHTView& v, int64_t b, int64_t h) {
  return static_cast<const S*>(v.data) + b * v.sb + h * v.sh;
}
template <class S>
const S* block_at(const HeadBlocks& m, int64_t b, int64_t h) {
  return m.data ? static_cast<const S*>(m.data) + b * m.sb + h * m.sh : nullptr;
}

// The inner LayerNorm's weight and bias of head h (1 and 0 without ln).
template <class S>
void ln_affine(const void* w, const void* b, int64_t h, int64_t f, bool ln, Vec& lw, Vec& lb) {
  lw.assign(f, 1.0);
  lb.assign(f, 0.0);
  if (!ln) return;
  for (int64_t j = 0; j < f; ++j) {
    lw[j] = static_cast<const S*>(w)[h * f + j];
    lb[j] = static_cast<const S*>(b)[h * f + j];
  }
}

// G = ∂ℓ/∂z for one token: the LN-L2 gradient with target xv − xk (ln), else z − xv.
template <class S>
void token_loss_grad(const Vec& z, const S* xv, const S* xk, const Vec& lw, const Vec& lb, int64_t f, double eps,
                     bool ln, Vec& G) {
  G.assign(f, 0.0);
  if (!ln) {
    for (int64_t j = 0; j < f; ++j) G[j] = z[j] - static_cast<double>(xv[j]);
    return;
  }
  Vec tgt(f), xh(f), gx(f);
  double sig = 0;
  for (int64_t j = 0; j < f; ++j) tgt[j] = static_cast<double>(xv[j]) - static_cast<double>(xk[j]);
  ln_l2_grad_row(z.data(), tgt.data(), lw.data(), lb.data(), f, eps, xh.data(), &sig, gx.data(), G.data());
}

// out = xq + LN(z̄) (ln) or z̄ for one token.
template <class S>
void token_output(S* out, const S* xq, const Vec& zbar, const Vec& lw, const Vec& lb, int64_t f, double eps, bool ln) {
  if (!ln) {
    for (int64_t j = 0; j < f; ++j) out[j] = static_cast<S>(zbar[j]);
    return;
  }
  Vec xh(f);
  double sig = 0;
  normalize_row(zbar.data(), f, eps, xh.data(), &sig);
  for (int64_t j = 0; j < f; ++j) out[j] = static_cast<S>(static_cast<double>(xq[j]) + lw[j] * xh[j] + lb[j]);
}

// Calls fn(double{}) or fn(float{}) by the storage dtype.
template <class F>
void by_dtype(DType dt, const char* op, F&& fn) {
  if (dt == DType::f64) return fn(double{});
  if (dt == DType::f32) return fn(float{});
  throw std::invalid_argument(std::string(op) + ": dtype must be float32 or float64");
}

}  // namespace ttt::cpu_impl::scan_rows
