// tests/test_autocast.cpp — bf16 mixed precision for matmul: bf16 operands, float32 accumulation
// and output, same precision in backward, float32 products with create_graph (exact for
// parameters, on the bf16-rounded values for activations, which are not kept in float32).
#include <doctest/doctest.h>

#include <functional>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/graph_memory.h"
#include "autograd/ops.h"
#include "kernels/profiler.h"

using namespace ttt;

namespace {
Tensor round_bf16(const Tensor& x) { return x.detach().to(DType::bf16).to(DType::f32); }
double max_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }
// x rounded to bf16 in value, with derivative 1 (what an autocast operand is to create_graph).
Tensor straight_through_bf16(const Tensor& x) { return add(x, sub(round_bf16(x), x.detach())); }
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

TEST_CASE("AutocastCreateGraph: create_graph gradients of an autocast product are autocast products, differentiable again") {
  Generator g(3);
  Tensor a = randn({4, 6}, g).set_requires_grad(true);
  Tensor b = randn({6, 3}, g).set_requires_grad(true);
  Tensor ga;
  {
    AutocastGuard ac(DType::bf16);
    AutocastCreateGraph at_autocast;
    CHECK(Autocast::create_graph_at_autocast());
    ga = grad({sum(square(matmul(a, b)))}, {a}, {}, std::nullopt, true)[0];
  }
  CHECK_FALSE(Autocast::create_graph_at_autocast());
  // dL/da = (2y) bᵀ as a bf16 product: both operands rounded to bf16, float32 accumulation.
  const Tensor y = matmul(round_bf16(a), round_bf16(b));
  const Tensor expect = matmul(round_bf16(mul_scalar(y, 2.0)), round_bf16(b.detach()).t());
  CHECK(max_diff(ga, expect) < 1e-5);
  // Not the exact float32 product of the default mode (what a mode that is ignored would give).
  CHECK(max_diff(ga, matmul(mul_scalar(y, 2.0), b.detach().t())) > 1e-3);
  REQUIRE(ga.requires_grad());
  // Differentiable again: d/db of Σ ga ∘ c = d/db Σ ((2y) bᵀ) ∘ c, to bf16 accuracy.
  const Tensor c = randn({4, 6}, g);
  const Tensor gb = grad({sum(mul(ga, c))}, {b})[0];
  Tensor a64 = a.detach().to(DType::f64), b64 = b.detach().to(DType::f64).set_requires_grad(true);
  const Tensor y64 = matmul(a64, b64);
  const Tensor gb64 = grad({sum(mul(matmul(mul_scalar(y64, 2.0), b64.t()), c.to(DType::f64)))}, {b64})[0];
  CHECK(max_diff(gb.to(DType::f64), gb64) < 5e-2 * max_diff(gb64, zeros_like(gb64)));
}

TEST_CASE("autocast keeps no float32 copy of an activation operand; create_graph still differentiates it") {
  Generator g(6);
  Tensor u = randn({5, 6}, g).set_requires_grad(true), v = randn({6, 4}, g).set_requires_grad(true);
  Tensor w2 = randn({6, 4}, g);
  // a and b are activations (mul_scalar saves nothing): the product must save only their casts.
  const auto second_order = [&](bool autocast) {
    Tensor a = mul_scalar(u, 1.5), b = mul_scalar(v, -0.5);
    if (!autocast) a = straight_through_bf16(a), b = straight_through_bf16(b);
    Tensor y;
    {
      AutocastGuard ac(DType::bf16, autocast);
      y = matmul(a, b);
    }
    Tensor loss = sum(square(y));
    if (autocast) {
      int64_t bytes = 0;
      for (const SavedBytes& r : saved_bytes_by_op(loss)) bytes += r.bytes;
      CHECK(bytes == (5 * 6 + 6 * 4) * 2 + 5 * 4 * 4);  // the bf16 casts, and y for square
    }
    Tensor gb = grad({loss}, {b}, {}, std::nullopt, true)[0];
    // Taped again, so the forward product's own backward also runs in float32 (the ordinary
    // backward would use bf16 products, which the reference does not model).
    tensor_list gu = grad({sum(mul(gb, w2))}, {u, v}, {}, std::nullopt, true);
    return tensor_list{gb, gu[0], gu[1]};
  };
  const tensor_list got = second_order(true), expect = second_order(false);
  for (int i = 0; i < 3; ++i) {
    INFO("output " << i);
    CHECK(max_diff(got[i], expect[i]) < 1e-4);
    CHECK(max(abs(expect[i])).item() > 0.1);
  }
}

TEST_CASE("KeepFloat32Operands: products also save float32 activations, and create_graph multiplies them exactly") {
  Generator g(7);
  Tensor u = randn({5, 6}, g).set_requires_grad(true), v = randn({6, 4}, g).set_requires_grad(true);
  Tensor a = mul_scalar(u, 1.5), b = mul_scalar(v, -0.5), y;
  {
    AutocastGuard ac(DType::bf16);
    KeepFloat32Operands keep;
    CHECK(Autocast::keep_float32_operands());
    y = matmul(a, b);
  }
  CHECK_FALSE(Autocast::keep_float32_operands());
  Tensor loss = sum(square(y));
  int64_t bytes = 0;
  for (const SavedBytes& r : saved_bytes_by_op(loss)) bytes += r.bytes;
  CHECK(bytes == (5 * 6 + 6 * 4) * (2 + 4) + 5 * 4 * 4);  // casts, float32 a and b, y for square
  // dL/db = aᵀ (2y) with the exact float32 a (y itself is the bf16 product).
  const Tensor gb = grad({loss}, {b}, {}, std::nullopt, true)[0];
  CHECK(max_diff(gb, matmul(a.detach().t(), mul_scalar(y.detach(), 2.0))) < 1e-5);
  CHECK(gb.requires_grad());
}

TEST_CASE("autocast: one cast of an input shared by neighbouring products; a modified input is cast again") {
  Generator g(4);
  Tensor x = randn({8, 16}, g);
  Tensor w1 = randn({16, 4}, g).set_requires_grad(true), w2 = randn({16, 5}, g).set_requires_grad(true);
  Profiler::reset();
  Profiler::set_enabled(true);
  Tensor y1, y2;
  {
    AutocastGuard ac(DType::bf16);
    y1 = matmul(x, w1);
    y2 = matmul(x, w2);
  }
  Profiler::set_enabled(false);
  int64_t copies = 0;
  for (auto& k : Profiler::snapshot())
    if (k.name == "unary copy") copies = k.calls;
  CHECK(copies == 3);  // x once, w1, w2
  CHECK(max_diff(y2, matmul(round_bf16(x), round_bf16(w2))) < 1e-5);
  {
    AutocastGuard ac(DType::bf16);
    (void)matmul(x, w1);
    x.add_(ones({8, 16}));  // bumps the version: the cached cast is stale
    Tensor y3 = matmul(x, w1);
    CHECK(max_diff(y3, matmul(round_bf16(x), round_bf16(w1))) < 1e-5);
  }
}

TEST_CASE("autocast backward of x @ Wᵀ (Linear): dW laid out like W, same values") {
  Generator g(5);
  Tensor a = randn({7, 6}, g).set_requires_grad(true);
  Tensor W = randn({3, 6}, g).set_requires_grad(true);
  Tensor w = randn({7, 3}, g);
  {
    AutocastGuard ac(DType::bf16);
    backward({sum(mul(matmul(a, transpose(W, 0, 1)), w))});
  }
  CHECK(W.grad().is_contiguous());
  CHECK(max_diff(W.grad(), matmul(round_bf16(w).t(), round_bf16(a))) < 1e-5);
  CHECK(max_diff(a.grad(), matmul(round_bf16(w), round_bf16(W))) < 1e-5);
}

TEST_CASE("autocast: a parameter's cast is kept across scopes until the parameter changes") {
  Generator g(5);
  Tensor x = randn({8, 16}, g);
  Tensor w = randn({16, 4}, g).set_requires_grad(true);
  Tensor a = randn({16, 4}, g);  // not a parameter: cast in every scope
  const auto copies_in = [](const std::function<void()>& fn) {
    Profiler::reset();
    Profiler::set_enabled(true);
    fn();
    Profiler::set_enabled(false);
    int64_t n = 0;
    for (auto& k : Profiler::snapshot())
      if (k.name == "unary copy") n = k.calls;
    return n;
  };
  NoGradGuard ng;
  const auto product = [&](const Tensor& m) {
    AutocastGuard ac(DType::bf16);
    return matmul(x, m);
  };
  CHECK(copies_in([&] { (void)product(w); }) == 2);  // x and w
  Tensor y;
  CHECK(copies_in([&] { y = product(w); }) == 1);    // a new scope: x again, w kept
  CHECK(max_diff(y, matmul(round_bf16(x), round_bf16(w))) < 1e-5);
  CHECK(copies_in([&] { (void)product(a); }) == 2);
  CHECK(copies_in([&] { (void)product(a); }) == 2);
  // An in-place update (an optimizer step) makes the kept cast stale: cast again, new values.
  w.add_(ones({16, 4}));
  CHECK(copies_in([&] { y = product(w); }) == 2);
  CHECK(max_diff(y, matmul(round_bf16(x), round_bf16(w))) < 1e-5);
  // A cast with grad mode on (training) keeps them too.
  {
    GradModeGuard on(true);
    AutocastGuard ac(DType::bf16);
    (void)matmul(x, a);
  }
  CHECK(copies_in([&] { (void)product(w); }) == 1);
}

TEST_CASE("autocast in training: a parameter is cast once per step, across micro-batches; again after its update") {
  Generator g(6);
  Tensor w = randn({16, 4}, g).set_requires_grad(true);
  const Tensor x1 = randn({8, 16}, g), x2 = randn({8, 16}, g), dy = randn({8, 4}, g);
  int64_t copies = 0;
  // One micro-batch: forward and backward in a scope of its own; the copies it makes; dW (the bf16 product).
  const auto micro_batch = [&](const Tensor& x) {
    Profiler::reset();
    Profiler::set_enabled(true);
    {
      AutocastGuard ac(DType::bf16);
      backward({matmul(x, w)}, {dy});
    }
    Profiler::set_enabled(false);
    for (auto& k : Profiler::snapshot())
      if (k.name == "unary copy") copies = k.calls;
  };
  micro_batch(x1);
  CHECK(copies == 3);  // x1, w, dy
  micro_batch(x2);
  CHECK(copies == 2);  // x2, dy: w's cast kept
  // dW summed over both micro-batches, from bf16 operands.
  const Tensor dw = matmul(transpose(round_bf16(x1), 0, 1), round_bf16(dy)) + matmul(transpose(round_bf16(x2), 0, 1), round_bf16(dy));
  CHECK(max_diff(w.grad(), dw) < 1e-4);
  // The optimizer's update (in place, version bumped): the next step casts w again and multiplies the new values.
  {
    NoGradGuard ng;
    w.add_(ones({16, 4}));
  }
  Tensor y;
  {
    AutocastGuard ac(DType::bf16);
    Profiler::reset();
    Profiler::set_enabled(true);
    y = matmul(x1, w);
    Profiler::set_enabled(false);
  }
  for (auto& k : Profiler::snapshot())
    if (k.name == "unary copy") CHECK(k.calls == 2);  // x1 and the new w
  CHECK(max_diff(y, matmul(round_bf16(x1), round_bf16(w))) < 1e-5);
}

TEST_CASE("matmul_low_output: the autocast product rounded once to bf16; gradients as matmul's, in the inputs' dtypes") {
  Generator g(11);
  Tensor x = randn({6, 8}, g).set_requires_grad(true), w = randn({5, 8}, g).set_requires_grad(true);
  const Tensor up = randn({6, 5}, g).to(DType::bf16);  // the upstream gradient, as a bf16 output gets it
  Tensor y_low, y;
  {
    AutocastGuard ac(DType::bf16);
    y_low = matmul_low_output(x, w.t());
    y = matmul(x, w.t());
  }
  CHECK(y_low.dtype() == DType::bf16);
  CHECK(max_diff(y_low.to(DType::f32), y.detach().to(DType::bf16).to(DType::f32)) == 0);
  const tensor_list g_low = grad({y_low}, {x, w}, {up}), g_ref = grad({y}, {x, w}, {up.to(DType::f32)});
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    CHECK(g_low[i].dtype() == DType::f32);
    CHECK(max_diff(g_low[i], g_ref[i]) < 1e-6);
    CHECK(max(abs(g_ref[i])).item() > 0.1);
  }
  // Outside autocast it is matmul.
  CHECK(matmul_low_output(x, w.t()).dtype() == DType::f32);
  CHECK(max_diff(matmul_low_output(x, w.t()), matmul(x, w.t())) == 0);
}

TEST_CASE("autocast matmul of a bf16 activation and a float32 weight = the float32 product; dx bf16, dW float32") {
  Generator g(12);
  const Tensor x32 = randn({7, 6}, g);
  Tensor x = x32.to(DType::bf16).set_requires_grad(true), w = randn({4, 6}, g).set_requires_grad(true);
  Tensor xr = x.detach().to(DType::f32).set_requires_grad(true);  // the same values in float32
  const Tensor up = randn({7, 4}, g);
  tensor_list gm, gr;
  {
    AutocastGuard ac(DType::bf16);
    const Tensor y = matmul(x, w.t()), yr = matmul(xr, w.t());
    CHECK(y.dtype() == DType::f32);
    CHECK(max_diff(y, yr) == 0);
    gm = grad({y}, {x, w}, {up});
    gr = grad({yr}, {xr, w}, {up});
    // Either order of the operands.
    CHECK(max_diff(matmul(w, x.t()), matmul(w, xr.t())) == 0);
  }
  CHECK(gm[0].dtype() == DType::bf16);
  CHECK(gm[1].dtype() == DType::f32);
  CHECK(max_diff(gm[0].to(DType::f32), gr[0].to(DType::bf16).to(DType::f32)) == 0);
  CHECK(max_diff(gm[1], gr[1]) < 1e-6);
  // Without autocast, mixed dtypes are an error that says so.
  CHECK_THROWS_WITH_AS(matmul(x, w.t()), doctest::Contains("only under autocast"), std::invalid_argument);
}

TEST_CASE("create_graph through a mixed autocast product: float32 gradients of the bf16 values, differentiable again") {
  Generator g(13);
  Tensor u = randn({5, 6}, g).set_requires_grad(true), w = randn({3, 6}, g).set_requires_grad(true);
  const Tensor c = randn({5, 6}, g);
  const auto grads = [&](bool autocast) {
    // x: a bf16 activation (autocast) or the same values in float32 with a straight-through rounding.
    Tensor x = autocast ? mul_scalar(u, 1.5).to(DType::bf16) : straight_through_bf16(mul_scalar(u, 1.5));
    Tensor y;
    {
      AutocastGuard ac(DType::bf16, autocast);
      y = autocast ? matmul_low_output(x, w.t()).to(DType::f32) : straight_through_bf16(matmul(x, straight_through_bf16(w).t()));
    }
    const Tensor gx = grad({sum(square(y))}, {x}, {}, std::nullopt, true)[0];
    return grad({sum(mul(gx.to(DType::f32), c))}, {u, w}, {}, std::nullopt, true);
  };
  const tensor_list got = grads(true), expect = grads(false);
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    CHECK(got[i].dtype() == DType::f32);
    CHECK(max_diff(got[i], expect[i]) < 0.02 * max(abs(expect[i])).item());
    CHECK(max(abs(expect[i])).item() > 0.1);
  }
}
