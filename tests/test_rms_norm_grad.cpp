// tests/test_rms_norm_grad.cpp — RMSNorm's double backward (kernels/rms_norm_grad.h) and the op that
// uses it, rms_norm_backward (autograd/ops/rms_norm_backward.cpp):
//   - the CPU kernel against autograd through the backward's formulas written here from primitive
//     ops (float64 to 1e-12, float32 to 1e-5), outputs NaN-poisoned before the run: with and without
//     a weight, upstream gradients of dx only, of dw only, of both;
//   - a create_graph backward through rms_norm and add_rms_norm is one rms_norm_backward node (one
//     kernel), and second derivatives through it equal those of the norm written from primitive ops;
//   - on a GPU (skipped without one): the CUDA kernel against the CPU kernel in float32, bfloat16 and
//     float64 with poisoned outputs, a rerun bit for bit, and second derivatives through the ops.
// (gradcheck of the op in float64 and gradgradcheck through its composite: the op table, test_ops.)
#include <doctest/doctest.h>

#include <bit>
#include <limits>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/rms_norm_grad.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"
#include "tests/profile_count.h"

using namespace ttt;
using testing::check_close;

namespace {

constexpr double kEps = 1e-6;

Tensor rnd(const Shape& s, Generator& g, DType dt, double mean = 0) {
  return randn(s, g, opts(DType::f32), mean, 1.0).to(dt);
}

// The inputs and upstream gradients of one case (Gx / Gw undefined when that output is unused).
struct Case {
  Tensor dy, x, w, Gx, Gw;
};

Case make_case(const Shape& s, bool weight, bool gx, bool gw, DType dt, uint64_t seed) {
  Generator g(seed);
  Case c;
  c.dy = rnd(s, g, dt);
  c.x = rnd(s, g, dt, 0.3);
  if (weight) c.w = rnd({s.back()}, g, dt, 1.0);
  if (gx) c.Gx = rnd(s, g, dt);
  if (gw && weight) c.Gw = rnd({s.back()}, g, dt);
  return c;
}

// gdy, gx, gw by autograd through the backward's formulas from primitive ops.
tensor_list reference(const Case& c) {
  Tensor dy = c.dy.detach().set_requires_grad(true), x = c.x.detach().set_requires_grad(true);
  Tensor w = c.w.defined() ? c.w.detach().set_requires_grad(true) : Tensor();
  const Tensor r = rsqrt(add_scalar(mean(square(x), {-1}, true), kEps));
  const Tensor xhat = mul(x, r), g = w.defined() ? mul(dy, w) : dy;
  const Tensor dx = mul(r, sub(g, mul(xhat, mean(mul(g, xhat), {-1}, true))));
  Tensor L = c.Gx.defined() ? sum(mul(c.Gx, dx)) : Tensor();
  if (c.Gw.defined()) {
    const Tensor dw = sum_to(mul(dy, xhat), w.shape());
    L = L.defined() ? add(L, sum(mul(c.Gw, dw))) : sum(mul(c.Gw, dw));
  }
  tensor_list in = {dy, x};
  if (w.defined()) in.push_back(w);
  tensor_list out = grad({L}, in, {}, std::nullopt, false, /*allow_unused=*/true);
  out.resize(3);
  return out;
}

// The fused call on c's device, every output NaN before the run.
tensor_list fused(const Case& c) {
  const Device dev = c.x.device();
  const auto nan = [&](const Shape& s) { return full(s, std::numeric_limits<double>::quiet_NaN(), opts(c.x.dtype(), dev)); };
  tensor_list out = {nan(c.x.shape()), nan(c.x.shape()), c.w.defined() ? nan(c.w.shape()) : Tensor()};
  RmsNormGradBackward k;
  k.cols = c.x.shape().back();
  k.rows = c.x.numel() / k.cols;
  k.dtype = c.x.dtype();
  k.eps = kEps;
  k.dy = c.dy.data_ptr();
  k.x = c.x.data_ptr();
  k.w = c.w.defined() ? c.w.data_ptr() : nullptr;
  k.gdx = c.Gx.defined() ? c.Gx.data_ptr() : nullptr;
  k.gdw = c.Gw.defined() ? c.Gw.data_ptr() : nullptr;
  k.gdy = out[0].data_ptr();
  k.gx = out[1].data_ptr();
  k.gw = out[2].defined() ? out[2].data_ptr() : nullptr;
  backend(dev).run(k);
  return out;
}

struct Variant {
  const char* what;
  bool weight, gx, gw;
};
const Variant kVariants[] = {
    {"weight, Gx and Gw", true, true, true},
    {"weight, Gx only", true, true, false},
    {"weight, Gw only", true, false, true},
    {"no weight, Gx", false, true, false},
};

Case on(const Case& c, Device d) {
  const auto to = [&](const Tensor& t) { return t.defined() ? t.to(d) : t; };
  return {to(c.dy), to(c.x), to(c.w), to(c.Gx), to(c.Gw)};
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to(cpu()).tolist<double>(), y = b.to(cpu()).tolist<double>();
  for (size_t i = 0; i < x.size(); ++i)
    if (std::bit_cast<uint64_t>(x[i]) != std::bit_cast<uint64_t>(y[i])) return false;
  return x.size() == y.size();
}

}  // namespace

TEST_CASE("rms_norm double backward, CPU kernel = autograd through the backward's formulas") {
  for (DType dt : {DType::f64, DType::f32}) {
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10} : testing::Tol{2e-5, 1e-4};
    for (const Shape& s : {Shape{5, 7}, Shape{3, 4, 16}, Shape{1, 1}}) {
      for (const Variant& v : kVariants) {
        const Case c = make_case(s, v.weight, v.gx, v.gw, dt, 11);
        const std::string what = std::string(dtype_name(dt)) + " " + s.str() + " " + v.what;
        const tensor_list got = fused(c), ref = reference(c);
        check_close(got[0], ref[0].defined() ? ref[0] : zeros_like(got[0]), tol, what + " gdy");
        check_close(got[1], ref[1].defined() ? ref[1] : zeros_like(got[1]), tol, what + " gx");
        if (v.weight) check_close(got[2], ref[2].defined() ? ref[2] : zeros_like(got[2]), tol, what + " gw");
      }
    }
  }
}

// Second derivatives of sum(u · rms_norm(x, w)) through x's gradient, by the ops and by the norm
// written from primitive ops; and how many backend calls the create_graph backward makes.
void check_second_order(Device dev, DType dt, testing::Tol tol, bool add_first) {
  Generator g(21);
  const Shape s{6, 24};
  const Tensor x0 = rnd(s, g, dt, 0.2).to(dev), res0 = rnd(s, g, dt).to(dev), w0 = rnd({24}, g, dt, 1.0).to(dev);
  const Tensor u = rnd(s, g, dt).to(dev), v = rnd(s, g, dt).to(dev);
  const auto second = [&](bool ops, std::vector<KernelStat>* calls) {
    Tensor x = x0.detach().set_requires_grad(true), res = res0.detach().set_requires_grad(true);
    Tensor w = w0.detach().set_requires_grad(true);
    Tensor n;
    if (ops) {
      n = add_first ? add_rms_norm(res, x, w, kEps)[1] : rms_norm(x, w, kEps);
    } else {
      const Tensor h = add_first ? add(res, x) : x;
      n = mul(mul(h, rsqrt(add_scalar(mean(square(h), {-1}, true), kEps))), w);
    }
    tensor_list gx;
    const auto first = [&] { gx = grad({sum(mul(u, n))}, {x}, {}, std::nullopt, /*create_graph=*/true); };
    if (calls) *calls = testing::profiled_calls(first);
    else first();
    return grad({sum(mul(v, gx[0]))}, {x, w, res}, {}, std::nullopt, false, /*allow_unused=*/true);
  };
  std::vector<KernelStat> calls;
  const tensor_list got = second(true, &calls), ref = second(false, nullptr);
  const std::string what = std::string(add_first ? "add_rms_norm" : "rms_norm") + " " + dtype_name(dt);
  check_close(got[0], ref[0], tol, what + ": d/dx");
  check_close(got[1], ref[1], tol, what + ": d/dw");
  if (add_first) check_close(got[2], ref[2], tol, what + ": d/dres");
  // Below float64 the taped backward runs the norm's backward as its one kernel, not the dozen
  // elementwise calls of the formulas (square, rsqrt, the means, ...): a few calls for sum's, mul's
  // (and add_rms_norm's add) backward besides.
  if (dt == DType::f64) return;
  int64_t total = 0, norm = 0, rsqrt_calls = 0;
  for (const KernelStat& k : calls) {
    total += k.calls;
    if (k.name == "rms_norm_bwd") norm += k.calls;
    if (k.name == "unary rsqrt" || k.name == "unary square") rsqrt_calls += k.calls;
  }
  INFO(what, ": ", total, " backend calls in the create_graph backward");
  CHECK(norm == 1);
  CHECK(rsqrt_calls == 0);
  CHECK(total <= 8);
}

TEST_CASE("create_graph through rms_norm / add_rms_norm: one rms_norm_backward kernel, second derivatives exact") {
  for (bool add_first : {false, true}) {
    check_second_order(cpu(), DType::f64, {1e-12, 1e-10}, add_first);
    check_second_order(cpu(), DType::f32, {2e-5, 1e-4}, add_first);
  }
}

TEST_CASE("cuda rms_norm double backward = the CPU kernel (poisoned outputs), reruns bit for bit") {
  TTT_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    // bf16 data: both compute in float (CPU: double) from the same bf16 values and round once.
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10}
                             : dt == DType::f32 ? testing::Tol{2e-5, 1e-4}
                                                : testing::Tol{2e-2, 2e-2};
    for (const Shape& s : {Shape{5, 7}, Shape{3, 4, 16}, Shape{70, 768}}) {
      for (const Variant& v : kVariants) {
        const Case c = make_case(s, v.weight, v.gx, v.gw, dt, 31);
        const std::string what = std::string("cuda ") + dtype_name(dt) + " " + s.str() + " " + v.what;
        const tensor_list want = fused(c), got = fused(on(c, cuda())), again = fused(on(c, cuda()));
        for (size_t i = 0; i < 3; ++i) {
          if (!want[i].defined()) continue;
          check_close(got[i].to(cpu()), want[i], tol, what + " output " + std::to_string(i));
          CHECK(bit_identical(got[i], again[i]));
        }
      }
    }
  }
}

TEST_CASE("cuda create_graph through rms_norm / add_rms_norm: second derivatives as the primitive ops'") {
  TTT_REQUIRE_GPU();
  for (bool add_first : {false, true}) check_second_order(cuda(), DType::f32, {1e-4, 1e-3}, add_first);
}
