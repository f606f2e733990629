// bench/attention_bench.cpp — fused attention (scaled_dot_product_attention: the FlashAttention-
// style kernels) against the composite path it replaces (matmul, additive causal mask, softmax,
// matmul; [B,H,T,T] scores in memory), forward and forward+backward, on one device.
//
// Usage: build/bin/attention_bench [--B 8] [--H 12] [--T 2048] [--D 64] [--window 0]
//                                  [--dtype bf16] [--device cuda] [--reps 20] [--no-composite]
// Defaults are the paper's 125M Transformer++ attention (12 heads of 64, 2k context, batch 8).
// Prints the median time of `reps` runs (each synchronized), the effective TFLOP/s and the peak
// memory of each, and how far the fused results are from the composite ones.
// FLOPs count only the visible (query, key) pairs: 4·B·H·D per pair forward (QKᵀ and PV), i.e.
// 2·B·H·T²·D for causal attention (half of non-causal's 4·B·H·T²·D); backward = 2.5 x forward
// (five products of the same size). The composite path computes the masked half too; its TFLOP/s
// use the same (useful) count, so the columns compare times.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "bench/bench_util.h"

using namespace ttt;
using ttt::bench::median_ms;

namespace {

struct Options {
  int64_t B = 8, H = 12, T = 2048, D = 64, window = 0;
  int reps = 20;
  DType dtype = DType::bf16;
  Device device = cuda();
  bool composite = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("attention_bench: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--B") o.B = std::stoll(next());
    else if (a == "--H") o.H = std::stoll(next());
    else if (a == "--T") o.T = std::stoll(next());
    else if (a == "--D") o.D = std::stoll(next());
    else if (a == "--window") o.window = std::stoll(next());
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--dtype") o.dtype = parse_dtype(next());
    else if (a == "--device") o.device = parse_device(next());
    else if (a == "--no-composite") o.composite = false;
    else throw std::invalid_argument("attention_bench: unknown option " + a);
  }
  return o;
}

// Median wall time in ms of f() followed by a device synchronization, after one warm-up run.
// softmax(q kᵀ · scale + mask) v from primitive ops, the mask [T, T] additive (0 / −inf).
Tensor composite(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale) {
  Tensor scores = add(mul_scalar(matmul(q, transpose(k, -2, -1)), scale), mask);
  return matmul(softmax(scores, -1), v);
}

double rel_err(const Tensor& a, const Tensor& ref) {
  Tensor d = sub(a.to(DType::f32), ref.to(DType::f32));
  const double num = std::sqrt(sum(mul(d, d)).item());
  const double den = std::sqrt(sum(mul(ref.to(DType::f32), ref.to(DType::f32))).item());
  return den > 0 ? num / den : num;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  Backend& be = backend(o.device);
  const double scale = 1.0 / std::sqrt(static_cast<double>(o.D));
  Generator g(7);
  const TensorOptions to = opts(o.dtype, o.device);
  Tensor q = randn({o.B, o.H, o.T, o.D}, g, to).set_requires_grad(true);
  Tensor k = randn({o.B, o.H, o.T, o.D}, g, to).set_requires_grad(true);
  Tensor v = randn({o.B, o.H, o.T, o.D}, g, to).set_requires_grad(true);
  Tensor dout = randn({o.B, o.H, o.T, o.D}, g, to);

  // Visible pairs per (batch, head): Σ_i min(i + 1, window).
  double pairs = 0;
  for (int64_t i = 0; i < o.T; ++i) pairs += static_cast<double>(o.window > 0 ? std::min(i + 1, o.window) : i + 1);
  const double fwd_flops = 4.0 * static_cast<double>(o.B * o.H * o.D) * pairs;
  const double train_flops = 3.5 * fwd_flops;

  std::printf("attention B=%lld H=%lld T=%lld D=%lld %s causal window=%lld on %s, median of %d\n",
              static_cast<long long>(o.B), static_cast<long long>(o.H), static_cast<long long>(o.T),
              static_cast<long long>(o.D), dtype_name(o.dtype), static_cast<long long>(o.window),
              o.device.str().c_str(), o.reps);
  std::printf("%-10s %-8s %10s %10s %10s\n", "path", "pass", "ms", "TFLOP/s", "peak MiB");
  auto report = [&](const char* path, const char* pass, double flops, const std::function<void()>& f) {
    be.synchronize();
    const size_t base = be.memory_allocated();
    be.reset_peak_memory();
    const double ms = median_ms(be, o.reps, f);
    const double peak = static_cast<double>(be.memory_peak() - base) / (1 << 20);
    std::printf("%-10s %-8s %10.3f %10.1f %10.0f\n", path, pass, ms, flops / (ms * 1e-3) / 1e12, peak);
  };

  Tensor y_fused;
  tensor_list g_fused;
  report("fused", "fwd", fwd_flops, [&] {
    NoGradGuard ng;
    y_fused = scaled_dot_product_attention(q, k, v, true, o.window, scale);
  });
  report("fused", "fwd+bwd", train_flops, [&] {
    g_fused = grad({scaled_dot_product_attention(q, k, v, true, o.window, scale)}, {q, k, v}, {dout});
  });
  if (!o.composite) return 0;

  // The additive mask, built once (as layers/attention.cpp caches it).
  std::vector<double> m(static_cast<size_t>(o.T * o.T), 0.0);
  for (int64_t i = 0; i < o.T; ++i)
    for (int64_t j = 0; j < o.T; ++j)
      if (j > i || (o.window > 0 && i - j >= o.window)) m[i * o.T + j] = -std::numeric_limits<double>::infinity();
  const Tensor mask = from_vector(m, {o.T, o.T}, to);
  Tensor y_comp;
  tensor_list g_comp;
  report("composite", "fwd", fwd_flops, [&] {
    NoGradGuard ng;
    y_comp = composite(q, k, v, mask, scale);
  });
  report("composite", "fwd+bwd", train_flops,
         [&] { g_comp = grad({composite(q, k, v, mask, scale)}, {q, k, v}, {dout}); });
  std::printf("fused vs composite, relative error norm: out %.2e  dq %.2e  dk %.2e  dv %.2e\n",
              rel_err(y_fused, y_comp), rel_err(g_fused[0], g_comp[0]), rel_err(g_fused[1], g_comp[1]),
              rel_err(g_fused[2], g_comp[2]));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "attention_bench: %s\n", e.what());
  return 1;
}
