// tests/test_gated_delta_kernel.cpp — the fused gated delta rule (kernels/gated_delta.h; Gated
// DeltaNet) of the CPU reference kernel (kernels/cpu/gated_delta.cpp: token by token, states kept
// every `chunk` tokens and recomputed in the backward) against the composite chunked WY form
// (layers/delta_rule.cpp through the op with fused = false), which test_baseline_scans ties to the
// per-token recurrence:
//   outputs o and M_T, and every gradient (q, k, v, g, beta, M0) of <o, do> + <M_T, dM_T>, with every
//   output poisoned (NaN) before the kernels run, in float64 (1e-10) and float32; chunks that do and
//   do not divide T, a chunk longer than T, chunk 1, no initial state, one token, gates close to 0
//   (a state that forgets almost all), q and k shared by groups of heads, the recurrence without the
//   erase term (Mamba 2's SSD); the op's fused paths == its composite path, with either
//   output unused; gradgradcheck through the op (create_graph takes the composite twin); the Gated
//   DeltaNet layer fused == composite, and its decoding steps == its forward.
// Run: ./build/tests/test_gated_delta_kernel
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "layers/delta_rule.h"
#include "layers/gated_deltanet.h"
#include "tests/gated_delta_cases.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// The op (fused kernels or the composite twin) with autograd; `use_o` / `use_MT` pick the loss terms.
Grads op(const Problem& p, bool fused, DType dt = DType::f64, bool use_o = true, bool use_MT = true) {
  auto leaf = [&](const Tensor& t) { return t.defined() ? t.to(dt).detach().set_requires_grad(true) : Tensor(); };
  Tensor q = leaf(p.q), k = leaf(p.k), v = leaf(p.v), g = leaf(p.g), beta = leaf(p.beta), M0 = leaf(p.M0);
  ScanResult r = p.s.erase ? gated_delta_rule(q, k, v, g, beta, p.s.chunk, M0, fused)
                           : gated_linear_rule(q, k, v, g, beta, p.s.chunk, M0, fused);
  Tensor lo = sum(mul(r.y, p.d_o.to(dt))), lM = sum(mul(r.state, p.dMT.to(dt)));
  Tensor loss = use_o && use_MT ? add(lo, lM) : use_o ? lo : lM;
  tensor_list in = {q, k, v, g, beta};
  if (M0.defined()) in.push_back(M0);
  tensor_list gr = grad({loss}, in, {}, false, false, /*allow_unused=*/true);
  return {r.y, r.state, gr[0], gr[1], gr[2], gr[3], gr[4], M0.defined() ? gr[5] : Tensor()};
}

std::vector<Problem> problems() {
  return {make(2, 7, 3, 3, 2, 4, true, 10),        // a short last chunk
          make(1, 8, 2, 4, 5, 4, true, 20),        // chunks divide T, d_v > d_k
          make(2, 5, 1, 2, 3, 8, false, 30),       // one chunk longer than T, no M0
          make(1, 6, 2, 3, 2, 1, true, 40),        // chunk 1: a state kept at every token
          make(1, 1, 1, 2, 2, 4, true, 50),        // one token
          make(1, 9, 2, 3, 3, 2, true, 60, 12.0)}; // gates near 0: a ≈ e^{-8}
}

}  // namespace

TEST_CASE("CPU gated delta kernels == the composite chunked WY form, float64 (values and every gradient)") {
  for (const Problem& p : problems()) compare(kernel(p, DType::f64), op(p, false), 1e-10, "f64");
}

TEST_CASE("CPU kernels without the erase term == the chunked gated linear form (Mamba 2's SSD), float64") {
  for (const Problem& p : problems()) {
    compare(kernel(linear(p), DType::f64), op(linear(p), false), 1e-10, "linear f64");
    compare(op(linear(p), true), op(linear(p), false), 1e-10, "linear op f64");
    compare(op(linear(p), true, DType::f32), op(linear(p), false, DType::f32), 2e-5, "linear op f32");
  }
  // The erase term matters: the two recurrences differ on the same inputs.
  const Problem p = problems()[1];
  CHECK(max_scaled_diff(kernel(linear(p), DType::f64).o, kernel(p, DType::f64).o) > 1e-3);
}

TEST_CASE("gated linear form == Mamba 2's SSD recurrence (k = B, q = C, v = x, beta = dt, g = dt A)") {
  const int64_t B = 2, T = 9, H = 3, P = 2, N = 3;
  Tensor x = rand64({B, H, T, P}, 90), dt = softplus(rand64({B, H, T}, 91)), A = neg(exp(rand64({H}, 92, false, 0.5)));
  Tensor Bm = rand64({B, H, T, N}, 93), Cm = rand64({B, H, T, N}, 94), h0 = rand64({B, H, P, N}, 95);
  const ScanResult want = ssd_recurrent(x, dt, A, Bm, Cm, h0);
  auto last = [](const Tensor& t) { return permute(t, {0, 2, 1, 3}); };
  const Tensor dtl = transpose(dt, 1, 2);
  for (int64_t chunk : {1, 4, 16}) {
    for (bool fused : {false, true}) {
      const ScanResult got = gated_linear_rule(last(Cm), last(Bm), last(x), mul(dtl, reshape(A, {1, 1, H})), dtl,
                                               chunk, transpose(h0, 2, 3), fused);
      CHECK(max_abs_diff(last(got.y), want.y) < 1e-12);
      CHECK(max_abs_diff(transpose(got.state, 2, 3), want.state) < 1e-12);
    }
  }
}

TEST_CASE("CPU gated delta kernels with q, k shared by groups of heads == the composite (both recurrences)") {
  const std::vector<Problem> cases = {grouped(make(2, 7, 4, 3, 2, 4, true, 110), 2, 120),
                                      grouped(make(1, 9, 3, 2, 3, 2, false, 130), 1, 140)};
  for (const Problem& p : cases) {
    compare(kernel(p, DType::f64), op(p, false), 1e-10, "groups, f64");
    compare(kernel(linear(p), DType::f64), op(linear(p), false), 1e-10, "groups, no erase term, f64");
    compare(op(p, true, DType::f32), op(p, false, DType::f32), 2e-5, "groups, op f32");
  }
  const Problem bad = grouped(make(1, 3, 3, 2, 2, 4, false, 150), 2, 160);  // 2 groups do not divide 3 heads
  CHECK_THROWS_WITH_AS(op(bad, true), doctest::Contains("shapes do not fit"), std::invalid_argument);
}

TEST_CASE("CPU gated delta kernels with a gradient for M_T only (d_o null) == the composite") {
  for (const Problem& p : problems())
    compare(kernel(without_do(p), DType::f64), op(p, false, DType::f64, false, true), 1e-10, "no d_o", false);
}

TEST_CASE("CPU gated delta kernels in float32 == the float64 composite to float32 accuracy") {
  for (const Problem& p : problems()) compare(kernel(p, DType::f32), op(p, false), 2e-5, "f32");
}

TEST_CASE("gated_delta_scan op: the fused path == the composite path, either output unused") {
  for (const Problem& p : problems()) {
    compare(op(p, true), op(p, false), 1e-10, "op f64");
    compare(op(p, true, DType::f32), op(p, false, DType::f32), 2e-5, "op f32");
    compare(op(p, true, DType::f64, true, false), op(p, false, DType::f64, true, false), 1e-10, "only o", false);
    compare(op(p, true, DType::f64, false, true), op(p, false, DType::f64, false, true), 1e-10, "only M_T", false);
  }
}

TEST_CASE("gated_delta_scan op: gradcheck on the fused path, gradgradcheck through its composite twin") {
  const Problem p = make(1, 5, 1, 2, 2, 2, true, 70);
  auto fn = [](const tensor_list& in) {
    ScanResult r = gated_delta_rule(in[0], in[1], in[2], in[3], in[4], 2, in[5], /*fused=*/true);
    return tensor_list{r.y, r.state};
  };
  auto leaf = [](const Tensor& t) { return t.detach().set_requires_grad(true); };
  const tensor_list in = {leaf(p.q), leaf(p.k), leaf(p.v), leaf(p.g), leaf(p.beta), leaf(p.M0)};
  auto r1 = gradcheck(fn, in);
  CHECK_MESSAGE(r1.ok, r1.message);
  auto r2 = gradgradcheck(fn, in);
  CHECK_MESSAGE(r2.ok, r2.message);
  auto lin = [](const tensor_list& in) {
    ScanResult r = gated_linear_rule(in[0], in[1], in[2], in[3], in[4], 2, in[5], /*fused=*/true);
    return tensor_list{r.y, r.state};
  };
  auto r3 = gradcheck(lin, in);
  CHECK_MESSAGE(r3.ok, r3.message);
  auto r4 = gradgradcheck(lin, in);
  CHECK_MESSAGE(r4.ok, r4.message);
}

TEST_CASE("gated_delta_scan op: unsupported dtypes and bad shapes are clear errors") {
  const Tensor q = rand64({1, 4, 2, 3}, 1).to(DType::bf16), v = rand64({1, 4, 2, 2}, 2).to(DType::bf16);
  CHECK(gated_delta_scan_unsupported(q, v, 4).find("float32 or float64") != std::string::npos);
  const Problem p = make(1, 4, 2, 3, 2, 4, false, 80);
  CHECK_THROWS_WITH_AS(gated_delta_rule(p.q, p.k, p.v, p.g, narrow(p.beta, 1, 0, 3), 4, Tensor(), true),
                       doctest::Contains("shapes do not fit"), std::invalid_argument);
}

TEST_CASE("Gated DeltaNet layer: fused kernels == composite form (float32), decoding steps == forward") {
  ModelConfig c;
  c.d_model = 16;
  c.n_heads = 4;
  c.mixer = "gated_deltanet";
  c.init_std = 0.3;
  c.gdn.chunk = 4;
  Generator gen(3);
  GatedDeltaNetMixer m(c, gen);
  Tensor x = rand64({2, 11, 16}, 90).to(DType::f32).detach().set_requires_grad(true);
  tensor_list in = {x};
  for (auto& p : m.parameters()) in.push_back(p);
  Tensor w = rand64({2, 11, 16}, 91).to(DType::f32);
  m.set_kernel("fused");
  const ValuesAndGrads f = values_and_grads([&] { return m.forward(x); }, in, w);
  m.set_kernel("composite");
  const ValuesAndGrads c2 = values_and_grads([&] { return m.forward(x); }, in, w);
  CHECK(max_abs_diff(f.y, c2.y) < 1e-5);
  for (size_t i = 0; i < in.size(); ++i) CHECK_MESSAGE(max_abs_diff(f.grads[i], c2.grads[i]) < 1e-4, "input ", i);
  // Decoding through the fused kernels: 3 + 1 + 7 tokens from the O(1) state == the forward.
  m.set_kernel("fused");
  CHECK(max_abs_diff(decode_in_pieces(m, x, {3, 1, 7}), f.y.detach()) < 1e-5);
}
