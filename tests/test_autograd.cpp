// tests/test_autograd.cpp — the tape engine: backward, grad, create_graph (second order),
// retain_graph, leaf accumulation, hooks, saved-tensor version checks, error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/checkpoint.h"
#include "autograd/ops.h"
#include "tests/profile_count.h"

using namespace ttt;

namespace {
Tensor leaf(std::vector<double> v, Shape s) { return from_vector(v, s, {DType::f64, cpu(), true}); }
}  // namespace

TEST_CASE("backward accumulates into leaves") {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward();
  CHECK(x.grad().tolist<double>() == std::vector<double>{2, 4, 6});
  Tensor y2 = sum(mul_scalar(x, 3.0));
  y2.backward();  // accumulates
  CHECK(x.grad().tolist<double>() == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a tensor used twice gets both contributions; diamond graphs") {
  Tensor x = leaf({2}, {1});
  Tensor a = mul(x, x);       // x^2
  Tensor b = exp(x);          // e^x
  Tensor y = sum(mul(a, b));  // x^2 e^x -> (2x + x^2) e^x
  y.backward();
  CHECK(x.grad().item() == doctest::Approx((4 + 4) * std::exp(2.0)));
}

TEST_CASE("grad() returns gradients without touching .grad; non-leaf inputs") {
  Tensor x = leaf({1, -2}, {2});
  Tensor h = mul_scalar(x, 3.0);  // non-leaf
  Tensor y = sum(square(h));      // 9 x^2
  tensor_list g = grad({y}, {x, h}, {}, true);
  CHECK(g[0].tolist<double>() == std::vector<double>{18, -36});
  CHECK(g[1].tolist<double>() == std::vector<double>{6, -12});
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("create_graph: second derivatives") {
  Tensor x = leaf({0.5, 1.5}, {2});
  Tensor y = sum(mul(mul(x, x), x));  // sum x^3
  Tensor g = grad({y}, {x}, {}, std::nullopt, true)[0];  // 3x^2
  CHECK(g.requires_grad());
  CHECK(g.tolist<double>()[1] == doctest::Approx(3 * 1.5 * 1.5));
  Tensor gg = grad({sum(g)}, {x}, {}, true)[0];  // 6x
  CHECK(gg.tolist<double>() == std::vector<double>{3, 9});
  // Third order through the same machinery.
  Tensor g2 = grad({sum(g)}, {x}, {}, std::nullopt, true)[0];
  Tensor g3 = grad({sum(g2)}, {x})[0];  // 6
  CHECK(g3.tolist<double>() == std::vector<double>{6, 6});
}

TEST_CASE("second order through saved outputs (exp, tanh, sigmoid)") {
  Tensor x = leaf({0.3}, {1});
  Tensor g = grad({sum(tanh(x))}, {x}, {}, std::nullopt, true)[0];  // 1 - tanh^2
  Tensor gg = grad({sum(g)}, {x})[0];                              // -2 tanh (1 - tanh^2)
  double t = std::tanh(0.3);
  CHECK(gg.item() == doctest::Approx(-2 * t * (1 - t * t)).epsilon(1e-12));
}

TEST_CASE("backward twice without retain_graph is a clear error") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(exp(x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("a second time"), std::runtime_error);
  Tensor z = sum(exp(x));
  z.backward(Tensor(), /*retain_graph=*/true);
  z.backward();
  CHECK(x.grad().tolist<double>()[0] == doctest::Approx(3 * std::exp(1.0)));
}

TEST_CASE("non-scalar backward needs grad_outputs") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = mul_scalar(x, 2.0);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("only for scalar outputs"), std::invalid_argument);
  y.backward(from_vector({1, 10}, {2}, opts(DType::f64)));
  CHECK(x.grad().tolist<double>() == std::vector<double>{2, 20});
}

TEST_CASE("saved tensor modified in place is detected") {
  Tensor x = leaf({1, 2}, {2});
  Tensor w = from_vector({3, 4}, {2}, opts(DType::f64));
  Tensor y = sum(mul(x, w));
  w.fill_(0.0);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("modified in place"), std::runtime_error);
}

TEST_CASE("no grad mode records nothing") {
  Tensor x = leaf({1}, {1});
  Tensor y;
  {
    NoGradGuard ng;
    y = exp(x);
  }
  CHECK_FALSE(y.requires_grad());
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("does not require grad"), std::invalid_argument);
}

TEST_CASE("leaf hooks and post-accumulate hooks") {
  Tensor x = leaf({1, 2}, {2});
  int post_calls = 0;
  x.register_hook([](const Tensor& g) { return mul_scalar(g, 10.0); });
  x.register_post_accumulate_grad_hook([&](Tensor& t) {
    ++post_calls;
    CHECK(t.grad().defined());
  });
  sum(x).backward();
  CHECK(x.grad().tolist<double>() == std::vector<double>{10, 10});
  CHECK(post_calls == 1);
}

TEST_CASE("unused input in grad()") {
  Tensor x = leaf({1}, {1}), z = leaf({1}, {1});
  Tensor y = sum(exp(x));
  CHECK_THROWS_WITH_AS(grad({y}, {z}, {}, true), doctest::Contains("not used"), std::invalid_argument);
  tensor_list g = grad({y}, {x, z}, {}, true, false, true);
  CHECK(g[0].defined());
  CHECK_FALSE(g[1].defined());
}

TEST_CASE("views in the graph: gradients flow through transpose, narrow, expand") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = sum(mul(x.t().narrow(0, 1, 2), from_vector({1, 2, 3, 4}, {2, 2}, opts(DType::f64))));
  y.backward();
  // x.t() is [3,2]; rows 1..2 are x[:,1], x[:,2]; weights [[1,2],[3,4]] -> dx[0][1]=1, dx[1][1]=2, dx[0][2]=3, dx[1][2]=4
  CHECK(x.grad().tolist<double>() == std::vector<double>{0, 1, 3, 0, 2, 4});
}

TEST_CASE(".grad never aliases another tensor (the first gradient is kept without a copy only when unshared)") {
  // add's backward hands the same gradient tensor to both inputs.
  Tensor a = ones({3}).set_requires_grad(true), b = ones({3}).set_requires_grad(true);
  backward({sum(mul(add(a, b), from_vector({1, 2, 3}, {3})))});
  CHECK_FALSE(a.grad().shares_storage(b.grad()));
  {
    NoGradGuard ng;
    a.grad().add_(ones({3}));
  }
  CHECK(b.grad().tolist<double>() == std::vector<double>{1, 2, 3});
  CHECK(a.grad().tolist<double>() == std::vector<double>{2, 3, 4});
  // A non-dense gradient (here sum's expanded ones, transposed back) becomes a dense copy.
  Tensor c = ones({2, 3}).set_requires_grad(true);
  Tensor c_t = transpose(c, 0, 1);
  backward({sum(c_t)});
  CHECK(c.grad().is_contiguous());
  CHECK(c.grad().tolist<double>() == std::vector<double>(6, 1.0));
}

TEST_CASE("create_graph: .grad is a copy unless unshared, so a later backward accumulates correctly") {
  // add's backward hands one gradient to both a and b, and sum's gradient is a stride-0 expanded
  // view of a single 1: kept as .grad without a copy, a later in-place accumulation wrote
  // a.grad = b.grad = 16.
  Tensor a = leaf({1, 2, 3}, {3}), b = leaf({4, 5, 6}, {3});
  Tensor c = from_vector({5, 5, 5}, {3}, opts(DType::f64));
  backward({sum(add(a, b))}, {}, std::nullopt, /*create_graph=*/true);
  CHECK_FALSE(a.grad().shares_storage(b.grad()));
  CHECK(a.grad().is_contiguous());
  backward({sum(mul(a, c))});
  CHECK(a.grad().tolist<double>() == std::vector<double>{6, 6, 6});
  CHECK(b.grad().tolist<double>() == std::vector<double>{1, 1, 1});

  // The copy keeps the history: .grad from create_graph can be differentiated again.
  Tensor x = leaf({0.5, 2.0}, {2});
  Tensor y = leaf({3.0}, {1});
  backward({add(sum(mul(mul(x, x), x)), sum(mul(x, y.expand({2}))))}, {}, std::nullopt, true);
  Tensor gx = x.grad();  // 3x^2 + y
  CHECK(gx.requires_grad());
  CHECK(gx.tolist<double>() == std::vector<double>{3 * 0.25 + 3, 3 * 4.0 + 3});
  tensor_list gg = grad({sum(gx)}, {x, y});  // d/dx = 6x, d/dy = 2 (y is used twice)
  CHECK(gg[0].tolist<double>() == std::vector<double>{3, 12});
  CHECK(gg[1].tolist<double>() == std::vector<double>{2});
  // y's gradient (sum of x) keeps its history too.
  CHECK(y.grad().tolist<double>() == std::vector<double>{2.5});
  CHECK(y.grad().requires_grad());
}

TEST_CASE("an exclusive dense gradient becomes .grad without a copy on both paths") {
  // mul's backward returns a fresh dense tensor only this leaf sees: kept as it is (no copy),
  // observable through a post-accumulate hook that sees the data pointer of the incoming one.
  for (bool create_graph : {false, true}) {
    Tensor x = leaf({1, 2}, {2});
    const void* incoming = nullptr;
    x.register_hook([&](const Tensor& g) {
      incoming = g.data_ptr();
      return Tensor();
    });
    Tensor w = from_vector({3, 4}, {2}, opts(DType::f64));
    backward({sum(mul(x, w))}, {}, std::nullopt, create_graph);
    CHECK(x.grad().tolist<double>() == std::vector<double>{3, 4});
    CHECK(x.grad().data_ptr() == incoming);
  }
}

namespace {
// A differentiable identity whose backward appends `what` to `log` when it runs.
Tensor logged_identity(const Tensor& x, std::vector<std::string>& log, std::string what) {
  Tensor y = make_view(x, x.shape(), x.strides(), x.offset());
  record("logged_identity", {x}, {y}, {}, [&log, what](BackwardCtx&, const tensor_list& g) {
    log.push_back(what);
    return tensor_list{g[0]};
  });
  return y;
}
}  // namespace

TEST_CASE("a parameter's gradient is complete, and its hooks fire, before earlier layers' backward runs") {
  // Three layers x -> W1 -> tanh -> W2 -> tanh -> W3 -> sum. The engine runs a leaf's sink as soon
  // as its gradient is complete: W3's hook fires before layer 2's backward, W2's before layer 1's.
  // (With sinks run after every other node, all hooks fired after "layer 1 backward".)
  std::vector<std::string> log;
  Generator gen(3);
  Tensor x = randn({4, 5}, gen, opts(DType::f64));
  Tensor w1 = randn({5, 6}, gen, opts(DType::f64)).set_requires_grad(true);
  Tensor w2 = randn({6, 6}, gen, opts(DType::f64)).set_requires_grad(true);
  Tensor w3 = randn({6, 2}, gen, opts(DType::f64)).set_requires_grad(true);
  for (auto [w, name] : {std::pair{&w1, "W1"}, {&w2, "W2"}, {&w3, "W3"}})
    w->register_post_accumulate_grad_hook([&log, n = std::string(name)](Tensor& t) {
      CHECK(t.grad().defined());
      log.push_back(n + " hook");
    });
  Tensor h1 = logged_identity(matmul(x, w1), log, "layer 1 backward");
  Tensor h2 = logged_identity(matmul(tanh(h1), w2), log, "layer 2 backward");
  Tensor y = sum(matmul(tanh(h2), w3));
  backward({y});
  CHECK(log == std::vector<std::string>{"W3 hook", "layer 2 backward", "W2 hook", "layer 1 backward", "W1 hook"});

  // The gradients are those of the same graph run without hooks through grad().
  Tensor y2 = sum(matmul(tanh(matmul(tanh(matmul(x, w1)), w2)), w3));
  tensor_list g = grad({y2}, {w1, w2, w3});
  CHECK(max(abs(sub(g[0], w1.grad()))).item() == 0);
  CHECK(max(abs(sub(g[1], w2.grad()))).item() == 0);
  CHECK(max(abs(sub(g[2], w3.grad()))).item() == 0);
}

TEST_CASE("a leaf reached along several paths accumulates all of them before its hook fires") {
  // w is used by the last and the first layer: its sink must wait for both contributions.
  Tensor w = from_vector({0.5, -1.5}, {2}, {DType::f64, cpu(), true});
  Tensor x = from_vector({2, 3}, {2}, opts(DType::f64));
  int calls = 0;
  std::vector<double> seen;
  w.register_post_accumulate_grad_hook([&](Tensor& t) {
    ++calls;
    seen = t.grad().tolist<double>();
  });
  Tensor h = tanh(mul(x, w));           // first use
  Tensor y = sum(mul(exp(h), w));       // second use, later
  backward({y});
  CHECK(calls == 1);
  // dy/dw = exp(h) + w * exp(h) * (1 - h^2) * x
  for (int i = 0; i < 2; ++i) {
    const double wi = i ? -1.5 : 0.5, xi = i ? 3 : 2, hi = std::tanh(xi * wi);
    CHECK(seen[i] == doctest::Approx(std::exp(hi) + wi * std::exp(hi) * (1 - hi * hi) * xi).epsilon(1e-12));
  }
}

TEST_CASE("backward of several outputs where one depends on the other; grad() of a middle node") {
  Tensor x = leaf({1, 2}, {2});
  Tensor a = mul(x, x);          // x^2
  Tensor b = sum(mul_scalar(a, 3.0));  // 3 sum x^2
  // Roots a (non-scalar) and b: a's node waits for b's contribution before it runs.
  backward({a, b}, {from_vector({1, 1}, {2}, opts(DType::f64)), ones_like(b.detach())});
  CHECK(x.grad().tolist<double>() == std::vector<double>{2 + 6, 4 + 12});
  tensor_list g = grad({sum(exp(a))}, {a});
  CHECK(g[0].tolist<double>()[1] == doctest::Approx(std::exp(4.0)));
}

namespace {
// GEMM calls (backend gemm of any dtype) made by fn, counted by the kernel profiler.
int64_t gemm_calls(const std::function<void()>& fn) { return ttt::testing::backend_calls(fn, "gemm"); }
}  // namespace

TEST_CASE("grad() computes only the requested gradients (execution mask): GEMMs counted") {
  Generator gen(5);
  Tensor x = randn({4, 3}, gen, opts(DType::f64)).set_requires_grad(true);
  Tensor w = randn({3, 5}, gen, opts(DType::f64)).set_requires_grad(true);
  Tensor dw, dx;
  // Forward 1 GEMM; backward: dW = x^T dC only (dx = dC W^T is not wanted).
  CHECK(gemm_calls([&] { dw = grad({sum(matmul(x, w))}, {w})[0]; }) == 2);
  CHECK(gemm_calls([&] { dx = grad({sum(matmul(x, w))}, {x})[0]; }) == 2);
  CHECK(gemm_calls([&] { backward({sum(matmul(x, w))}); }) == 3);  // backward() wants both
  CHECK(max(abs(sub(dw, w.grad()))).item() == 0);
  CHECK(max(abs(sub(dx, x.grad()))).item() == 0);
  // Through an intermediate: y = tanh(x @ W1) @ W2, grad w.r.t. W1 only. The mask is per edge:
  // the second product's node runs (it leads to W1) but computes only its input-0 gradient.
  Tensor w2 = randn({5, 2}, gen, opts(DType::f64)).set_requires_grad(true);
  tensor_list g1;
  CHECK(gemm_calls([&] { g1 = grad({sum(matmul(tanh(matmul(x, w)), w2))}, {w}); }) == 2 + 2);
  x.zero_grad();
  w.zero_grad();
  backward({sum(matmul(tanh(matmul(x, w)), w2))});
  CHECK(max(abs(sub(g1[0], w.grad()))).item() == 0);
  // A checkpoint's recomputation also computes only what is asked: forward 1 + recompute 1 +
  // dW 1 (not dx).
  tensor_list gc;
  CHECK(gemm_calls([&] {
          tensor_list out = checkpoint([](const tensor_list& in) { return tensor_list{matmul(in[0], in[1])}; }, {x, w});
          gc = grad({sum(out[0])}, {w});
        }) == 3);
  CHECK(max(abs(sub(gc[0], dw))).item() == 0);
  // With create_graph the mask holds too, and the gradient is still differentiable: the second
  // derivative through the masked grad() equals the one through a grad() that wants both inputs.
  Tensor gw = grad({sum(square(matmul(x, w)))}, {w}, {}, std::nullopt, true)[0];
  Tensor gw_both = grad({sum(square(matmul(x, w)))}, {x, w}, {}, std::nullopt, true)[1];
  Tensor ggx = grad({sum(gw)}, {x})[0], ggx_ref = grad({sum(gw_both)}, {x})[0];
  CHECK(max(abs(sub(ggx, ggx_ref))).item() == 0);
  CHECK(max(abs(ggx)).item() > 0);
}
