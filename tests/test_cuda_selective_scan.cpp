// tests/test_cuda_selective_scan.cpp — the CUDA fused Mamba-1 selective scan
// (kernels/cuda/selective_scan.{cu,cuh}) against the CPU reference (kernels/cpu/selective_scan.cpp,
// itself tested against the composite twin in test_selective_scan_kernel): y and every gradient
// (u, δ, A, B, C, D, bias) in float32 on the same inputs, every output NaN-poisoned before the run;
// shapes: a short last chunk, several channel blocks and batch elements, a sequence shorter than a
// chunk, and the 125M Mamba layer's channels (1536) at 300 tokens; the forward from h0 with h_final;
// two runs bit-identical (no atomics); then the Mamba layer on the GPU (fused scan) against the same
// layer on the CPU (composite), and `kernel: fused` refused where the kernels do not apply.
// Skips itself without a GPU (TTT_REQUIRE_GPU=1 makes that a failure).
// Run: ./build/tests/test_cuda_selective_scan
#include "layers/mamba.h"
#include "tests/cuda_test_util.h"
#include "tests/selective_scan_cases.h"

using namespace ttt;
using namespace ttt::testing;
using namespace ttt::cudatest;

TEST_CASE("CUDA selective scan == the CPU reference (float32, y and every gradient)") {
  TTT_REQUIRE_GPU();
  const std::vector<SScanProblem> cases = {
      make_sscan(2, 45, 16, 16, 10),     // a last chunk of 13 steps
      make_sscan(3, 100, 64, 16, 20),    // four channel blocks, three batch elements
      make_sscan(1, 7, 32, 16, 30),      // shorter than a chunk
      make_sscan(1, 300, 1536, 16, 40),  // the 125M Mamba layer's d_inner
  };
  for (const SScanProblem& p : cases) {
    CAPTURE(p.s.batch);
    CAPTURE(p.s.len);
    CAPTURE(p.s.channels);
    compare_sscan(run_sscan_kernels(p, DType::f32, cuda()), run_sscan_kernels(p, DType::f32, cpu()), 1e-4,
                  "CUDA vs CPU reference");
  }
  SelectiveScanShape s{1, 8, 16, 16, DType::f32};
  CHECK(selective_scan_unsupported(cuda(), s) == "");
  s.state = 8;
  CHECK(selective_scan_unsupported(cuda(), s) != "");
  s.state = 16, s.channels = 24;
  CHECK(selective_scan_unsupported(cuda(), s) != "");
}

TEST_CASE("CUDA selective scan forward from h0 with h_final == the CPU reference (decoding, prefill)") {
  TTT_REQUIRE_GPU();
  for (int64_t T : {1, 45, 300}) {
    CAPTURE(T);
    const SScanProblem p = make_sscan(2, T, 64, 16, 60 + T);
    const Tensor h0 = rand64({2, 64, 16}, 61);
    const tensor_list g = run_sscan_forward_state(p, h0, DType::f32, cuda()),
                      c = run_sscan_forward_state(p, h0, DType::f32, cpu());
    CHECK(sscan_scaled_err(g[0], c[0]) < 1e-4);
    CHECK(sscan_scaled_err(g[1], c[1]) < 1e-4);
  }
}

TEST_CASE("CUDA selective scan: two runs are bit-identical") {
  TTT_REQUIRE_GPU();
  const SScanProblem p = make_sscan(4, 130, 128, 16, 50);
  const SScanOut a = run_sscan_kernels(p, DType::f32, cuda()), b = run_sscan_kernels(p, DType::f32, cuda());
  for (size_t i = 0; i < a.t.size(); ++i) CHECK_MESSAGE(max_abs_diff(a.t[i], b.t[i]) == 0.0, sscan_name(i));
}

TEST_CASE("Mamba layer on the GPU (fused scan) == on the CPU (composite): values and every gradient") {
  TTT_REQUIRE_GPU();
  ModelConfig c;
  c.d_model = 32;  // d_inner 64: four channel blocks
  c.mixer = "mamba";
  Generator g1(5), g2(5);
  MambaMixer a(c, g1), b(c, g2);
  b.to(cuda());
  b.set_kernel("fused");
  a.set_kernel("composite");
  Generator gx(6);
  const Tensor x = randn({2, 50, 32}, gx), w = randn({2, 50, 32}, gx);
  const Tensor ya = a.forward(x), yb = b.forward(x.to(cuda()));
  CHECK(sscan_scaled_err(yb.to(cpu()).to(DType::f64), ya.to(DType::f64)) < 2e-4);
  sum(mul(ya, w)).backward();
  sum(mul(yb, w.to(cuda()))).backward();
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(sscan_scaled_err(pb[i].second.grad().to(cpu()).to(DType::f64), pa[i].second.grad().to(DType::f64)) < 5e-4);
  }
}

TEST_CASE("Mamba layer on the GPU: kernel fused is an error where the kernels do not cover the shape; auto falls back") {
  TTT_REQUIRE_GPU();
  ModelConfig c;
  c.d_model = 16;
  c.mixer = "mamba";
  c.mamba.d_state = 4;  // the CUDA kernels need 16
  Generator g(5);
  MambaMixer m(c, g);
  m.to(cuda());
  Generator gx(6);
  const Tensor x = randn({1, 9, 16}, gx).to(cuda());
  m.set_kernel("fused");
  CHECK_THROWS_WITH_AS(m.forward(x), doctest::Contains("state 16"), std::invalid_argument);
  m.set_kernel("auto");
  const Tensor y = m.forward(x);
  m.set_kernel("composite");
  CHECK(max_abs_diff(y.to(cpu()), m.forward(x).to(cpu())) == 0.0);
}
