// tests/cuda_test_util.h — helpers of the CUDA-vs-CPU tests (test_cuda_*.cpp): random inputs made
// on the CPU and copied to the GPU, NaN-poisoned outputs (an element a kernel forgets to write
// stays NaN and fails the comparison), and |gpu - cpu| <= atol + rtol |cpu| checks.
//
// Every test case starts with TTT_REQUIRE_GPU(): without a visible GPU (CI has nvcc but no GPU)
// it logs a message and returns, so the files build and pass everywhere — unless the environment
// has TTT_REQUIRE_GPU=1 (scripts/gpu_check.sh sets it, as TTT_REQUIRE_MPI for the MPI tests): then
// a missing GPU fails the test instead of passing it silently.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tensor.h"

#define TTT_REQUIRE_GPU()                                                          \
  do {                                                                             \
    if (!::ttt::cuda_available()) {                                                \
      if (::ttt::cudatest::gpu_required())                                         \
        FAIL("TTT_REQUIRE_GPU=1 but no CUDA device is visible (or ttt was built without CUDA)"); \
      MESSAGE("no CUDA device visible: test skipped");                             \
      return;                                                                      \
    }                                                                              \
  } while (0)

namespace ttt::cudatest {

// TTT_REQUIRE_GPU=1 in the environment: the GPU tests must run.
inline bool gpu_required() {
  const char* v = std::getenv("TTT_REQUIRE_GPU");
  return v && std::string(v) == "1";
}

inline Backend& cpu_be() { return backend(cpu()); }
inline Backend& gpu_be() { return backend(cuda()); }

struct Tol {
  double atol, rtol;
};
// Tolerances for results that both backends compute with the same formula in the same precision.
inline Tol tol_for(DType dt) {
  switch (dt) {
    case DType::f64: return {1e-12, 1e-10};
    case DType::f32: return {1e-5, 1e-5};
    case DType::bf16: return {1e-2, 1e-2};
    default: return {0, 0};  // integers: exact
  }
}

// The same tensor on the CPU (`c`) and the GPU (`g`).
struct Pair {
  Tensor c, g;
  template <class F> Pair map(F&& f) const { return {f(c), f(g)}; }
};

// Uniform values in [lo, hi) (integers: floor of that, so never all zero for a wide range).
inline Tensor random_cpu(const Shape& s, DType dt, Generator& gen, double lo = -1, double hi = 1) {
  Tensor u = rand(s, gen, opts(DType::f64), lo, hi);
  if (is_floating(dt)) return u.to(dt);
  std::vector<int64_t> v;
  v.reserve(static_cast<size_t>(u.numel()));
  for (double x : u.tolist<double>()) v.push_back(static_cast<int64_t>(std::floor(x)));
  return from_vector_i64(v, s, opts(dt));
}
inline Pair random_pair(const Shape& s, DType dt, Generator& gen, double lo = -1, double hi = 1) {
  Tensor c = random_cpu(s, dt, gen, lo, hi);
  return {c, c.to(cuda())};
}
// Outputs: NaN for floats, a sentinel for integers, on both devices.
inline Pair poisoned(const Shape& s, DType dt) {
  const double v = is_floating(dt) ? NAN : 12345;
  return {full(s, v, opts(dt)), full(s, v, opts(dt, cuda()))};
}

// Checks every element (NaN == NaN counts as equal) and reports the worst one.
inline void expect_close(const Tensor& gpu, const Tensor& ref, Tol tol, const std::string& what) {
  REQUIRE(gpu.shape() == ref.shape());
  const std::vector<double> a = gpu.tolist<double>(), r = ref.tolist<double>();
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool both_nan = std::isnan(a[i]) && std::isnan(r[i]);
    const double lim = tol.atol + tol.rtol * std::fabs(r[i]);
    const double err = std::fabs(a[i] - r[i]);
    if (both_nan || (a[i] == r[i]) || err <= lim) continue;  // a[i] == r[i] covers matching infinities
    ++bad;
    const double excess = std::isnan(err) ? INFINITY : err - lim;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (bad) {
    std::ostringstream os;
    os.precision(10);
    os << what << ": " << bad << " of " << a.size() << " elements off; worst at flat index " << worst << ": gpu "
       << a[worst] << " vs cpu " << r[worst] << " (atol " << tol.atol << ", rtol " << tol.rtol << ")";
    FAIL_CHECK(os.str());
  } else {
    CHECK(true);
  }
}
inline void expect_close(const Pair& p, Tol tol, const std::string& what) { expect_close(p.g, p.c, tol, what); }

inline std::string dname(DType d) { return dtype_name(d); }

}  // namespace ttt::cudatest
