// kernels/scalar_math.h — the per-element math of UnaryOp / BinaryOp and of the AdamW step, shared
// by the CPU and CUDA backends (TTT_HD), so both compute the same formulas. T is float or double.
#pragma once

#include <cmath>

#include "kernels/backend.h"

namespace ttt::smath {

template <class T> TTT_HD T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }

// gelu_tanh(x) = 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi)
template <class T> TTT_HD T gelu_tanh(T x) {
  const T c = T(0.7978845608028654);
  return T(0.5) * x * (T(1) + tanh(c * (x + T(0.044715) * x * x * x)));
}
template <class T> TTT_HD T gelu_tanh_grad(T x) {
  const T c = T(0.7978845608028654);
  T u = c * (x + T(0.044715) * x * x * x);
  T th = tanh(u);
  T du = c * (T(1) + T(3) * T(0.044715) * x * x);
  return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du;
}
// gelu_tanh(x) with its first and second derivatives from one tanh (the fused TTT-MLP scan's
// backward differentiates its inner gradient through gelu'):
//   y = ½ x (1 + th),  y' = ½ (1 + th) + ½ x (1 − th²) du,  y'' = (1 − th²) (du + ½ x (ddu − 2 th du²))
// with th = tanh(c (x + 0.044715 x³)), du = c (1 + 3 · 0.044715 x²), ddu = 6 · 0.044715 c x.
template <class T> struct GeluTerms { T y, d1, d2; };
template <class T> TTT_HD GeluTerms<T> gelu_tanh_terms(T x) {
  const T c = T(0.7978845608028654), a = T(0.044715);
  const T th = tanh(c * (x + a * x * x * x));
  const T du = c * (T(1) + T(3) * a * x * x), ddu = T(6) * a * c * x, sech2 = T(1) - th * th;
  return {T(0.5) * x * (T(1) + th), T(0.5) * (T(1) + th) + T(0.5) * x * sech2 * du,
          sech2 * (du + T(0.5) * x * (ddu - T(2) * th * du * du))};
}
// gelu_erf(x) = 0.5 x (1 + erf(x / sqrt 2))
template <class T> TTT_HD T gelu_erf(T x) { return T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476))); }
template <class T> TTT_HD T gelu_erf_grad(T x) {
  return T(0.5) * (T(1) + erf(x * T(0.7071067811865476))) + x * T(0.3989422804014327) * exp(T(-0.5) * x * x);
}
template <class T> TTT_HD T silu(T x) { return x * sigmoid(x); }
template <class T> TTT_HD T silu_grad(T x) {
  T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}
// silu''(x) = σ (1 − σ) (2 + x (1 − 2σ))
template <class T> TTT_HD T silu_second(T x) {
  T s = sigmoid(x);
  return s * (T(1) - s) * (T(2) + x * (T(1) - T(2) * s));
}

template <class T> TTT_HD T unary(UnaryOp op, T x, T a, T b) {
  switch (op) {
    case UnaryOp::copy: return x;
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp(x);
    case UnaryOp::log: return log(x);
    case UnaryOp::sqrt: return sqrt(x);
    case UnaryOp::rsqrt: return T(1) / sqrt(x);
    case UnaryOp::tanh: return tanh(x);
    case UnaryOp::sigmoid: return sigmoid(x);
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::silu: return silu(x);
    case UnaryOp::gelu_tanh: return gelu_tanh(x);
    case UnaryOp::gelu_erf: return gelu_erf(x);
    case UnaryOp::abs: return x < T(0) ? -x : x;
    case UnaryOp::sign: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::reciprocal: return T(1) / x;
    case UnaryOp::square: return x * x;
    case UnaryOp::pow_scalar: return pow(x, a);
    case UnaryOp::affine: return a * x + b;
    case UnaryOp::scaled_sigmoid: return a * sigmoid(x);
    case UnaryOp::silu_grad: return silu_grad(x);
    case UnaryOp::gelu_tanh_grad: return gelu_tanh_grad(x);
    case UnaryOp::gelu_erf_grad: return gelu_erf_grad(x);
    case UnaryOp::relu_mask: return x > T(0) ? T(1) : T(0);
  }
  return x;
}

template <class T> TTT_HD T binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::div: return x / y;
    case BinaryOp::maximum: return x >= y ? x : y;
    case BinaryOp::minimum: return x <= y ? x : y;
    case BinaryOp::pow: return pow(x, y);
    case BinaryOp::eq: return x == y ? T(1) : T(0);
    case BinaryOp::ne: return x != y ? T(1) : T(0);
    case BinaryOp::lt: return x < y ? T(1) : T(0);
    case BinaryOp::le: return x <= y ? T(1) : T(0);
    case BinaryOp::gt: return x > y ? T(1) : T(0);
    case BinaryOp::ge: return x >= y ? T(1) : T(0);
  }
  return x;
}

// Integer variant (indices, token ids): arithmetic and comparisons; pow/div on integers truncate.
TTT_HD int64_t binary_int(BinaryOp op, int64_t x, int64_t y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::div: return y ? x / y : 0;
    case BinaryOp::maximum: return x >= y ? x : y;
    case BinaryOp::minimum: return x <= y ? x : y;
    case BinaryOp::pow: { int64_t r = 1; for (int64_t i = 0; i < y; ++i) r *= x; return r; }
    case BinaryOp::eq: return x == y;
    case BinaryOp::ne: return x != y;
    case BinaryOp::lt: return x < y;
    case BinaryOp::le: return x <= y;
    case BinaryOp::gt: return x > y;
    case BinaryOp::ge: return x >= y;
  }
  return x;
}

// --- AdamW -----------------------------------------------------------------------------------------

// Double operations rounded one at a time. nvcc fuses a*b + c into one FMA (one rounding) by
// default; the explicit round-to-nearest intrinsics keep it from doing so, so a CUDA kernel rounds
// exactly like the host build (x86-64 without -mfma has no FMA to contract into).
TTT_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
TTT_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
TTT_HD double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
TTT_HD double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
TTT_HD double dsqrt(double a) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// The hyper-parameters of one AdamW step (AdamWArgs in backend.h; bias corrections precomputed).
struct AdamWScalars {
  double lr, beta1, beta2, eps, bias_correction1, bias_correction2, grad_scale;
};

// One element of the AdamW step, in double, every operation in the written order:
//   g = grad * grad_scale;  m = b1 m + (1-b1) g;  v = b2 v + ((1-b2) g) g
//   p -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + wd * p)
// m and v are stored as float32 but the update uses their double values. Both backends' adamw
// and the multi-tensor AdamW (kernels/multi_tensor.h) call this, so they agree bit for bit.
TTT_HD void adamw_step(float& p, float& m, float& v, float grad, double weight_decay, const AdamWScalars& s) {
  const double g = dmul(static_cast<double>(grad), s.grad_scale);
  const double m2 = dadd(dmul(s.beta1, static_cast<double>(m)), dmul(1 - s.beta1, g));
  const double v2 = dadd(dmul(s.beta2, static_cast<double>(v)), dmul(dmul(1 - s.beta2, g), g));
  m = static_cast<float>(m2);
  v = static_cast<float>(v2);
  const double pd = p;
  const double step = dadd(ddiv(ddiv(m2, s.bias_correction1), dadd(dsqrt(ddiv(v2, s.bias_correction2)), s.eps)),
                           dmul(weight_decay, pd));
  p = static_cast<float>(dsub(pd, dmul(s.lr, step)));
}

}  // namespace ttt::smath
