// tests/test_cuda_ssd.cpp — the CUDA fused SSD scan (kernels/cuda/ssd.cu, Mamba 2) against the CPU
// reference (kernels/cpu/ssd.cpp, itself tested against the composite form in test_ssd_kernel):
//   forward (y, h_final) and backward (dx, ddt, dA, dB, dC, dh0) in float32 on the same random
//   inputs, outputs NaN-poisoned so an element a kernel forgets to write fails; shapes: groups, a
//   short last chunk, chunk > T, no initial state, and the 125M Mamba 2 layer's (24 heads of 64,
//   state 128, chunk 64, 300 tokens); then the Mamba 2 layer on the GPU against the same layer on
//   the CPU (values and every parameter's gradient).
// Skips itself without a GPU. Run: ./build/tests/test_cuda_ssd
#include <cmath>

#include "autograd/engine.h"
#include "kernels/ssd.h"
#include "layers/mamba2.h"
#include "layers/ssm_util.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::cudatest;
using ttt::testing::check_mixer_on_gpu;

namespace {

struct Inputs {
  Tensor x, dt, A, B, C, h0, dy, dhT;  // float32 on the CPU
};

Inputs make(const SSDShape& s, bool with_h0, uint64_t seed) {
  Generator g(seed);
  Inputs in;
  in.x = randn({s.batch, s.len, s.heads, s.head_dim}, g);
  in.dt = softplus(randn({s.batch, s.len, s.heads}, g, opts(DType::f32), -1.0, 1.0));
  in.A = neg(exp(randn({s.heads}, g, opts(DType::f32), 0.0, 0.5)));
  in.B = randn({s.batch, s.len, s.groups, s.state}, g, opts(DType::f32), 0.0, 0.3);
  in.C = randn({s.batch, s.len, s.groups, s.state}, g, opts(DType::f32), 0.0, 0.3);
  if (with_h0) in.h0 = randn({s.batch, s.heads, s.head_dim, s.state}, g);
  in.dy = randn({s.batch, s.len, s.heads, s.head_dim}, g);
  in.dhT = randn({s.batch, s.heads, s.head_dim, s.state}, g);
  return in;
}

// fwd + bwd through one backend; returns y, h_final, dx, ddt, dA, dB, dC, dh0 (on the CPU).
tensor_list run(Backend& be, Device dev, const Inputs& in, const SSDShape& s) {
  auto to = [&](const Tensor& t) { return t.defined() ? t.to(dev) : Tensor(); };
  auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.data_ptr() : nullptr; };
  auto nan_like = [&](const Tensor& t) { return t.defined() ? full(t.shape(), NAN, opts(DType::f32, dev)) : Tensor(); };
  Tensor x = to(in.x), dt = to(in.dt), A = to(in.A), B = to(in.B), C = to(in.C), h0 = to(in.h0), dy = to(in.dy),
         dhT = to(in.dhT);
  tensor_list r = {nan_like(x), nan_like(dhT), nan_like(x), nan_like(dt), nan_like(A), nan_like(B), nan_like(C),
                   nan_like(h0)};
  SsdForward f;
  f.s = s;
  f.x = ptr(x), f.dt = ptr(dt), f.A = ptr(A), f.B = ptr(B), f.C = ptr(C), f.h0 = ptr(h0);
  f.y = ptr(r[0]), f.h_final = ptr(r[1]);
  Tensor wf = empty({static_cast<int64_t>(f.workspace_bytes(dev) / 4) + 1}, opts(DType::f32, dev));
  f.workspace = wf.data_ptr();
  be.run(f);
  SsdBackward k;
  k.s = s;
  k.x = ptr(x), k.dt = ptr(dt), k.A = ptr(A), k.B = ptr(B), k.C = ptr(C), k.h0 = ptr(h0), k.dy = ptr(dy);
  k.dh_final = ptr(dhT);
  k.dx = ptr(r[2]), k.ddt = ptr(r[3]), k.dA = ptr(r[4]), k.dB = ptr(r[5]), k.dC = ptr(r[6]), k.dh0 = ptr(r[7]);
  Tensor wb = empty({static_cast<int64_t>(k.workspace_bytes(dev) / 4) + 1}, opts(DType::f32, dev));
  k.workspace = wb.data_ptr();
  be.run(k);
  be.synchronize();
  for (Tensor& t : r)
    if (t.defined()) t = t.to(cpu());
  return r;
}

// max |a − b| / max(1, max |b|): float32 sums of different order over up to ~10³ terms.
double scaled(const Tensor& a, const Tensor& b) {
  auto x = a.to(DType::f64).tolist<double>(), y = b.to(DType::f64).tolist<double>();
  double num = 0, den = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::isnan(x[i]) ? INFINITY : std::max(num, std::fabs(x[i] - y[i]));
    if (std::isinf(num)) break;
    den = std::max(den, std::fabs(y[i]));
  }
  return num / den;
}

}  // namespace

TEST_CASE("CUDA SsdForward / SsdBackward == the CPU reference (float32)") {
  TTT_REQUIRE_GPU();
  struct Case {
    SSDShape s;
    bool h0;
  };
  const Case cases[] = {
      {{2, 37, 4, 8, 2, 16, 16}, true},      // groups, a short last chunk
      {{1, 64, 2, 16, 1, 32, 32}, true},     // chunks divide T
      {{2, 5, 3, 4, 3, 8, 64}, false},       // chunk > T, no h0, a group per head
      {{1, 300, 24, 64, 1, 128, 64}, true},  // the 125M Mamba 2 layer's shape
  };
  const char* names[] = {"y", "h_final", "dx", "ddt", "dA", "dB", "dC", "dh0"};
  for (const Case& c : cases) {
    CAPTURE(c.s.len);
    CAPTURE(c.s.heads);
    REQUIRE(ssd_unsupported(cuda(), c.s) == "");
    Inputs in = make(c.s, c.h0, 7 + c.s.len);
    tensor_list cpu_r = run(cpu_be(), cpu(), in, c.s), gpu_r = run(gpu_be(), cuda(), in, c.s);
    for (size_t i = 0; i < cpu_r.size(); ++i) {
      if (!cpu_r[i].defined()) continue;
      CAPTURE(names[i]);
      CHECK(scaled(gpu_r[i], cpu_r[i]) < 2e-4);
    }
  }
  CHECK(ssd_unsupported(cuda(), SSDShape{1, 8, 2, 4, 1, 4, 4, DType::bf16}) != "");  // float32 only
}

TEST_CASE("Mamba 2 layer on the GPU (fused kernels) == on the CPU: values and every gradient") {
  TTT_REQUIRE_GPU();
  ModelConfig c;
  c.d_model = 64;
  c.n_heads = 4;
  c.mixer = "mamba2";
  c.mamba2.d_state = 32;
  c.mamba2.head_dim = 16;  // 8 heads
  c.mamba2.n_groups = 2;
  c.mamba2.chunk = 16;
  Generator g1(5), g2(5);
  Mamba2Mixer a(c, g1), b(c, g2);
  b.to(cuda());
  check_mixer_on_gpu(a, b, {2, 50, 64}, 2e-4, 5e-4);
}
