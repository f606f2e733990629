// tests/test_autocast.cpp — bf16 mixed precision for matmul: bf16 operands, float32 accumulation
// and output, same precision in backward, exact float32 with create_graph.
#include <doctest/doctest.h>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/ops.h"

using namespace ttt;

namespace {
Tensor round_bf16(const Tensor& x) { return x.detach().to(DType::bf16).to(DType::f32); }
double max_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }
}  // namespace

TEST_CASE("autocast matmul = float32 product of bf16-rounded operands") {
  Generator g(1);
  Tensor a = randn({3, 5, 7}, g), b = randn({7, 4}, g);
  Tensor y;
  {
    AutocastGuard ac(DType::bf16);
    CHECK(Autocast::enabled());
    y = matmul(a, b);
  }
  CHECK_FALSE(Autocast::enabled());
  CHECK(y.dtype() == DType::f32);
  Tensor ref = matmul(round_bf16(a), round_bf16(b));
  CHECK(max_diff(y, ref) < 1e-5);
  Tensor exact = matmul(a, b);
  CHECK(max_diff(y, exact) > 1e-4);  // the bf16 rounding is really there
  // float64 operands are never autocast.
  AutocastGuard ac(DType::bf16);
  Tensor a64 = a.to(DType::f64), b64 = b.to(DType::f64);
  CHECK(max_diff(matmul(a64, b64), matmul(a, b).to(DType::f64)) > 0);
}

TEST_CASE("autocast backward uses bf16 operands; backward may run outside the scope") {
  Generator g(2);
  Tensor a = randn({4, 6}, g).set_requires_grad(true);
  Tensor b = randn({6, 3}, g).set_requires_grad(true);
  Tensor w = randn({4, 3}, g);
  Tensor loss;
  {
    AutocastGuard ac(DType::bf16);
    loss = sum(mul(matmul(a, b), w));
  }
  loss.backward();  // outside the scope
  // dA = bf16(w) @ bf16(b)^T, dB = bf16(a)^T @ bf16(w), float32 results.
  Tensor da = matmul(round_bf16(w), round_bf16(b).t());
  Tensor db = matmul(round_bf16(a).t(), round_bf16(w));
  CHECK(a.grad().dtype() == DType::f32);
  CHECK(max_diff(a.grad(), da) < 1e-5);
  CHECK(max_diff(b.grad(), db) < 1e-5);
}

TEST_CASE("autocast with create_graph: exact float32 gradients") {
  Generator g(3);
  Tensor a = randn({4, 6}, g).set_requires_grad(true);
  Tensor b = randn({6, 3}, g).set_requires_grad(true);
  Tensor ga;
  {
    AutocastGuard ac(DType::bf16);
    ga = grad({sum(square(matmul(a, b)))}, {a}, {}, std::nullopt, true)[0];
  }
  // The first product was bf16 (forward), its gradient products float32: compare against the same
  // composition written by hand.
  Tensor y = matmul(round_bf16(a), round_bf16(b));
  Tensor expect = matmul(mul_scalar(y, 2.0), b.detach().t());
  CHECK(max_diff(ga, expect) < 1e-4);
  CHECK(ga.requires_grad());  // differentiable again
}
