// tests/layer_helpers.h — small helpers shared by the layers/ tests (not a test unit itself).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "layers/mixer.h"
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

// Runs m.step() on x [B, T, D] in pieces of the given lengths from a fresh state, without autograd,
// and joins the outputs over time: forward(x) again for a correct O(1) state.
inline Tensor decode_in_pieces(SequenceMixer& m, const Tensor& x, const std::vector<int64_t>& pieces) {
  NoGradGuard ng;
  auto st = m.init_state(x.shape()[0]);
  tensor_list ys;
  int64_t t0 = 0;
  for (int64_t n : pieces) {
    ys.push_back(m.step(narrow(x.detach(), 1, t0, n), *st));
    t0 += n;
  }
  REQUIRE(t0 == x.shape()[1]);
  return cat(ys, 1);
}

// The forward of `f` and the gradients of <f(), w> w.r.t. `in`.
struct ValuesAndGrads {
  Tensor y;
  tensor_list grads;
};
inline ValuesAndGrads values_and_grads(const std::function<Tensor()>& f, const tensor_list& in, const Tensor& w) {
  ValuesAndGrads r{f(), {}};
  r.grads = grad({sum(mul(r.y, w))}, in);
  return r;
}

// A mixer built twice from one seed, `on_gpu` already moved to the GPU: its output on x [B, T, D]
// and every parameter's gradient of <y, w> against `on_cpu`'s, as max_scaled_diff below y_tol and
// g_tol (x and w random, seeded).
inline void check_mixer_on_gpu(SequenceMixer& on_cpu, SequenceMixer& on_gpu, const Shape& x_shape, double y_tol,
                               double g_tol) {
  Generator gx(6);
  Tensor x = randn(x_shape, gx);
  Tensor w = randn(x_shape, gx);
  Tensor ya = on_cpu.forward(x.detach().set_requires_grad(true));
  Tensor yb = on_gpu.forward(x.to(cuda()));
  CHECK(max_scaled_diff(yb.to(cpu()), ya) < y_tol);
  sum(mul(ya, w)).backward();
  sum(mul(yb, w.to(cuda()))).backward();
  auto pa = on_cpu.named_parameters(), pb = on_gpu.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(max_scaled_diff(pb[i].second.grad().to(cpu()), pa[i].second.grad()) < g_tol);
  }
}

}  // namespace ttt::testing
