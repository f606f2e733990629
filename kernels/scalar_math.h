// kernels/scalar_math.h — the per-element math of UnaryOp / BinaryOp, shared by the CPU and CUDA
// backends (TTT_HD), so both compute the same formulas. T is float or double.
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

}  // namespace ttt::smath
