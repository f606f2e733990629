// tests/bench_cuda_backend.cpp — throughput of the CUDA backend's main kernels (not a test; built
// as `bench_cuda_backend` when CUDA is on, never run by ctest). Prints one line per kernel: the
// median time over repeated runs and the achieved rate (TFLOP/s for GEMMs, GB/s of the bytes a
// kernel must move at minimum: each input read once, each output written once). Inputs are random
// (never zeros). Usage: ./build/tests/bench_cuda_backend [optimizer]  (optimizer: only the rows of
// the optimizer step, per-tensor kernels against the multi-tensor ones of kernels/multi_tensor.h)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/multi_tensor.h"

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


// The optimizer step's kernels over the parameter list of a 125M TTT-Linear-like model (302
// tensors, 110M parameters: a 32000 x 768 embedding; per layer of 12, four 768 x 768 and three
// 768 x 2048 matrices, a 12 x 64 x 64 inner weight, a 768 x 12 gate and 16 small vectors; a
// final norm), each tensor at its own 512-byte aligned address as the allocator gives them: one
// kernel call per tensor (the path before kernels/multi_tensor.h) against one multi-tensor call.
void bench_optimizer() {
  std::vector<int64_t> sizes = {32000 * 768};
  for (int layer = 0; layer < 12; ++layer) {
    for (int i = 0; i < 4; ++i) sizes.push_back(768 * 768);
    for (int i = 0; i < 3; ++i) sizes.push_back(768 * 2048);
    sizes.push_back(12 * 64 * 64);
    sizes.push_back(768 * 12);
    for (int i = 0; i < 16; ++i) sizes.push_back(i % 3 ? 768 : 64);
  }
  sizes.push_back(768);
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (int64_t n : sizes) {
    offsets.push_back(total);
    total += (n + 127) / 128 * 128;
  }
  const double P = static_cast<double>(total);
  std::printf("optimizer step over %zu tensors, %.1fM parameters\n", sizes.size(), P / 1e6);
  Buf p(total, DType::f32), m(total, DType::f32, -0.01, 0.01), v(total, DType::f32, 0.0001, 0.01);
  for (DType gd : {DType::f32, DType::bf16}) {
    Buf g(total, gd);
    const double gs = static_cast<double>(dtype_size(gd)), bytes = (24.0 + gs) * P;
    auto f = [](const Buf& b, int64_t o) { return static_cast<float*>(b.p) + o; };
    std::vector<AdamWTensor> list;
    for (size_t i = 0; i < sizes.size(); ++i)
      list.push_back({f(p, offsets[i]), static_cast<char*>(g.p) + offsets[i] * dtype_size(gd), gd, f(m, offsets[i]),
                      f(v, offsets[i]), sizes[i], i % 2 ? 0.0 : 0.1});
    report_bw(std::string("adamw per tensor (302 calls), ") + dtype_name(gd) + " grads", time_ms([&] {
                for (const AdamWTensor& t : list) {
                  AdamWArgs a;
                  a.param = t.param; a.grad = t.grad; a.grad_dtype = gd; a.m = t.m; a.v = t.v; a.n = t.n;
                  a.lr = 1e-4; a.weight_decay = t.weight_decay;
                  gpu().adamw(a);
                }
              }),
              bytes);
    AdamWMulti call;
    call.tensors = list.data();
    call.count = list.size();
    call.lr = 1e-4;
    report_bw(std::string("adamw_multi (1 call), ") + dtype_name(gd) + " grads", time_ms([&] { gpu().run(call); }), bytes);

    Buf sums(static_cast<int64_t>(sizes.size()), DType::f32);
    Buf g32(gd == DType::f32 ? 1 : total, DType::f32);  // the per-tensor norm reduces a float32 copy of bf16 grads
    report_bw(std::string("sum_sq per tensor (302 reduce calls), ") + dtype_name(gd) + " grads", time_ms([&] {
                for (size_t i = 0; i < sizes.size(); ++i) {
                  View in = g.view({sizes[i]});
                  in.data = static_cast<char*>(g.p) + offsets[i] * dtype_size(gd);
                  if (gd != DType::f32) {
                    View c = g32.view({sizes[i]});
                    c.data = f(g32, offsets[i]);
                    gpu().unary(UnaryOp::copy, c, in);
                    in = c;
                  }
                  View out = sums.view({1});
                  out.data = f(sums, static_cast<int64_t>(i));
                  gpu().reduce(ReduceOp::sum_sq, out, in);
                }
              }),
              gs * P);
    std::vector<SumSqTensor> sq;
    for (size_t i = 0; i < sizes.size(); ++i)
      sq.push_back({static_cast<char*>(g.p) + offsets[i] * dtype_size(gd), gd, sizes[i], f(sums, static_cast<int64_t>(i))});
    SumSqMulti sq_call;
    sq_call.tensors = sq.data();
    sq_call.count = sq.size();
    report_bw(std::string("sum_sq_multi (1 call), ") + dtype_name(gd) + " grads", time_ms([&] { gpu().run(sq_call); }),
              gs * P);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_available()) {
    std::printf("no CUDA device visible\n");
    return 1;
  }
  if (argc > 1 && std::string(argv[1]) == "optimizer") {
    bench_optimizer();
    return 0;
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
                                        V, -100, DType::bf16, DType::bf16);
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
  bench_optimizer();
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
