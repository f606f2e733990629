// tests/check_close.h — |a − ref| <= atol + rtol·|ref| on every element, shared by the tests that
// compare an op against a reference written from primitive ops (not a test unit itself).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/tensor.h"

namespace ttt::testing {

struct Tol {
  double atol, rtol;
};

// Checks every element of a against ref (both read as float64) and reports the worst one;
// a NaN anywhere counts as the worst element, so it always fails.
inline void check_close(const Tensor& a, const Tensor& ref, Tol t, const std::string& what) {
  REQUIRE(a.defined());
  REQUIRE(a.shape() == ref.shape());
  auto x = a.to(DType::f64).tolist<double>(), r = ref.to(DType::f64).tolist<double>();
  double worst = -1;
  size_t at = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double excess = std::fabs(x[i] - r[i]) - (t.atol + t.rtol * std::fabs(r[i]));
    if (!(excess <= worst)) {  // NaN counts as the worst
      worst = std::isnan(excess) ? INFINITY : excess;
      at = i;
    }
  }
  INFO(what, ": worst element ", at, " got ", x[at], " expected ", r[at]);
  CHECK(worst <= 0);
}

// ‖a − ref‖ / ‖ref‖ <= tol over all elements (the measure for low-precision products, whose
// error is relative to the tensor's scale, not to each element); NaN fails.
inline double rel_norm_err(const Tensor& a, const Tensor& ref) {
  auto x = a.to(DType::f64).tolist<double>(), r = ref.to(DType::f64).tolist<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - r[i]) * (x[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}
inline void check_rel_norm(const Tensor& a, const Tensor& ref, double tol, const std::string& what) {
  REQUIRE(a.defined());
  REQUIRE(a.shape() == ref.shape());
  const double err = rel_norm_err(a, ref);
  INFO(what, ": relative error norm ", err, " (tolerance ", tol, ")");
  CHECK(err <= tol);  // false for NaN
}

}  // namespace ttt::testing
