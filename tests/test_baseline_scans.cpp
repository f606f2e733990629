// tests/test_baseline_scans.cpp — the recurrences of the baseline mixers, fp64:
//   SSD (Mamba 2): chunked == per-token recurrence (outputs, final state, every gradient) for
//     chunk lengths that do and do not divide T, with an initial state; a hand-computed case;
//     gradcheck and gradgradcheck of the chunked form.
//   Gated delta rule (Gated DeltaNet): the same for the WY/UT chunked form; the recursive-doubling
//     unit-triangular inverse against L·X = I; a hand-computed two-token case.
//   Selective scan (Mamba): checkpointed through time == kept; a hand-computed case; gradchecks.
// Run: ./build/tests/test_baseline_scans
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "layers/delta_rule.h"
#include "layers/selective_scan.h"
#include "layers/ssd.h"
#include "layers/ssm_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// Random inputs of an SSD problem: x [B,H,T,P], dt > 0, A < 0, B, C [B,H,T,N], h0.
struct SSDInputs {
  Tensor x, dt, A, Bm, Cm, h0;
  tensor_list all() const { return {x, dt, A, Bm, Cm, h0}; }
};
SSDInputs ssd_inputs(int64_t B, int64_t H, int64_t T, int64_t P, int64_t N, uint64_t seed) {
  SSDInputs s;
  s.x = rand64({B, H, T, P}, seed, true);
  s.dt = softplus(rand64({B, H, T}, seed + 1)).detach().set_requires_grad(true);
  s.A = neg(exp(rand64({H}, seed + 2, false, 0.5))).detach().set_requires_grad(true);
  s.Bm = rand64({B, H, T, N}, seed + 3, true);
  s.Cm = rand64({B, H, T, N}, seed + 4, true);
  s.h0 = rand64({B, H, P, N}, seed + 5, true);
  return s;
}

// Random inputs of a gated-delta problem with normalized keys, α ∈ (0, 1), β ∈ (0, 1).
struct DeltaInputs {
  Tensor q, k, v, g, beta, M0;
  tensor_list all() const { return {q, k, v, g, beta, M0}; }
};
DeltaInputs delta_inputs(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv, uint64_t seed) {
  DeltaInputs d;
  d.q = rand64({B, H, T, dk}, seed, true);
  d.k = l2_normalize(rand64({B, H, T, dk}, seed + 1)).detach().set_requires_grad(true);
  d.v = rand64({B, H, T, dv}, seed + 2, true);
  d.g = neg(softplus(rand64({B, H, T}, seed + 3))).detach().set_requires_grad(true);
  d.beta = sigmoid(rand64({B, H, T}, seed + 4)).detach().set_requires_grad(true);
  d.M0 = rand64({B, H, dk, dv}, seed + 5, true);
  return d;
}

// Checks that two functions of the same inputs agree in value and in every input's gradient
// (of the loss Σ w ⊙ out over all outputs, with fixed random weights).
void check_same(const std::function<tensor_list()>& f1, const std::function<tensor_list()>& f2, const tensor_list& in,
                double tol, const std::string& what) {
  tensor_list a = f1(), b = f2();
  REQUIRE(a.size() == b.size());
  Tensor la, lb;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK_MESSAGE(max_abs_diff(a[i], b[i]) < tol, what, " output ", i, " differs by ", max_abs_diff(a[i], b[i]));
    Tensor w = rand64(a[i].shape(), 700 + i);
    la = la.defined() ? add(la, sum(mul(a[i], w))) : sum(mul(a[i], w));
    lb = lb.defined() ? add(lb, sum(mul(b[i], w))) : sum(mul(b[i], w));
  }
  tensor_list ga = grad({la}, in), gb = grad({lb}, in);
  for (size_t i = 0; i < in.size(); ++i)
    CHECK_MESSAGE(max_abs_diff(ga[i], gb[i]) < tol, what, " gradient of input ", i, " differs by ",
                  max_abs_diff(ga[i], gb[i]));
}

}  // namespace

TEST_CASE("SSD: chunked == recurrent (values, state, gradients), any chunk length, initial state") {
  for (int64_t chunk : {1, 3, 4, 7, 16}) {
    CAPTURE(chunk);
    SSDInputs s = ssd_inputs(2, 3, 7, 2, 3, 10);
    check_same([&] { auto r = ssd_chunked(s.x, s.dt, s.A, s.Bm, s.Cm, chunk, s.h0); return tensor_list{r.y, r.state}; },
               [&] { auto r = ssd_recurrent(s.x, s.dt, s.A, s.Bm, s.Cm, s.h0); return tensor_list{r.y, r.state}; },
               s.all(), 1e-11, "ssd");
  }
  // Without an initial state, and a length-1 sequence.
  SSDInputs s = ssd_inputs(1, 2, 1, 2, 2, 20);
  auto a = ssd_chunked(s.x, s.dt, s.A, s.Bm, s.Cm, 4), b = ssd_recurrent(s.x, s.dt, s.A, s.Bm, s.Cm);
  CHECK(max_abs_diff(a.y, b.y) < 1e-14);
  CHECK(max_abs_diff(a.state, b.state) < 1e-14);
}

TEST_CASE("SSD: a hand-computed two-step case (P = N = 1)") {
  // h1 = Δ1 x1 B1, y1 = h1 C1;  h2 = e^{Δ2 A} h1 + Δ2 x2 B2, y2 = h2 C2.
  const double A = -0.7, d1 = 0.3, d2 = 0.9, x1 = 2.0, x2 = -1.0, B1 = 0.5, B2 = 1.5, C1 = -2.0, C2 = 0.25;
  auto t = [](std::vector<double> v, Shape s) { return from_vector(v, s, opts(DType::f64)); };
  Tensor x = t({x1, x2}, {1, 1, 2, 1}), dt = t({d1, d2}, {1, 1, 2}), Am = t({A}, {1});
  Tensor Bm = t({B1, B2}, {1, 1, 2, 1}), Cm = t({C1, C2}, {1, 1, 2, 1});
  const double h1 = d1 * x1 * B1, h2 = std::exp(d2 * A) * h1 + d2 * x2 * B2;
  for (int64_t chunk : {1, 2}) {
    auto r = ssd_chunked(x, dt, Am, Bm, Cm, chunk);
    auto y = r.y.tolist<double>();
    CHECK(y[0] == doctest::Approx(h1 * C1).epsilon(1e-14));
    CHECK(y[1] == doctest::Approx(h2 * C2).epsilon(1e-14));
    CHECK(r.state.item() == doctest::Approx(h2).epsilon(1e-14));
  }
}

TEST_CASE("SSD chunked: gradcheck and gradgradcheck (tiny, fp64)") {
  SSDInputs s = ssd_inputs(1, 2, 5, 2, 2, 30);
  auto fn = [](const tensor_list& in) {
    auto r = ssd_chunked(in[0], in[1], in[2], in[3], in[4], 2, in[5]);
    return tensor_list{r.y, r.state};
  };
  auto r1 = gradcheck(fn, s.all());
  CHECK_MESSAGE(r1.ok, r1.message);
  SSDInputs t = ssd_inputs(1, 1, 3, 1, 2, 31);
  auto r2 = gradgradcheck(fn, t.all());
  CHECK_MESSAGE(r2.ok, r2.message);
}

TEST_CASE("unit_lower_inverse: (I + A) X = I for strictly lower A, Q = 1 .. 16") {
  for (int64_t Q : {1, 2, 4, 8, 16}) {
    CAPTURE(Q);
    Tensor A = mul(rand64({2, 3, Q, Q}, 40 + Q, false, 0.7), lower_mask(Q, DType::f64, cpu(), true));
    Tensor X = unit_lower_inverse(A);
    Tensor I = sub(lower_mask(Q, DType::f64, cpu()), lower_mask(Q, DType::f64, cpu(), true));
    CHECK(max_abs_diff(matmul(add(I, A), X), expand(I, {2, 3, Q, Q})) < 1e-12);
  }
  CHECK_THROWS_AS(unit_lower_inverse(zeros({3, 3}, opts(DType::f64))), std::invalid_argument);
}

TEST_CASE("gated delta rule: chunked (WY/UT) == recurrent (values, state, gradients)") {
  for (int64_t chunk : {1, 2, 4, 8}) {
    CAPTURE(chunk);
    DeltaInputs d = delta_inputs(2, 2, 7, 3, 2, 50);
    check_same(
        [&] { auto r = gated_delta_chunked(d.q, d.k, d.v, d.g, d.beta, chunk, d.M0); return tensor_list{r.y, r.state}; },
        [&] { auto r = gated_delta_recurrent(d.q, d.k, d.v, d.g, d.beta, d.M0); return tensor_list{r.y, r.state}; },
        d.all(), 1e-11, "delta");
  }
  CHECK_THROWS_AS(gated_delta_chunked(rand64({1, 1, 2, 2}, 1), rand64({1, 1, 2, 2}, 2), rand64({1, 1, 2, 2}, 3),
                                      rand64({1, 1, 2}, 4), rand64({1, 1, 2}, 5), 3),
                  std::invalid_argument);
}

TEST_CASE("gated delta rule: a hand-computed two-token case (d_k = 2, d_v = 1)") {
  // S is 1×2 (d_v × d_k). S1 = β1 v1 k1ᵀ;  S2 = α2 S1 (I − β2 k2 k2ᵀ) + β2 v2 k2ᵀ;  o_t = S_t q_t.
  const double k1[2] = {0.6, 0.8}, k2[2] = {1.0, 0.0}, q1[2] = {1.0, 2.0}, q2[2] = {-1.0, 0.5};
  const double v1 = 2.0, v2 = -1.0, b1 = 0.5, b2 = 0.25, g2 = -0.3, a2 = std::exp(g2);
  double S1[2] = {b1 * v1 * k1[0], b1 * v1 * k1[1]};
  const double s1k2 = S1[0] * k2[0] + S1[1] * k2[1];
  double S2[2];
  for (int j = 0; j < 2; ++j) S2[j] = a2 * (S1[j] - b2 * s1k2 * k2[j]) + b2 * v2 * k2[j];
  auto t = [](std::vector<double> v, Shape s) { return from_vector(v, s, opts(DType::f64)); };
  Tensor q = t({q1[0], q1[1], q2[0], q2[1]}, {1, 1, 2, 2}), k = t({k1[0], k1[1], k2[0], k2[1]}, {1, 1, 2, 2});
  Tensor v = t({v1, v2}, {1, 1, 2, 1}), g = t({0.0, g2}, {1, 1, 2}), beta = t({b1, b2}, {1, 1, 2});
  for (int64_t chunk : {1, 2}) {
    auto r = gated_delta_chunked(q, k, v, g, beta, chunk);
    auto o = r.y.tolist<double>();
    CHECK(o[0] == doctest::Approx(S1[0] * q1[0] + S1[1] * q1[1]).epsilon(1e-14));
    CHECK(o[1] == doctest::Approx(S2[0] * q2[0] + S2[1] * q2[1]).epsilon(1e-14));
    auto M = r.state.tolist<double>();  // M = Sᵀ [2, 1]
    CHECK(M[0] == doctest::Approx(S2[0]).epsilon(1e-14));
    CHECK(M[1] == doctest::Approx(S2[1]).epsilon(1e-14));
  }
}

TEST_CASE("gated delta chunked: gradcheck and gradgradcheck (tiny, fp64)") {
  DeltaInputs d = delta_inputs(1, 1, 5, 2, 2, 60);
  auto fn = [](const tensor_list& in) {
    auto r = gated_delta_chunked(in[0], in[1], in[2], in[3], in[4], 2, in[5]);
    return tensor_list{r.y, r.state};
  };
  auto r1 = gradcheck(fn, d.all());
  CHECK_MESSAGE(r1.ok, r1.message);
  DeltaInputs e = delta_inputs(1, 1, 3, 2, 1, 61);
  auto r2 = gradgradcheck(fn, e.all());
  CHECK_MESSAGE(r2.ok, r2.message);
}

TEST_CASE("selective scan: checkpointed through time == kept; a hand-computed case; gradchecks") {
  const int64_t B = 2, T = 9, D = 3, N = 2;
  Tensor u = rand64({B, T, D}, 70, true), delta = softplus(rand64({B, T, D}, 71)).detach().set_requires_grad(true);
  Tensor A = neg(exp(rand64({D, N}, 72, false, 0.5))).detach().set_requires_grad(true);
  Tensor Bm = rand64({B, T, N}, 73, true), Cm = rand64({B, T, N}, 74, true), h0 = rand64({B, D, N}, 75, true);
  const tensor_list in = {u, delta, A, Bm, Cm, h0};
  for (int64_t chunk : {1, 2, 4, 20}) {
    CAPTURE(chunk);
    check_same([&] { auto r = selective_scan(u, delta, A, Bm, Cm, h0, chunk); return tensor_list{r.y, r.state}; },
               [&] { auto r = selective_scan(u, delta, A, Bm, Cm, h0, 0); return tensor_list{r.y, r.state}; }, in,
               1e-12, "selective_scan");
  }
  // One channel, one state entry, two steps, by hand.
  auto t = [](std::vector<double> v, Shape s) { return from_vector(v, s, opts(DType::f64)); };
  const double a = -1.3, d1 = 0.2, d2 = 0.7, u1 = 1.5, u2 = -0.5, b1 = 2.0, b2 = 0.5, c1 = 1.0, c2 = -3.0;
  auto r = selective_scan(t({u1, u2}, {1, 2, 1}), t({d1, d2}, {1, 2, 1}), t({a}, {1, 1}), t({b1, b2}, {1, 2, 1}),
                          t({c1, c2}, {1, 2, 1}));
  const double h1 = d1 * b1 * u1, h2 = std::exp(d2 * a) * h1 + d2 * b2 * u2;
  auto y = r.y.tolist<double>();
  CHECK(y[0] == doctest::Approx(c1 * h1).epsilon(1e-14));
  CHECK(y[1] == doctest::Approx(c2 * h2).epsilon(1e-14));
  // Derivatives (tiny).
  auto fn = [](const tensor_list& x) {
    auto s = selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], 2);
    return tensor_list{s.y, s.state};
  };
  tensor_list small = {rand64({1, 3, 2}, 80, true), softplus(rand64({1, 3, 2}, 81)).detach().set_requires_grad(true),
                       neg(exp(rand64({2, 2}, 82))).detach().set_requires_grad(true), rand64({1, 3, 2}, 83, true),
                       rand64({1, 3, 2}, 84, true), rand64({1, 2, 2}, 85, true)};
  auto r1 = gradcheck(fn, small);
  CHECK_MESSAGE(r1.ok, r1.message);
  auto r2 = gradgradcheck(fn, small);
  CHECK_MESSAGE(r2.ok, r2.message);
}
