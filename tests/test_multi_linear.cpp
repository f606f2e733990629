// tests/test_multi_linear.cpp — multi_linear (autograd/ops/multi_linear.cpp) against the separate
// products it replaces, under bf16 autocast where its backward differs from theirs: the outputs are
// the same values, x's gradient is summed inside the GEMMs instead of by the engine, and
// create_graph falls back to the separate products. (float64 gradcheck and gradgradcheck: the op
// table, tests/op_cases/structural_cases.cpp.)
#include <doctest/doctest.h>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/profiler.h"
#include "tests/cuda_test_util.h"

using namespace ttt;

namespace {

double max_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a.to(DType::f32), b.to(DType::f32)))).item(); }
double max_abs(const Tensor& a) { return max(abs(a.to(DType::f32))).item(); }

struct Params {
  Tensor x;
  tensor_list w, b;
  std::vector<bool> low = {true, false, true};
  tensor_list probes;  // fixed weights for a scalar loss of each output
};

// Made on the CPU (the same values on every device), then moved to `dev`.
Params make_params(uint64_t seed, Device dev = cpu(), int64_t rows = 5, int64_t in = 8) {
  Generator g(seed);
  const auto leaf = [&](const Tensor& t) { return t.to(dev).detach().set_requires_grad(true); };
  Params p;
  p.x = leaf(randn({2, rows, in}, g));
  for (int64_t n : {6, 3, 4}) p.w.push_back(leaf(mul_scalar(randn({n * 8, in}, g), 0.3)));
  p.b = {Tensor(), leaf(randn({24}, g)), Tensor()};
  for (const Tensor& w : p.w) p.probes.push_back(randn({2, rows, w.shape()[0]}, g).to(dev));
  return p;
}

tensor_list all_inputs(const Params& p) { return {p.x, p.w[0], p.w[1], p.w[2], p.b[1]}; }

Tensor loss_of(const tensor_list& ys, const Params& p) {
  Tensor l;
  for (size_t i = 0; i < ys.size(); ++i) {
    const Tensor t = sum(mul(ys[i].to(DType::f32), p.probes[i]));
    l = l.defined() ? add(l, t) : t;
  }
  return l;
}

}  // namespace

TEST_CASE("multi_linear under autocast: the separate products' values; gradients summed in the GEMMs") {
  Params p = make_params(7);
  AutocastGuard ac(DType::bf16);
  const tensor_list fused = multi_linear(p.x, p.w, p.b, p.low);
  tensor_list sep;
  for (size_t i = 0; i < 3; ++i) sep.push_back(linear(p.x, p.w[i], p.b[i], p.low[i]));
  for (size_t i = 0; i < 3; ++i) {
    CHECK(fused[i].dtype() == (p.low[i] ? DType::bf16 : DType::f32));
    CHECK(fused[i].shape() == sep[i].shape());
    CHECK(max_diff(fused[i], sep[i]) == 0.0);  // the same GEMMs on the same casts
  }
  const tensor_list gf = grad({loss_of(fused, p)}, all_inputs(p));
  const tensor_list gs = grad({loss_of(sep, p)}, all_inputs(p));
  for (size_t i = 0; i < gf.size(); ++i) {
    CAPTURE(i);
    CHECK(gf[i].dtype() == all_inputs(p)[i].dtype());
    CHECK(gf[i].shape() == all_inputs(p)[i].shape());
    // float32 sums of the same bf16 products, in another order.
    CHECK(max_diff(gf[i], gs[i]) <= 1e-5 * (1 + max_abs(gs[i])));
  }
  CHECK(max_abs(gf[0]) > 0.1);
}

TEST_CASE("multi_linear: x's gradient needs no engine add; each product alone gives its own share") {
  Params p = make_params(8);
  AutocastGuard ac(DType::bf16);
  const tensor_list ys = multi_linear(p.x, p.w, p.b, p.low);
  Profiler::reset();
  Profiler::set_enabled(true);
  const tensor_list g = grad({loss_of(ys, p)}, {p.x});
  Profiler::set_enabled(false);
  int64_t adds = 0;
  for (const ScopedKernelStat& s : Profiler::scoped_snapshot())
    if (s.scope == std::string("gradient accumulation")) adds += s.calls;
  CHECK(adds == 0);
  // The sum of the three shares, each from one product alone.
  Tensor sum_of_shares;
  for (size_t i = 0; i < 3; ++i) {
    const Tensor gi = grad({sum(mul(linear(p.x, p.w[i], p.b[i], p.low[i]).to(DType::f32), p.probes[i]))}, {p.x})[0];
    sum_of_shares = sum_of_shares.defined() ? add(sum_of_shares, gi) : gi;
  }
  CHECK(max_diff(g[0], sum_of_shares) <= 1e-5 * (1 + max_abs(sum_of_shares)));
}

TEST_CASE("multi_linear with create_graph under autocast: the separate products' second derivatives") {
  Params p = make_params(9);
  AutocastGuard ac(DType::bf16);
  const auto second = [&](bool fused) {
    tensor_list ys;
    if (fused) {
      ys = multi_linear(p.x, p.w, p.b, p.low);
    } else {
      for (size_t i = 0; i < 3; ++i) ys.push_back(linear(p.x, p.w[i], p.b[i], p.low[i]));
    }
    const tensor_list g1 = grad({loss_of(ys, p)}, all_inputs(p), {}, std::nullopt, /*create_graph=*/true);
    Tensor s = sum(square(g1[0]));
    for (size_t i = 1; i < g1.size(); ++i) s = add(s, sum(square(g1[i])));
    return grad({s}, all_inputs(p), {}, std::nullopt, false, /*allow_unused=*/true);  // nothing depends on b
  };
  const tensor_list gf = second(true), gs = second(false);
  for (size_t i = 0; i < gf.size(); ++i) {
    CAPTURE(i);
    REQUIRE(gf[i].defined() == gs[i].defined());
    if (gs[i].defined()) CHECK(max_diff(gf[i], gs[i]) <= 1e-5 * (1 + max_abs(gs[i])));
  }
  CHECK_FALSE(gs[4].defined());
  CHECK(max_abs(gf[0]) > 0.01);
  CHECK(max_abs(gf[1]) > 0.01);
}

TEST_CASE("cuda multi_linear under autocast = the separate products on the GPU, and = the CPU") {
  TTT_REQUIRE_GPU();
  // Rows and widths of GEMMs that cuBLAS tiles (the accumulating GEMMs write the whole buffer).
  for (const int64_t rows : {5, 300}) {
    CAPTURE(rows);
    Params p = make_params(11, cuda(), rows, 64), c = make_params(11, cpu(), rows, 64);
    AutocastGuard ac(DType::bf16);
    const tensor_list fused = multi_linear(p.x, p.w, p.b, p.low), fused_cpu = multi_linear(c.x, c.w, c.b, c.low);
    tensor_list sep;
    for (size_t i = 0; i < 3; ++i) sep.push_back(linear(p.x, p.w[i], p.b[i], p.low[i]));
    for (size_t i = 0; i < 3; ++i) {
      CHECK(max_diff(fused[i].to(cpu()), sep[i].to(cpu())) == 0.0);
      CHECK(max_diff(fused[i].to(cpu()), fused_cpu[i]) <= 1e-2 * (1 + max_abs(fused_cpu[i])));
    }
    const tensor_list gf = grad({loss_of(fused, p)}, all_inputs(p));
    const tensor_list gs = grad({loss_of(sep, p)}, all_inputs(p));
    const tensor_list gc = grad({loss_of(fused_cpu, c)}, all_inputs(c));
    for (size_t i = 0; i < gf.size(); ++i) {
      CAPTURE(i);
      CHECK(gf[i].device() == cuda());
      CHECK(max_diff(gf[i].to(cpu()), gs[i].to(cpu())) <= 1e-5 * (1 + max_abs(gs[i].to(cpu()))));
      CHECK(max_diff(gf[i].to(cpu()), gc[i]) <= 1e-3 * (1 + max_abs(gc[i])));
    }
  }
}

TEST_CASE("multi_linear: clear errors") {
  Generator g(3);
  const Tensor x = randn({2, 4}, g), w = randn({3, 4}, g);
  CHECK_THROWS_WITH_AS(multi_linear(x, {}, {}, {}), doctest::Contains("at least one weight"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(multi_linear(x, {w}, {}, {false}), doctest::Contains("one bias"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(multi_linear(x, {randn({3, 5}, g)}, {Tensor()}, {false}), doctest::Contains("[n, 4]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(multi_linear(x, {w}, {randn({2}, g)}, {false}), doctest::Contains("bias 0 must be [3]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(multi_linear(x, {w.to(DType::f64)}, {Tensor()}, {false}), doctest::Contains("one dtype"),
                       std::invalid_argument);
}
