// tests/test_ssd_kernel.cpp — the fused SSD scan (kernels/ssd.h; Mamba 2) of the CPU reference
// kernel (kernels/cpu/ssd.cpp) against the composite chunked form (autograd/ops/ssd_scan.cpp
// with fused = false), which test_baseline_scans ties to the per-token recurrence:
//   outputs y and H_T, and every gradient (x, dt, A, B, C, h0) of <y, dy> + <H_T, dH_T>, in float64
//   (1e-12) and float32; groups of heads sharing B and C, chunks that do and do not divide T, a chunk
//   longer than T, no initial state; the op's fused backward (float32) == the composite's; the Mamba 2
//   layer fused == recurrent (kernels/gated_delta.h without the erase term) == composite, and its
//   decoding steps through the recurrent kernels == its forward. Run: ./build/tests/test_ssd_kernel
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "kernels/ssd.h"
#include "layers/mamba2.h"
#include "layers/ssm_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

struct Problem {
  SSDShape s;
  bool with_h0 = true;
  Tensor x, dt, A, B, C, h0, dy, dhT;  // float64
};

Problem make(int64_t Bz, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk, bool with_h0,
             uint64_t seed) {
  Problem p;
  p.s = SSDShape{Bz, T, H, P, G, N, chunk, DType::f64};
  p.with_h0 = with_h0;
  p.x = rand64({Bz, T, H, P}, seed);
  p.dt = softplus(rand64({Bz, T, H}, seed + 1)).detach();
  p.A = neg(exp(rand64({H}, seed + 2, false, 0.5))).detach();
  p.B = rand64({Bz, T, G, N}, seed + 3);
  p.C = rand64({Bz, T, G, N}, seed + 4);
  if (with_h0) p.h0 = rand64({Bz, H, P, N}, seed + 5);
  p.dy = rand64({Bz, T, H, P}, seed + 6);
  p.dhT = rand64({Bz, H, P, N}, seed + 7);
  return p;
}

struct Grads {
  Tensor y, hT, dx, ddt, dA, dB, dC, dh0;
};

// The backend kernels on buffers of dtype dt.
Grads kernel(const Problem& p, DType dt) {
  auto in = [&](const Tensor& t) { return t.defined() ? contiguous(t.to(dt)) : Tensor(); };
  auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.data_ptr() : nullptr; };
  auto nan_like = [&](const Tensor& t) { return t.defined() ? full(t.shape(), NAN, opts(dt)) : Tensor(); };
  const Tensor x = in(p.x), d = in(p.dt), A = in(p.A), B = in(p.B), C = in(p.C), h0 = in(p.h0), dy = in(p.dy),
               dhT = in(p.dhT);
  Grads g{nan_like(x), nan_like(dhT), nan_like(x), nan_like(d), nan_like(A), nan_like(B), nan_like(C), nan_like(h0)};
  SSDShape s = p.s;
  s.dtype = dt;
  REQUIRE(ssd_unsupported(cpu(), s).empty());
  SsdForward f;
  f.s = s;
  f.x = ptr(x), f.dt = ptr(d), f.A = ptr(A), f.B = ptr(B), f.C = ptr(C), f.h0 = ptr(h0);
  f.y = ptr(g.y), f.h_final = ptr(g.hT);
  backend(cpu()).run(f);
  SsdBackward k;
  k.s = s;
  k.x = ptr(x), k.dt = ptr(d), k.A = ptr(A), k.B = ptr(B), k.C = ptr(C), k.h0 = ptr(h0), k.dy = ptr(dy);
  k.dh_final = ptr(dhT);
  k.dx = ptr(g.dx), k.ddt = ptr(g.ddt), k.dA = ptr(g.dA), k.dB = ptr(g.dB), k.dC = ptr(g.dC), k.dh0 = ptr(g.dh0);
  backend(cpu()).run(k);
  return g;
}

// The composite form (or the op with `fused`) with autograd, float64 unless dt says otherwise.
Grads op(const Problem& p, bool fused, DType dt = DType::f64) {
  auto leaf = [&](const Tensor& t) { return t.defined() ? t.to(dt).detach().set_requires_grad(true) : Tensor(); };
  Tensor x = leaf(p.x), d = leaf(p.dt), A = leaf(p.A), B = leaf(p.B), C = leaf(p.C), h0 = leaf(p.h0);
  tensor_list r = ssd_scan(x, d, A, B, C, h0, p.s.chunk, fused);
  Tensor loss = add(sum(mul(r[0], p.dy.to(dt))), sum(mul(r[1], p.dhT.to(dt))));
  tensor_list in = {x, d, A, B, C};
  if (h0.defined()) in.push_back(h0);
  tensor_list gr = grad({loss}, in);
  return {r[0], r[1], gr[0], gr[1], gr[2], gr[3], gr[4], h0.defined() ? gr[5] : Tensor()};
}

void compare(const Grads& a, const Grads& b, double tol, const std::string& what) {
  CAPTURE(what);
  auto rel = [](const Tensor& x, const Tensor& y) {
    return max_abs_diff(x.to(DType::f64), y.to(DType::f64)) / std::max(1.0, max_abs_diff(y.to(DType::f64), zeros_like(y.to(DType::f64))));
  };
  CHECK_MESSAGE(rel(a.y, b.y) < tol, "y ", rel(a.y, b.y));
  CHECK_MESSAGE(rel(a.hT, b.hT) < tol, "h_T ", rel(a.hT, b.hT));
  CHECK_MESSAGE(rel(a.dx, b.dx) < tol, "dx ", rel(a.dx, b.dx));
  CHECK_MESSAGE(rel(a.ddt, b.ddt) < tol, "ddt ", rel(a.ddt, b.ddt));
  CHECK_MESSAGE(rel(a.dA, b.dA) < tol, "dA ", rel(a.dA, b.dA));
  CHECK_MESSAGE(rel(a.dB, b.dB) < tol, "dB ", rel(a.dB, b.dB));
  CHECK_MESSAGE(rel(a.dC, b.dC) < tol, "dC ", rel(a.dC, b.dC));
  REQUIRE(a.dh0.defined() == b.dh0.defined());
  if (a.dh0.defined()) CHECK_MESSAGE(rel(a.dh0, b.dh0) < tol, "dh0 ", rel(a.dh0, b.dh0));
}

std::vector<Problem> problems() {
  return {make(2, 7, 4, 3, 2, 3, 3, true, 10),    // groups, a short last chunk
          make(1, 9, 2, 2, 1, 4, 3, true, 20),    // chunks divide T
          make(2, 5, 3, 2, 3, 2, 8, false, 30),   // one chunk longer than T, no h0, a group per head
          make(1, 6, 2, 3, 1, 2, 1, true, 40),    // chunk 1: a pure recurrence
          make(1, 1, 1, 2, 1, 2, 4, true, 50)};   // one token
}

}  // namespace

TEST_CASE("CPU ssd kernels == the composite chunked form, float64 (values and every gradient)") {
  for (const Problem& p : problems()) compare(kernel(p, DType::f64), op(p, false), 1e-12, "f64");
}

TEST_CASE("CPU ssd kernels in float32 == the float64 composite to float32 accuracy") {
  for (const Problem& p : problems()) compare(kernel(p, DType::f32), op(p, false), 1e-5, "f32");
}

TEST_CASE("ssd_scan op: the fused path (float32 forward and backward) == the composite path") {
  for (const Problem& p : problems()) compare(op(p, true, DType::f32), op(p, false, DType::f32), 1e-5, "op f32");
  // float64: fused forward, composite backward.
  for (const Problem& p : problems()) compare(op(p, true), op(p, false), 1e-12, "op f64");
}

TEST_CASE("Mamba 2 layer: fused kernels == composite form (float32, values and gradients)") {
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.mixer = "mamba2";
  c.init_std = 0.3;
  c.mamba2.d_state = 3;
  c.mamba2.head_dim = 4;
  c.mamba2.n_groups = 2;
  c.mamba2.chunk = 3;
  Generator g(3);
  Mamba2Mixer m(c, g);
  Tensor x = rand64({2, 7, 8}, 60).to(DType::f32).detach().set_requires_grad(true);
  tensor_list in = {x};
  for (auto& p : m.parameters()) in.push_back(p);
  Tensor w = rand64({2, 7, 8}, 61).to(DType::f32);
  m.set_kernel("composite");
  const ValuesAndGrads want = values_and_grads([&] { return m.forward(x); }, in, w);
  for (const char* kernel : {"fused", "recurrent"}) {
    CAPTURE(kernel);
    m.set_kernel(kernel);
    const ValuesAndGrads got = values_and_grads([&] { return m.forward(x); }, in, w);
    CHECK(max_abs_diff(got.y, want.y) < 1e-5);
    for (size_t i = 0; i < in.size(); ++i) CHECK_MESSAGE(max_abs_diff(got.grads[i], want.grads[i]) < 1e-4, "input ", i);
  }
  // `auto` is the recurrent kernels (the faster on the CPU and on an H200): bit for bit.
  m.set_kernel("recurrent");
  const Tensor recurrent = m.forward(x).detach();
  m.set_kernel("auto");
  CHECK(max_abs_diff(m.forward(x).detach(), recurrent) == 0.0);
  // Decoding through the recurrent kernels (from the state Hᵀ): 2 + 1 + 4 tokens == the forward.
  m.set_kernel("recurrent");
  CHECK(max_abs_diff(decode_in_pieces(m, x, {2, 1, 4}), want.y.detach()) < 1e-5);
}
