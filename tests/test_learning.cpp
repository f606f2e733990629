// tests/test_learning.cpp — the engine learns something end to end, and a second-order use
// (one inner SGD step inside an outer loss, as TTT and MAML do) has exact meta-gradients.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"

using namespace ttt;

namespace {
Tensor sin_of(const Tensor& x) {
  std::vector<double> v = x.tolist<double>();
  for (double& e : v) e = std::sin(e);
  return from_vector(v, x.shape(), opts(x.dtype()));
}
}  // namespace

TEST_CASE("a 2-layer MLP fits sin(x) by gradient descent") {
  Generator g(0);
  const int64_t n = 256, h = 32;
  Tensor x = rand({n, 1}, g, {}, -3.0, 3.0);
  Tensor y = sin_of(x);
  Tensor w1 = randn({1, h}, g, {DType::f32, cpu(), true});
  Tensor b1 = zeros({h}, {DType::f32, cpu(), true});
  Tensor w2 = mul_scalar(randn({h, 1}, g), 1.0 / std::sqrt(double(h))).detach().set_requires_grad(true);
  Tensor b2 = zeros({1}, {DType::f32, cpu(), true});
  std::vector<Tensor> params = {w1, b1, w2, b2};
  // Adam, written with in-place tensor updates under NoGradGuard.
  std::vector<Tensor> m, v;
  for (auto& p : params) {
    m.push_back(zeros_like(p));
    v.push_back(zeros_like(p));
  }
  double first = 0, last = 0;
  for (int step = 1; step <= 600; ++step) {
    Tensor pred = add(matmul(tanh(add(matmul(x, w1), b1)), w2), b2);
    Tensor loss = mean(square(sub(pred, y)));
    if (step == 1) first = loss.item();
    last = loss.item();
    for (auto& p : params) p.zero_grad();
    loss.backward();
    NoGradGuard ng;
    const double lr = 0.01, b1c = 1 - std::pow(0.9, step), b2c = 1 - std::pow(0.999, step);
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor gr = params[i].grad();
      m[i].mul_(0.9).add_(gr, 0.1);
      v[i].mul_(0.999).add_(square(gr), 0.001);
      Tensor upd = div(div_scalar(m[i], b1c), add_scalar(sqrt(div_scalar(v[i], b2c)), 1e-8));
      params[i].add_(upd, -lr);
    }
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first > 0.3);
  CHECK(last < 0.01);
}

TEST_CASE("meta-gradient through one inner SGD step equals finite differences") {
  // Inner: w' = w - alpha * grad_w L_in(w),  L_in = mean((x_in w - y_in)^2 * softplus-like weights)
  // Outer: L_out(w') = mean(tanh(x_out w')^2 - y_out)^2). The outer gradient w.r.t. w and alpha
  // needs d(grad_w L_in)/dw: a Hessian-vector product through create_graph.
  Generator g(5);
  Tensor x_in = randn({6, 3}, g, opts(DType::f64)), y_in = randn({6, 2}, g, opts(DType::f64));
  Tensor x_out = randn({5, 3}, g, opts(DType::f64)), y_out = randn({5, 2}, g, opts(DType::f64));
  Tensor w = mul_scalar(randn({3, 2}, g, opts(DType::f64)), 0.5).detach().set_requires_grad(true);
  Tensor alpha = full({1}, 0.3, {DType::f64, cpu(), true});
  auto meta = [&](const tensor_list& in) {
    const Tensor& W = in[0];
    const Tensor& a = in[1];
    Tensor inner = mean(square(sub(tanh(matmul(x_in, W)), y_in)));
    Tensor gw = grad({inner}, {W}, {}, std::nullopt, /*create_graph=*/GradMode::is_enabled())[0];
    Tensor w2 = sub(W, mul(a, gw));
    return tensor_list{mean(square(sub(tanh(matmul(x_out, w2)), y_out)))};
  };
  GradcheckOptions o;
  auto r = gradcheck(
      [&](const tensor_list& in) {
        GradModeGuard on(true);  // the inner gradient always needs a graph; the outer one is taped only when checking
        return meta(in);
      },
      {w, alpha}, o);
  INFO(r.message);
  CHECK(r.ok);
  // The exact meta-gradient differs from the first-order approximation (inner gradient treated as
  // a constant), so the check above really exercised second-order terms.
  Tensor exact = grad({meta({w, alpha})[0]}, {w})[0];
  Tensor inner = mean(square(sub(tanh(matmul(x_in, w)), y_in)));
  Tensor gw = grad({inner}, {w})[0].detach();
  Tensor w2 = sub(w, mul(alpha.detach(), gw));
  Tensor first_order = grad({mean(square(sub(tanh(matmul(x_out, w2)), y_out)))}, {w})[0];
  CHECK(max(abs(sub(exact, first_order))).item() > 1e-3);
}
