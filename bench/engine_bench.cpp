// bench/engine_bench.cpp — CPU microbenchmarks of the engine (issue "Foundation"):
//   1. matmul GFLOP/s through ttt::matmul vs calling OpenBLAS cblas_sgemm directly, same run;
//   2. the engine's overhead per op, in microseconds: a 1-element add with and without taping,
//      and the backward cost per taped node.
// Usage: build/bin/engine_bench [--reps N]. Prints a table; numbers go to BENCHMARKS.md.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"

using namespace ttt;
using Clock = std::chrono::steady_clock;

namespace {

template <class F> double median_seconds(int reps, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);

  std::printf("matmul float32, C = A @ B (n x n), median of %d\n", reps);
  std::printf("%6s %14s %14s %8s\n", "n", "ttt GFLOP/s", "BLAS GFLOP/s", "ratio");
  Generator g(1);
  for (int64_t n : {128, 256, 512, 1024, 2048}) {
    Tensor A = randn({n, n}, g), B = randn({n, n}, g);
    Tensor C = empty({n, n});
    NoGradGuard ng;
    double t_ttt = median_seconds(reps, [&] { C = matmul(A, B); });
    double t_blas = median_seconds(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0f, A.data<float>(), int(n),
                  B.data<float>(), int(n), 0.0f, C.data<float>(), int(n));
    });
    double flops = 2.0 * double(n) * double(n) * double(n);
    std::printf("%6lld %14.1f %14.1f %8.3f\n", static_cast<long long>(n), flops / t_ttt / 1e9, flops / t_blas / 1e9,
                t_blas / t_ttt);
  }

  const int ops = 200000;
  Tensor x = ones({1}), y = ones({1});
  Tensor p = ones({1}).set_requires_grad(true);
  double untaped, taped, bwd;
  {
    NoGradGuard ng;
    untaped = median_seconds(5, [&] {
      for (int i = 0; i < ops; ++i) y = add(x, x);
    }) / ops;
  }
  taped = median_seconds(5, [&] {
    for (int i = 0; i < ops; ++i) y = add(p, x);
  }) / ops;
  // Backward through a chain of n taped adds.
  const int chain = 20000;
  bwd = median_seconds(5, [&] {
    Tensor h = p;
    for (int i = 0; i < chain; ++i) h = add(h, x);
    backward({h});
  }) / chain;
  std::printf("\nper-op overhead (1-element float32 add)\n");
  std::printf("  untaped op (NoGradGuard):       %.2f us\n", untaped * 1e6);
  std::printf("  taped op (records a node):      %.2f us\n", taped * 1e6);
  std::printf("  forward+backward per taped node: %.2f us\n", bwd * 1e6);
  return 0;
}
