// tests/test_linear_cross_entropy.cpp — linear_cross_entropy(h, W, t) (the LM head and its loss
// over chunks of rows) against the composite it replaces, cross_entropy(matmul(h, Wᵀ), t):
// gradcheck and gradgradcheck in float64, loss and gradients for every chunking (short last
// chunk, ignored rows, all rows ignored), both reductions, a scaled incoming gradient, bf16
// autocast and a bf16 model, create_graph, the memory it saves (the CPU allocator's peak), the
// error messages, and CUDA against the CPU (skipped without a GPU).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using ttt::testing::check_close;
using ttt::testing::check_rel_norm;
using ttt::testing::Tol;

namespace {

// Targets in [0, V) with every `every`-th row set to ignore_index (none when every == 0).
Tensor make_targets(int64_t rows, int64_t vocab, uint64_t seed, int64_t every = 0, int64_t ignore_index = -100) {
  Generator g(seed);
  std::vector<int64_t> t;
  for (double u : rand({rows}, g, opts(DType::f64), 0.0, static_cast<double>(vocab)).tolist<double>())
    t.push_back(std::min<int64_t>(vocab - 1, static_cast<int64_t>(u)));
  if (every > 0)
    for (int64_t r = 1; r < rows; r += every) t[r] = ignore_index;
  return from_vector_i64(t, {rows});
}

Tensor leaf(const Shape& s, uint64_t seed, DType dt, double std = 1.0) {
  Generator g(seed);
  return randn(s, g, opts(DType::f64), 0.0, std).to(dt).set_requires_grad(true);
}

struct LossAndGrads {
  Tensor loss, dh, dw;
};

// Loss and grad(loss · go) w.r.t. h and W; chunk_rows < 0 means the composite.
LossAndGrads run(const Tensor& h, const Tensor& w, const Tensor& t, int64_t ignore_index, const std::string& red,
                 int64_t chunk_rows, double go = 1.0) {
  Tensor loss = chunk_rows < 0 ? cross_entropy(matmul(h, transpose(w, 0, 1)), t, ignore_index, red)
                               : linear_cross_entropy(h, w, t, ignore_index, red, chunk_rows);
  tensor_list g = grad({loss}, {h, w}, {full({}, go, opts(loss.dtype(), loss.device()))});
  return {loss.detach(), g[0], g[1]};
}

void check_same(const LossAndGrads& a, const LossAndGrads& ref, Tol tol, const std::string& what) {
  check_close(a.loss, ref.loss, tol, what + " loss");
  check_close(a.dh, ref.dh, tol, what + " dh");
  check_close(a.dw, ref.dw, tol, what + " dW");
}

}  // namespace

TEST_CASE("gradcheck and gradgradcheck in float64, chunked with ignored rows") {
  const Tensor t = make_targets(7, 5, 1, 3);  // rows 1 and 4 ignored
  for (int64_t chunk : {0, 1, 3}) {
    Tensor h = leaf({7, 4}, 2, DType::f64), w = leaf({5, 4}, 3, DType::f64);
    for (const char* red : {"mean", "sum"}) {
      INFO("chunk_rows ", chunk, ", ", red);
      auto fn = [&](const tensor_list& x) { return tensor_list{linear_cross_entropy(x[0], x[1], t, -100, red, chunk)}; };
      GradcheckResult r = gradcheck(fn, {h, w});
      CHECK_MESSAGE(r.ok, r.message);
      GradcheckResult r2 = gradgradcheck(fn, {h, w});
      CHECK_MESSAGE(r2.ok, r2.message);
    }
  }
}

TEST_CASE("loss and gradients = the composite for every chunking (short last chunk, ignored rows)") {
  const int64_t N = 23, d = 6, V = 11;
  for (DType dt : {DType::f64, DType::f32}) {
    const Tol tol = dt == DType::f64 ? Tol{1e-13, 1e-11} : Tol{1e-6, 1e-5};
    Tensor h = leaf({N, d}, 4, dt), w = leaf({V, d}, 5, dt);
    for (int64_t ignore_index : {int64_t{-100}, int64_t{2}})  // 2: a real class id, ignored where it occurs
      for (const char* red : {"mean", "sum"}) {
        const Tensor t = make_targets(N, V, 6, 4, ignore_index);
        const LossAndGrads ref = run(h, w, t, ignore_index, red, -1, 0.75);
        for (int64_t chunk : {0, 1, 5, 8, 22, 23, 64})
          check_same(run(h, w, t, ignore_index, red, chunk, 0.75), ref, tol,
                     std::string(dtype_name(dt)) + " " + red + " ignore " + std::to_string(ignore_index) +
                         " chunks of " + std::to_string(chunk));
      }
  }
}

TEST_CASE("the incoming gradient scales both gradients; a hand-computed case") {
  // h = [[1, 0]], W = [[0, 0], [ln 3, 0]]: logits [0, ln 3], softmax [1/4, 3/4], target 0.
  Tensor h = from_vector({1.0, 0.0}, {1, 2}, opts(DType::f64)).set_requires_grad(true);
  Tensor w = from_vector({0.0, 0.0, std::log(3.0), 0.0}, {2, 2}, opts(DType::f64)).set_requires_grad(true);
  const Tensor t = from_vector_i64({0}, {1});
  LossAndGrads r = run(h, w, t, -100, "mean", 1, 2.0);
  CHECK(r.loss.item() == doctest::Approx(std::log(4.0)).epsilon(1e-14));
  // P = [-3/4, 3/4]; dh = 2 P W = [2 · 3/4 · ln 3, 0]; dW = 2 Pᵀ h = [[-3/2, 0], [3/2, 0]].
  check_close(r.dh, from_vector({1.5 * std::log(3.0), 0.0}, {1, 2}, opts(DType::f64)), {1e-14, 1e-14}, "dh");
  check_close(r.dw, from_vector({-1.5, 0.0, 1.5, 0.0}, {2, 2}, opts(DType::f64)), {1e-14, 1e-14}, "dW");
}

TEST_CASE("every row ignored: mean is NaN with zero gradients, sum is 0; no rows at all") {
  Tensor h = leaf({5, 3}, 7, DType::f32), w = leaf({4, 3}, 8, DType::f32);
  const Tensor t = full({5}, -100, opts(DType::i64));
  for (int64_t chunk : {0, 2}) {
    LossAndGrads m = run(h, w, t, -100, "mean", chunk);
    CHECK(std::isnan(m.loss.item()));
    CHECK(max(abs(m.dh)).item() == 0);
    CHECK(max(abs(m.dw)).item() == 0);
    LossAndGrads s = run(h, w, t, -100, "sum", chunk);
    CHECK(s.loss.item() == 0);
    CHECK(max(abs(s.dw)).item() == 0);
  }
  Tensor h0 = leaf({0, 3}, 9, DType::f32);
  LossAndGrads e = run(h0, w, zeros({0}, opts(DType::i64)), -100, "sum", 0);
  CHECK(e.loss.item() == 0);
  CHECK(e.dh.shape() == Shape{0, 3});
  CHECK(max(abs(e.dw)).item() == 0);
}

TEST_CASE("leading dims, int32 targets, non-contiguous h and W, only one input requiring grad") {
  Tensor h = leaf({2, 5, 4}, 10, DType::f64), w = leaf({6, 4}, 11, DType::f64);
  const Tensor t = reshape(make_targets(10, 6, 12, 3), {2, 5}).to(DType::i32);
  const LossAndGrads ref = run(h, w, t, -100, "mean", -1);
  check_same(run(h, w, t, -100, "mean", 3), ref, {1e-13, 1e-11}, "[2,5,4] h");
  // The same values through a transposed h and a transposed weight buffer.
  Tensor hT = contiguous(transpose(h.detach(), 0, 1)).set_requires_grad(true);
  Tensor wT = contiguous(transpose(w.detach(), 0, 1)).set_requires_grad(true);
  Tensor loss = linear_cross_entropy(transpose(hT, 0, 1), transpose(wT, 0, 1), t, -100, "mean", 4);
  tensor_list g = grad({loss}, {hT, wT});
  check_close(loss, ref.loss, {1e-13, 1e-11}, "transposed inputs: loss");
  check_close(transpose(g[0], 0, 1), ref.dh, {1e-13, 1e-11}, "transposed inputs: dh");
  check_close(transpose(g[1], 0, 1), ref.dw, {1e-13, 1e-11}, "transposed inputs: dW");
  // A frozen h (W trains) and a frozen W (h trains).
  Tensor w_only = linear_cross_entropy(h.detach(), w, t, -100, "mean", 3);
  check_close(grad({w_only}, {w})[0], ref.dw, {1e-13, 1e-11}, "frozen h: dW");
  Tensor h_only = linear_cross_entropy(h, w.detach(), t, -100, "mean", 3);
  check_close(grad({h_only}, {h})[0], ref.dh, {1e-13, 1e-11}, "frozen W: dh");
  // No gradient wanted: just the loss.
  NoGradGuard ng;
  check_close(linear_cross_entropy(h, w, t, -100, "mean", 3), ref.loss, {1e-13, 1e-11}, "no grad: loss");
}

TEST_CASE("create_graph: the gradients are differentiable and match the composite's") {
  Tensor h = leaf({6, 3}, 13, DType::f64), w = leaf({4, 3}, 14, DType::f64);
  const Tensor t = make_targets(6, 4, 15, 4);
  auto second = [&](int64_t chunk) {
    Tensor loss = chunk < 0 ? cross_entropy(matmul(h, transpose(w, 0, 1)), t) : linear_cross_entropy(h, w, t, -100, "mean", chunk);
    tensor_list g = grad({loss}, {h, w}, {}, std::nullopt, true);
    Tensor penalty = add(sum(square(g[0])), sum(square(g[1])));  // a gradient-norm penalty
    return grad({penalty}, {h, w});
  };
  tensor_list ref = second(-1), got = second(2);
  check_close(got[0], ref[0], {1e-13, 1e-11}, "d penalty / dh");
  check_close(got[1], ref[1], {1e-13, 1e-11}, "d penalty / dW");
}

TEST_CASE("bf16 autocast: bf16 products like matmul's; a bf16 model: float32 logits") {
  const int64_t N = 37, d = 16, V = 29;
  Tensor h = leaf({N, d}, 16, DType::f32), w = leaf({V, d}, 17, DType::f32, 0.5);
  const Tensor t = make_targets(N, V, 18, 5);
  LossAndGrads ref, got, exact;
  {
    AutocastGuard ac(DType::bf16);
    ref = run(h, w, t, -100, "mean", -1);
    got = run(h, w, t, -100, "mean", 8);
  }
  exact = run(h, w, t, -100, "mean", 8);
  // The same bf16-rounded products: equal up to float32 summation order.
  check_same(got, ref, {1e-6, 1e-4}, "autocast");
  // ... and really rounded: the float32 op differs from them by bf16's precision.
  CHECK(std::fabs(exact.loss.item() - got.loss.item()) > 1e-6);
  CHECK(got.dh.dtype() == DType::f32);
  CHECK(got.dw.dtype() == DType::f32);
  // A bf16 model: bf16 gradients close to the float32 ones (the composite also rounds its
  // logits to bf16; this op keeps them in float32).
  Tensor hb = h.detach().to(DType::bf16).set_requires_grad(true), wb = w.detach().to(DType::bf16).set_requires_grad(true);
  LossAndGrads b = run(hb, wb, t, -100, "mean", 8), bref = run(hb, wb, t, -100, "mean", -1);
  CHECK(b.loss.dtype() == DType::bf16);
  CHECK(b.dh.dtype() == DType::bf16);
  CHECK(b.dw.dtype() == DType::bf16);
  CHECK(std::fabs(b.loss.item() - exact.loss.item()) < 2e-2);
  check_rel_norm(b.dh.to(DType::f32), exact.dh, 2e-2, "bf16 model dh vs float32");
  check_rel_norm(b.dw.to(DType::f32), exact.dw, 2e-2, "bf16 model dW vs float32");
  check_rel_norm(b.dw.to(DType::f32), bref.dw.to(DType::f32), 3e-2, "bf16 model dW vs the bf16 composite");
}

TEST_CASE("peak memory: chunks of logits instead of all of them (CPU allocator)") {
  const int64_t N = 512, d = 8, V = 1000, chunk = 64;  // logits 2 MB in float32, a chunk 256 KB
  Tensor h = leaf({N, d}, 19, DType::f32), w = leaf({V, d}, 20, DType::f32);
  const Tensor t = make_targets(N, V, 21);
  Backend& be = backend(cpu());
  auto peak_of = [&](int64_t c) {
    const size_t base = be.memory_allocated();
    be.reset_peak_memory();
    (void)run(h, w, t, -100, "mean", c);
    return be.memory_peak() - base;
  };
  const size_t composite = peak_of(-1), chunked = peak_of(chunk);
  const size_t logits = static_cast<size_t>(N * V) * 4;
  MESSAGE("peak above the inputs: composite ", composite, " B, chunked ", chunked, " B (logits ", logits, " B)");
  CHECK(composite >= 2 * logits);  // the logits and their gradient
  CHECK(chunked < logits / 2);     // two chunks of 256 KB, dW and dh
}

TEST_CASE("bad calls are clear errors") {
  Tensor h = leaf({4, 3}, 22, DType::f32), w = leaf({5, 3}, 23, DType::f32);
  const Tensor t = make_targets(4, 5, 24);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, t, -100, "none"), doctest::Contains("reduction"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, leaf({5, 2}, 25, DType::f32), t), doctest::Contains("weight [V, d]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, make_targets(3, 5, 26)), doctest::Contains("do not match"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, t, -100, "mean", -1), doctest::Contains("chunk_rows"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w.detach().to(DType::f64), t), doctest::Contains("dtype"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, from_vector_i64({0, 1, 5, 2}, {4})), doctest::Contains("out of range"),
                       std::invalid_argument);
}

TEST_CASE("CUDA = CPU: float32, bf16 autocast, chunked with ignored rows") {
  TTT_REQUIRE_GPU();
  const int64_t N = 300, d = 64, V = 1003;  // a short last chunk; V not a multiple of the vector width
  const Tensor t = make_targets(N, V, 27, 7);
  for (bool amp : {false, true}) {
    Tensor hc = leaf({N, d}, 28, DType::f32, 0.5), wc = leaf({V, d}, 29, DType::f32, 0.5);
    Tensor hg = hc.detach().to(cuda()).set_requires_grad(true), wg = wc.detach().to(cuda()).set_requires_grad(true);
    LossAndGrads c, g;
    {
      AutocastGuard ac(DType::bf16, amp);
      c = run(hc, wc, t, -100, "mean", 128);
      g = run(hg, wg, t.to(cuda()), -100, "mean", 128);
    }
    const cudatest::Tol tol = amp ? cudatest::Tol{1e-5, 2e-3} : cudatest::Tol{1e-6, 1e-4};
    const std::string tag = amp ? "autocast " : "float32 ";
    cudatest::expect_close(g.loss.to(cpu()), c.loss, tol, tag + "loss");
    cudatest::expect_close(g.dh.to(cpu()), c.dh, tol, tag + "dh");
    cudatest::expect_close(g.dw.to(cpu()), c.dw, tol, tag + "dW");
  }
}
