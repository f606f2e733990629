// tests/test_swiglu_grad.cpp — SwiGLU's double backward (kernels/swiglu_grad.h) and the op that uses
// it, swiglu_backward (autograd/ops/swiglu_backward.cpp):
//   - the CPU kernel against autograd through the backward's formulas written here from primitive
//     ops (float64 to 1e-12, float32 to 1e-5), outputs NaN-poisoned: upstream gradients of da only,
//     of db only, of both;
//   - a create_graph backward through swiglu is one swiglu_backward node (its one kernel), and second
//     derivatives through it equal those of silu(a) ⊙ b written from primitive ops;
//   - on a GPU (skipped without one): the CUDA kernel against the CPU kernel in float32, bfloat16 and
//     float64, poisoned outputs, and second derivatives through the op.
// (gradcheck in float64 and gradgradcheck through its composite: the op table, test_ops.)
#include <doctest/doctest.h>

#include <limits>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/swiglu_grad.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"
#include "tests/profile_count.h"

using namespace ttt;
using testing::check_close;

namespace {

struct Case {
  Tensor dy, a, b, Ga, Gb;
};

Case make_case(const Shape& s, bool ga, bool gb, DType dt, uint64_t seed) {
  Generator g(seed);
  const auto rnd = [&](double scale) { return mul_scalar(randn(s, g, opts(DType::f32)), scale).to(dt); };
  Case c{rnd(1.0), rnd(2.0), rnd(1.0), Tensor(), Tensor()};
  if (ga) c.Ga = rnd(1.0);
  if (gb) c.Gb = rnd(1.0);
  return c;
}

// gdy, ga, gb by autograd through da = dy·b·silu'(a), db = dy·silu(a) from primitive ops.
tensor_list reference(const Case& c) {
  Tensor dy = c.dy.detach().set_requires_grad(true), a = c.a.detach().set_requires_grad(true),
         b = c.b.detach().set_requires_grad(true);
  const Tensor s = sigmoid(a);
  const Tensor silu_a = mul(a, s), d1 = mul(s, add_scalar(mul(a, rsub_scalar(s, 1.0)), 1.0));
  Tensor L;
  if (c.Ga.defined()) L = sum(mul(c.Ga, mul(mul(dy, b), d1)));
  if (c.Gb.defined()) {
    const Tensor l = sum(mul(c.Gb, mul(dy, silu_a)));
    L = L.defined() ? add(L, l) : l;
  }
  return grad({L}, {dy, a, b}, {}, std::nullopt, false, /*allow_unused=*/true);
}

tensor_list fused(const Case& c) {
  const auto nan = [&] { return full(c.a.shape(), std::numeric_limits<double>::quiet_NaN(), opts(c.a.dtype(), c.a.device())); };
  tensor_list out = {nan(), nan(), nan()};
  SwigluGradBackward k;
  k.n = c.a.numel();
  k.dtype = c.a.dtype();
  k.dy = c.dy.data_ptr();
  k.a = c.a.data_ptr();
  k.b = c.b.data_ptr();
  k.ga_in = c.Ga.defined() ? c.Ga.data_ptr() : nullptr;
  k.gb_in = c.Gb.defined() ? c.Gb.data_ptr() : nullptr;
  k.gdy = out[0].data_ptr();
  k.ga = out[1].data_ptr();
  k.gb = out[2].data_ptr();
  backend(c.a.device()).run(k);
  return out;
}

struct Variant {
  const char* what;
  bool ga, gb;
};
const Variant kVariants[] = {{"Ga and Gb", true, true}, {"Ga only", true, false}, {"Gb only", false, true}};

Case on(const Case& c, Device d) {
  const auto to = [&](const Tensor& t) { return t.defined() ? t.to(d) : t; };
  return {to(c.dy), to(c.a), to(c.b), to(c.Ga), to(c.Gb)};
}

// Second derivatives of sum(u · swiglu(a, b)) through a's and b's gradients, by the op and by
// silu(a) ⊙ b from primitive ops; the backend calls of the op's create_graph backward.
void check_second_order(Device dev, DType dt, testing::Tol tol) {
  Generator g(5);
  const Shape s{7, 9};
  const auto rnd = [&] { return randn(s, g, opts(DType::f32)).to(dt).to(dev); };
  const Tensor a0 = rnd(), b0 = rnd(), u = rnd(), v = rnd(), w = rnd();
  const auto second = [&](bool op, std::vector<KernelStat>* calls) {
    Tensor a = a0.detach().set_requires_grad(true), b = b0.detach().set_requires_grad(true);
    const Tensor y = op ? swiglu(a, b) : mul(mul(a, sigmoid(a)), b);
    tensor_list g1;
    const auto first = [&] { g1 = grad({sum(mul(u, y))}, {a, b}, {}, std::nullopt, /*create_graph=*/true); };
    if (calls) *calls = testing::profiled_calls(first);
    else first();
    return grad({add(sum(mul(v, g1[0])), sum(mul(w, g1[1])))}, {a, b});
  };
  std::vector<KernelStat> calls;
  const tensor_list got = second(true, &calls), ref = second(false, nullptr);
  check_close(got[0], ref[0], tol, std::string(dtype_name(dt)) + " d/da");
  check_close(got[1], ref[1], tol, std::string(dtype_name(dt)) + " d/db");
  int64_t kernel = 0, silu_calls = 0;
  for (const KernelStat& k : calls) {
    if (k.name == "swiglu_bwd") kernel += k.calls;
    if (k.name.find("silu") != std::string::npos) silu_calls += k.calls;
  }
  CHECK(kernel == 1);
  CHECK(silu_calls == 0);  // not the formulas' silu and silu_grad
}

}  // namespace

TEST_CASE("swiglu double backward, CPU kernel = autograd through the backward's formulas") {
  for (DType dt : {DType::f64, DType::f32}) {
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10} : testing::Tol{1e-5, 1e-4};
    for (const Shape& s : {Shape{5, 7}, Shape{2, 3, 16}}) {
      for (const Variant& v : kVariants) {
        const Case c = make_case(s, v.ga, v.gb, dt, 3);
        const tensor_list got = fused(c), ref = reference(c);
        const std::string what = std::string(dtype_name(dt)) + " " + s.str() + " " + v.what;
        for (size_t i = 0; i < 3; ++i)
          check_close(got[i], ref[i].defined() ? ref[i] : zeros_like(got[i]), tol, what + " output " + std::to_string(i));
      }
    }
  }
}

TEST_CASE("create_graph through swiglu: one swiglu_backward kernel, second derivatives exact") {
  check_second_order(cpu(), DType::f64, {1e-12, 1e-10});
  check_second_order(cpu(), DType::f32, {1e-5, 1e-4});
}

TEST_CASE("cuda swiglu double backward = the CPU kernel (poisoned outputs)") {
  TTT_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10}
                             : dt == DType::f32 ? testing::Tol{1e-5, 1e-4}
                                                : testing::Tol{1e-2, 1e-2};
    for (const Variant& v : kVariants) {
      const Case c = make_case({33, 257}, v.ga, v.gb, dt, 9);
      const tensor_list want = fused(c), got = fused(on(c, cuda()));
      for (size_t i = 0; i < 3; ++i)
        check_close(got[i].to(cpu()), want[i], tol, std::string("cuda ") + dtype_name(dt) + " " + v.what + " output " + std::to_string(i));
    }
  }
}

TEST_CASE("cuda create_graph through swiglu: second derivatives as the primitive ops'") {
  TTT_REQUIRE_GPU();
  check_second_order(cuda(), DType::f32, {1e-4, 1e-3});
}
