// tests/bench_cuda_backend.cpp — throughput of the CUDA backend's main kernels (not a test; built
// as `bench_cuda_backend` when CUDA is on, never run by ctest). Prints one line per kernel: the
// median time over repeated runs and the achieved rate (TFLOP/s for GEMMs, GB/s of the bytes a
// kernel must move at minimum: each input read once, each output written once). Inputs are random
// (never zeros). Usage: ./build/tests/bench_cuda_backend
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.h"

using namespace ttt;

namespace {

Backend& gpu() { return backend(cuda()); }

struct Buf {
  void* p = nullptr;
  size_t n = 0;
  DType dt = DType::f32;
  Buf(int64_t numel, DType d, double lo = -1, double hi = 1, uint64_t seed = 1)
      : n(static_cast<size_t>(numel) * dtype_size(d)), dt(d) {
    p = gpu().alloc(n);
    if (is_floating(d)) gpu().random(view({numel}), RandomDist::uniform, seed, 0, lo, hi);
  }
  ~Buf() { gpu().free(p, n); }
  View view(std::vector<int64_t> shape) const {
    View v;
    v.data = p;
    v.dtype = dt;
    v.ndim = static_cast<int>(shape.size());
    int64_t s = 1;
    for (int d = v.ndim - 1; d >= 0; --d) {
      v.size[d] = shape[d];
      v.stride[d] = s;
      s *= shape[d];
    }
    return v;
  }
};

// Median milliseconds of `reps` timed runs after `warm` untimed ones.
double time_ms(const std::function<void()>& f, int reps = 20, int warm = 3) {
  for (int i = 0; i < warm; ++i) f();
  gpu().synchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    gpu().synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void report_bw(const std::string& name, double ms, double bytes) {
  std::printf("%-52s %9.3f ms %9.1f GB/s\n", name.c_str(), ms, bytes / ms / 1e6);
}
void report_flops(const std::string& name, double ms, double flops) {
  std::printf("%-52s %9.3f ms %9.1f TFLOP/s\n", name.c_str(), ms, flops / ms / 1e9);
}

void bench_gemm(int64_t m, int64_t n, int64_t k, DType ab, DType c, int reps) {
  Buf A(m * k, ab), B(k * n, ab), C(m * n, c);
  GemmArgs g;
  g.m = m; g.n = n; g.k = k;
  g.a = A.p; g.lda = k;
  g.b = B.p; g.ldb = n;
  g.c = C.p; g.ldc = n;
  g.ab_dtype = ab; g.c_dtype = c;
  const double ms = time_ms([&] { gpu().gemm(g); }, reps);
  report_flops("gemm " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " " +
                   dtype_name(ab) + "->" + dtype_name(c),
               ms, 2.0 * m * n * k);
}

}  // namespace

int main() {
  if (!cuda_available()) {
    std::printf("no CUDA device visible\n");
    return 1;
  }
  bench_gemm(4096, 4096, 4096, DType::bf16, DType::bf16, 20);
  bench_gemm(8192, 8192, 8192, DType::bf16, DType::bf16, 10);
  bench_gemm(16384, 3072, 768, DType::bf16, DType::bf16, 20);
  bench_gemm(16384, 768, 3072, DType::bf16, DType::f32, 20);
  bench_gemm(4096, 4096, 4096, DType::f32, DType::f32, 5);

  const int64_t N = int64_t{64} << 20;
  {
    Buf a(N, DType::f32), b(N, DType::f32), y(N, DType::f32);
    report_bw("add f32 contiguous 64M", time_ms([&] { gpu().binary(BinaryOp::add, y.view({N}), a.view({N}), b.view({N})); }),
              12.0 * N);
    View bias = b.view({4096});
    View bb = bias;
    bb.ndim = 2;
    bb.size[0] = N / 4096; bb.size[1] = 4096; bb.stride[0] = 0; bb.stride[1] = 1;
    report_bw("add f32 [16384,4096] + bias[4096] (broadcast)",
              time_ms([&] { gpu().binary(BinaryOp::add, y.view({N / 4096, 4096}), a.view({N / 4096, 4096}), bb); }),
              8.0 * N);
    View at = a.view({8192, 8192});
    std::swap(at.stride[0], at.stride[1]);
    report_bw("copy f32 transposed 8192x8192", time_ms([&] { gpu().unary(UnaryOp::copy, y.view({8192, 8192}), at); }),
              8.0 * N);
    Buf h(N, DType::bf16);
    report_bw("copy f32 -> bf16 64M", time_ms([&] { gpu().unary(UnaryOp::copy, h.view({N}), a.view({N})); }), 6.0 * N);
    report_bw("gelu_tanh bf16 64M", time_ms([&] { gpu().unary(UnaryOp::gelu_tanh, h.view({N}), h.view({N})); }),
              4.0 * N);
    Buf s(4096, DType::f32);
    report_bw("sum f32 64M -> 1", time_ms([&] {
                View o = s.view({1});
                gpu().reduce(ReduceOp::sum, o, a.view({N}));
              }),
              4.0 * N);
    report_bw("sum f32 [16384,4096] over dim 1 (rows)", time_ms([&] {
                gpu().reduce(ReduceOp::sum, y.view({16384, 1}), a.view({16384, 4096}));
              }),
              4.0 * N);
    report_bw("sum f32 [16384,4096] over dim 0 (columns)", time_ms([&] {
                gpu().reduce(ReduceOp::sum, s.view({1, 4096}), a.view({16384, 4096}));
              }),
              4.0 * N);
  }
  {
    const int64_t rows = 16384, V = 32000;
    Buf x(rows * V, DType::bf16, -4, 4), dx(rows * V, DType::bf16);
    Buf loss(rows, DType::f32), lse(rows, DType::f32), dl(rows, DType::f32, 0.5, 1);
    std::vector<int64_t> t(rows);
    for (int64_t i = 0; i < rows; ++i) t[i] = (i * 7919) % V;
    void* tg = gpu().alloc(rows * 8);
    gpu().copy_from_host(tg, t.data(), rows * 8);
    const int64_t* tp = static_cast<const int64_t*>(tg);
    report_bw("cross_entropy fwd bf16 [16384,32000]", time_ms([&] {
                gpu().cross_entropy_fwd(static_cast<float*>(loss.p), static_cast<float*>(lse.p), x.p, tp, rows, V,
                                        -100, DType::bf16);
              }),
              2.0 * rows * V);
    report_bw("cross_entropy bwd bf16 [16384,32000]", time_ms([&] {
                gpu().cross_entropy_bwd(dx.p, static_cast<float*>(dl.p), x.p, static_cast<float*>(lse.p), tp, rows,
                                        V, -100, DType::bf16);
              }),
              4.0 * rows * V);
    gpu().free(tg, rows * 8);
    Buf s(rows * 2048, DType::bf16), sy(rows * 2048, DType::bf16);
    report_bw("softmax fwd bf16 [16384,2048]",
              time_ms([&] { gpu().softmax_fwd(sy.p, s.p, rows, 2048, DType::bf16, false); }), 4.0 * rows * 2048);
  }
  {
    const int64_t rows = 16384, C = 768;
    Buf x(rows * C, DType::f32), y(rows * C, DType::f32), w(C, DType::f32), b(C, DType::f32), dy(rows * C, DType::f32);
    Buf mean(rows, DType::f32), rstd(rows, DType::f32), dw(C, DType::f32), db(C, DType::f32);
    auto f = [](const Buf& q) { return static_cast<float*>(q.p); };
    report_bw("layer_norm fwd f32 [16384,768]", time_ms([&] {
                gpu().layer_norm_fwd(y.p, f(mean), f(rstd), x.p, w.p, b.p, rows, C, 1e-5, DType::f32);
              }),
              8.0 * rows * C);
    report_bw("layer_norm bwd f32 [16384,768] (dx, dw, db)", time_ms([&] {
                gpu().layer_norm_bwd(y.p, f(dw), f(db), dy.p, x.p, f(mean), f(rstd), w.p, rows, C, DType::f32);
              }),
              12.0 * rows * C);
  }
  {
    const int64_t P = 125'000'000;
    Buf p(P, DType::f32), m(P, DType::f32, -0.01, 0.01), v(P, DType::f32, 0.0001, 0.01), g(P, DType::bf16);
    AdamWArgs a;
    a.param = static_cast<float*>(p.p); a.m = static_cast<float*>(m.p); a.v = static_cast<float*>(v.p);
    a.grad = g.p; a.grad_dtype = DType::bf16; a.n = P; a.lr = 1e-4; a.weight_decay = 0.1;
    report_bw("adamw 125M params, bf16 grads", time_ms([&] { gpu().adamw(a); }), 26.0 * P);
  }
  {
    const int64_t V = 32000, D = 768, T = 16384;
    Buf w(V * D, DType::bf16), y(T * D, DType::bf16);
    std::vector<int64_t> ids(T);
    for (int64_t i = 0; i < T; ++i) ids[i] = (i * 104729) % V;
    Buf idx(T, DType::i64);
    gpu().copy_from_host(idx.p, ids.data(), T * 8);
    report_bw("index_select bf16 [32000,768] -> 16384 rows",
              time_ms([&] { gpu().index_select(y.view({T, D}), w.view({V, D}), 0, idx.view({T})); }), 4.0 * T * D);
    Buf gw(V * D, DType::f32), gy(T * D, DType::f32);
    report_bw("index_add f32 16384 rows -> [32000,768]",
              time_ms([&] { gpu().index_add(gw.view({V, D}), 0, idx.view({T}), gy.view({T, D})); }), 12.0 * T * D);
  }
  return 0;
}
