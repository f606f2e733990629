// tests/layer_helpers.h — small helpers shared by the layers/ tests (not a test unit itself).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "layers/module.h"

namespace ttt::testing {

// Overwrites a parameter's values (no autograd involved).
inline void set_values(Tensor t, const std::vector<double>& v) {
  NoGradGuard ng;
  t.copy_(from_vector(v, t.shape(), opts(t.dtype(), t.device())));
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.tolist<double>(), y = b.tolist<double>();
  if (x.size() != y.size()) return INFINITY;
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(x[i] - y[i]);
    if (std::isnan(d)) return INFINITY;  // std::max would drop it: a NaN must fail any tolerance
    e = std::max(e, d);
  }
  return e;
}

// max |a − b| / (atol_scale + |b|) over elements: a relative error that tolerates zeros.
inline double max_rel_diff(const Tensor& a, const Tensor& b, double floor = 1e-12) {
  auto x = a.tolist<double>(), y = b.tolist<double>();
  if (x.size() != y.size()) return INFINITY;
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(x[i] - y[i]) / (floor + std::fabs(y[i]));
    if (std::isnan(d)) return INFINITY;
    e = std::max(e, d);
  }
  return e;
}

// max |a − b| / max(1, max |b|): for float32 results against a float64-accumulated reference,
// where single elements can be small differences of larger terms (an elementwise relative check
// would flag their rounding).
inline double max_scaled_diff(const Tensor& a, const Tensor& b) {
  const auto y = b.tolist<double>();
  double scale = 1.0;
  for (double v : y) scale = std::max(scale, std::fabs(v));
  return max_abs_diff(a, b) / scale;
}

// Random float64 leaf (requires grad when asked), seeded.
inline Tensor rand64(const Shape& s, uint64_t seed, bool requires_grad = false, double std = 1.0) {
  Generator g(seed);
  Tensor t = randn(s, g, opts(DType::f64), 0.0, std);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

// Random token ids in [0, vocab).
inline Tensor rand_ids(const Shape& s, int64_t vocab, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v;
  for (double u : rand(s, g, opts(DType::f64), 0.0, static_cast<double>(vocab)).tolist<double>())
    v.push_back(std::min<int64_t>(vocab - 1, static_cast<int64_t>(u)));
  return from_vector_i64(v, s);
}

// All parameters of m, in f64, as gradcheck inputs (they are leaves requiring grad already).
inline tensor_list params_of(const Module& m) { return m.parameters(); }

// Results of a bf16-activation path against the float32-activation path: each float32, nonzero in
// the reference, and within rel · max|reference| of it (the bf16 roundings of what is stored).
inline void check_near_reference(const tensor_list& got, const tensor_list& ref, double rel) {
  REQUIRE(got.size() == ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].dtype() == DType::f32);
    const double scale = max(abs(ref[i])).item();
    CHECK(scale > 0.01);
    CHECK(max(abs(sub(got[i], ref[i]))).item() < rel * scale);
  }
}

}  // namespace ttt::testing
