// tests/test_selective_scan_kernel.cpp — the fused Mamba-1 selective scan (kernels/selective_scan.h)
// on the CPU: the reference kernels (kernels/cpu/selective_scan.cpp) against the composite twin
// (layers/selective_scan.h: softplus(δ + bias), the time loop, + D u; test_baseline_scans ties the
// loop to hand-computed values), y and every gradient (u, δ, A, B, C, D, bias) of <y, dy> in float64
// (1e-12) and float32; the op mamba_selective_scan (autograd/ops.h): one tape node, gradcheck (its
// backward is the reference kernel), gradgradcheck (create_graph re-runs the composite), its fused
// path == its composite path; the Mamba layer with the fused scan == with the composite.
// Run: ./build/tests/test_selective_scan_kernel
#include "autograd/node.h"
#include "layers/mamba.h"
#include "tests/profile_count.h"
#include "tests/selective_scan_cases.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

std::vector<SScanProblem> problems() {
  return {make_sscan(2, 7, 3, 4, 10),     // several channels and batches
          make_sscan(1, 40, 2, 3, 20),    // longer than a CUDA chunk (32 steps) with a remainder
          make_sscan(1, 1, 1, 2, 30),     // one token, one channel
          make_sscan(2, 5, 16, 16, 40)};  // the CUDA kernel's block: 16 channels, state 16
}

}  // namespace

TEST_CASE("CPU selective scan kernels == the composite twin, float64 (y and every gradient)") {
  for (const SScanProblem& p : problems()) {
    compare_sscan(run_sscan_kernels(p, DType::f64, cpu()), run_sscan_autograd(p, false), 1e-12, "f64");
    // The composite checkpointed through time (every 3 steps) is the same function.
    compare_sscan(run_sscan_kernels(p, DType::f64, cpu()), run_sscan_autograd(p, false, DType::f64, 3), 1e-12,
                  "f64, composite chunk 3");
  }
}

TEST_CASE("CPU selective scan kernels in float32 == the float64 composite to float32 accuracy") {
  for (const SScanProblem& p : problems())
    compare_sscan(run_sscan_kernels(p, DType::f32, cpu()), run_sscan_autograd(p, false), 1e-5, "f32");
}

TEST_CASE("mamba_selective_scan: one tape node; fused path == composite path") {
  const SScanProblem p = make_sscan(2, 9, 3, 4, 50);
  tensor_list in;
  for (const Tensor& t : p.inputs()) in.push_back(t.detach().set_requires_grad(true));
  const SelectiveScanComposite twin = [](const tensor_list& x) {
    return selective_scan_with_skip(x[0], x[1], x[2], x[3], x[4], x[5], x[6], Tensor(), 0).y;
  };
  Tensor y = mamba_selective_scan(in[0], in[1], in[2], in[3], in[4], in[5], in[6], twin);
  REQUIRE(y.grad_fn());
  CHECK(std::string(y.grad_fn()->name()) == "mamba_selective_scan");
  compare_sscan(run_sscan_autograd(p, true), run_sscan_autograd(p, false), 1e-12, "op f64");
  compare_sscan(run_sscan_autograd(p, true, DType::f32), run_sscan_autograd(p, false, DType::f32), 1e-5, "op f32");
}

TEST_CASE("mamba_selective_scan: gradcheck (fused backward) and gradgradcheck (composite under create_graph)") {
  const SScanProblem p = make_sscan(1, 4, 2, 3, 60);
  tensor_list in;
  for (const Tensor& t : p.inputs()) in.push_back(t.detach().set_requires_grad(true));
  const TensorFn fn = [](const tensor_list& x) {
    const SelectiveScanComposite twin = [](const tensor_list& y) {
      return selective_scan_with_skip(y[0], y[1], y[2], y[3], y[4], y[5], y[6], Tensor(), 2).y;
    };
    return tensor_list{mamba_selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], twin)};
  };
  const GradcheckResult r1 = gradcheck(fn, in);
  CHECK_MESSAGE(r1.ok, r1.message);
  const GradcheckResult r2 = gradgradcheck(fn, in);
  CHECK_MESSAGE(r2.ok, r2.message);
}

TEST_CASE("CPU selective scan forward from h0 with h_final == the composite from h0, float64") {
  for (const SScanProblem& p : problems()) {
    const Tensor h0 = rand64({p.s.batch, p.s.channels, p.s.state}, 90);
    const tensor_list k = run_sscan_forward_state(p, h0, DType::f64, cpu());
    const ScanResult r = selective_scan_with_skip(p.u, p.delta, p.A, p.B, p.C, p.D, p.bias, h0, 0);
    CHECK(sscan_scaled_err(k[0], r.y) < 1e-12);
    CHECK(sscan_scaled_err(k[1], r.state) < 1e-12);
    // The op's state path returns the same.
    NoGradGuard ng;
    Tensor hT;
    const Tensor y = mamba_selective_scan(p.u, p.delta, p.A, p.B, p.C, p.D, p.bias, [](const tensor_list& x) { return x[0]; },
                                         true, h0, &hT);
    CHECK(sscan_scaled_err(y, r.y) < 1e-12);
    CHECK(sscan_scaled_err(hT, r.state) < 1e-12);
  }
}

TEST_CASE("mamba_selective_scan: bad inputs name the op and the shapes") {
  const SScanProblem p = make_sscan(1, 3, 2, 3, 70);
  const SelectiveScanComposite twin = [](const tensor_list& x) { return x[0]; };
  CHECK_THROWS_WITH_AS(mamba_selective_scan(p.u, p.delta, p.A, p.B, p.C, p.D, rand64({3}, 1), twin),
                       doctest::Contains("mamba_selective_scan: shapes do not fit"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(mamba_selective_scan(p.u, p.delta.to(DType::f32), p.A, p.B, p.C, p.D, p.bias, twin),
                       doctest::Contains("u's dtype"), std::invalid_argument);
  Tensor hT;
  const Tensor u = p.u.detach().set_requires_grad(true);
  CHECK_THROWS_WITH_AS(mamba_selective_scan(u, p.delta, p.A, p.B, p.C, p.D, p.bias, twin, true, Tensor(), &hT),
                       doctest::Contains("forward-only"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(mamba_selective_scan(p.u, p.delta, p.A, p.B, p.C, p.D, p.bias, twin, true, rand64({1, 3, 2}, 2), &hT),
                       doctest::Contains("h0 must be [B, D, N]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(mamba_selective_scan(p.u, p.delta, p.A, p.B, p.C, p.D, p.bias, twin, false, Tensor(), &hT),
                       doctest::Contains("needs the fused kernels"), std::invalid_argument);
}

TEST_CASE("Mamba layer: fused selective scan == composite (float32, values and every gradient)") {
  ModelConfig c;
  c.d_model = 8;
  c.mixer = "mamba";
  c.init_std = 0.3;
  c.mamba.d_state = 4;
  c.mamba.scan_chunk = 3;
  Generator g(3);
  MambaMixer m(c, g);
  Tensor x = rand64({2, 7, 8}, 80).to(DType::f32).detach().set_requires_grad(true);
  tensor_list in = {x};
  for (auto& q : m.parameters()) in.push_back(q);
  const Tensor w = rand64({2, 7, 8}, 81).to(DType::f32);
  m.set_kernel("fused");
  Tensor y1;
  tensor_list g1;
  CHECK(backend_calls([&] { y1 = m.forward(x); g1 = grad({sum(mul(y1, w))}, in); }, "selective_scan_") == 2);
  m.set_kernel("composite");
  Tensor y2;
  tensor_list g2;
  CHECK(backend_calls([&] { y2 = m.forward(x); g2 = grad({sum(mul(y2, w))}, in); }, "selective_scan_") == 0);
  CHECK(max_abs_diff(y1, y2) < 1e-5);
  for (size_t i = 0; i < in.size(); ++i) CHECK_MESSAGE(max_abs_diff(g1[i], g2[i]) < 1e-4, "input ", i);
}

TEST_CASE("Mamba layer: step() without grad runs the fused scan from the state; == the composite step, float64") {
  ModelConfig c;
  c.d_model = 8;
  c.mixer = "mamba";
  c.init_std = 0.3;
  c.mamba.d_state = 4;
  Generator g1(4), g2(4);
  MambaMixer a(c, g1), b(c, g2);
  a.to(DType::f64);
  b.to(DType::f64);
  b.set_kernel("composite");
  const Tensor x = rand64({2, 11, 8}, 95);
  NoGradGuard ng;
  auto sa = a.init_state(2), sb = b.init_state(2);
  for (auto [t0, len] : {std::pair<int64_t, int64_t>{0, 5}, {5, 1}, {6, 5}}) {
    const Tensor piece = narrow(x, 1, t0, len);
    Tensor ya, yb;
    CHECK(backend_calls([&] { ya = a.step(piece, *sa); }, "selective_scan_fwd") == 1);
    CHECK(backend_calls([&] { yb = b.step(piece, *sb); }, "selective_scan_") == 0);
    CHECK(max_abs_diff(ya, yb) < 1e-12);
  }
  CHECK(max_abs_diff(a.forward(x), b.forward(x)) < 1e-12);
}
