// tests/test_checkpoint.cpp — checkpoint(): same outputs and gradients as the direct computation
// (first and second order), and a clear error when the function uses an input it was not given.
#include <doctest/doctest.h>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/engine.h"
#include "autograd/ops.h"

using namespace ttt;

namespace {

// A small recurrence: h_{t+1} = tanh(h_t @ A + x_t), over `steps` steps starting at `t0`.
tensor_list run_steps(const tensor_list& in, int t0, int steps) {
  Tensor h = in[0], A = in[1], X = in[2];
  for (int t = t0; t < t0 + steps; ++t) h = tanh(add(matmul(h, A), X.select(0, t)));
  return {h};
}

struct Setup {
  Tensor h0, A, X;
  Setup() {
    Generator g(3);
    h0 = randn({2, 4}, g, {DType::f64, cpu(), true});
    A = mul_scalar(randn({4, 4}, g, opts(DType::f64)), 0.5).detach().set_requires_grad(true);
    X = randn({6, 2, 4}, g, {DType::f64, cpu(), true});
  }
};

Tensor direct(const Setup& s) { return sum(square(run_steps({s.h0, s.A, s.X}, 0, 6)[0])); }

Tensor checkpointed(const Setup& s, int group) {
  Tensor h = s.h0;
  for (int t0 = 0; t0 < 6; t0 += group) {
    int n = std::min(group, 6 - t0);
    h = checkpoint([t0, n](const tensor_list& in) { return run_steps(in, t0, n); }, {h, s.A, s.X})[0];
  }
  return sum(square(h));
}

}  // namespace

TEST_CASE("checkpoint: identical loss and gradients") {
  Setup s;
  Tensor l0 = direct(s);
  tensor_list g0 = grad({l0}, {s.h0, s.A, s.X});
  for (int group : {1, 2, 4}) {
    Tensor l1 = checkpointed(s, group);
    CHECK(l1.item() == l0.item());
    tensor_list g1 = grad({l1}, {s.h0, s.A, s.X});
    for (int i = 0; i < 3; ++i) {
      auto a = g0[i].tolist<double>(), b = g1[i].tolist<double>();
      REQUIRE(a.size() == b.size());
      for (size_t k = 0; k < a.size(); ++k) CHECK(b[k] == doctest::Approx(a[k]).epsilon(1e-13));
    }
  }
}

TEST_CASE("checkpoint: backward() accumulates into leaves like the direct run") {
  Setup s;
  direct(s).backward();
  auto ga = s.A.grad().tolist<double>();
  s.A.zero_grad();
  s.h0.zero_grad();
  s.X.zero_grad();
  checkpointed(s, 3).backward();
  auto gb = s.A.grad().tolist<double>();
  for (size_t k = 0; k < ga.size(); ++k) CHECK(gb[k] == doctest::Approx(ga[k]).epsilon(1e-13));
}

TEST_CASE("checkpoint: second order (create_graph) matches the direct computation") {
  Setup s;
  auto second = [&](bool ckpt) {
    Tensor l = ckpt ? checkpointed(s, 2) : direct(s);
    Tensor gA = grad({l}, {s.A}, {}, std::nullopt, /*create_graph=*/true)[0];
    Tensor m = sum(square(gA));  // a meta-objective of the gradient
    return grad({m}, {s.A, s.X});
  };
  tensor_list a = second(false), b = second(true);
  for (int i = 0; i < 2; ++i) {
    auto x = a[i].tolist<double>(), y = b[i].tolist<double>();
    for (size_t k = 0; k < x.size(); ++k) CHECK(y[k] == doctest::Approx(x[k]).epsilon(1e-12));
  }
}

TEST_CASE("checkpoint: a captured tensor that requires grad is reported") {
  Setup s;
  Tensor captured = s.A;
  auto bad = [captured](const tensor_list& in) { return tensor_list{tanh(matmul(in[0], captured))}; };
  Tensor h = checkpoint(bad, {s.h0})[0];
  CHECK_THROWS_WITH_AS(sum(h).backward(), doctest::Contains("not among the checkpoint inputs"),
                       std::invalid_argument);
}

TEST_CASE("checkpoint: inputs that need no grad pass through") {
  Setup s;
  Tensor c = zeros({2, 4}, opts(DType::f64));
  tensor_list out = checkpoint([](const tensor_list& in) { return tensor_list{add(in[0], in[1])}; }, {s.h0, c});
  sum(out[0]).backward();
  CHECK(s.h0.grad().tolist<double>() == std::vector<double>(8, 1.0));
}

TEST_CASE("checkpoint: the recomputation uses the forward's autocast setting") {
  Generator g(11);
  Tensor x = randn({4, 8}, g).set_requires_grad(true);
  Tensor w = randn({8, 8}, g).set_requires_grad(true);
  auto f = [](const tensor_list& in) { return tensor_list{tanh(matmul(in[0], in[1]))}; };
  Tensor direct_out, ckpt_out;
  {
    AutocastGuard ac(DType::bf16);
    direct_out = sum(f({x, w})[0]);
    ckpt_out = sum(checkpoint(f, {x, w})[0]);
  }
  // Both backwards run outside the autocast scope.
  Tensor g1 = grad({direct_out}, {w})[0], g2 = grad({ckpt_out}, {w})[0];
  CHECK(max(abs(sub(g1, g2))).item() == 0.0);
}
