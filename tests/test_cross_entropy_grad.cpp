// tests/test_cross_entropy_grad.cpp — cross-entropy's double backward (kernels/cross_entropy_grad.h)
// and the op that uses it, cross_entropy_backward (autograd/ops/cross_entropy_backward.cpp):
//   - the CPU kernel against autograd through w (softmax(x) − onehot(t)) written here from primitive
//     ops (float64 to 1e-12, float32 to 1e-5), outputs NaN-poisoned, with ignored rows;
//   - a create_graph backward through cross_entropy ("none", "mean") is one cross_entropy_backward
//     node (its one kernel: no softmax, no one-hot matrix), and second derivatives through it equal
//     those of log_softmax written from primitive ops;
//   - on a GPU (skipped without one): the CUDA kernel against the CPU kernel in float32, bfloat16 and
//     float64 with poisoned outputs, and second derivatives through the op.
// (gradcheck in float64 and gradgradcheck through its composite: the op table, test_ops.)
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <vector>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/cross_entropy_grad.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"
#include "tests/profile_count.h"

using namespace ttt;
using testing::check_close;

namespace {

constexpr int64_t kIgnore = 2;  // a real class id: some rows are ignored

struct Case {
  Tensor x, w, t, G;
};

Case make_case(int64_t rows, int64_t classes, DType dt, uint64_t seed) {
  Generator g(seed);
  Case c;
  c.x = mul_scalar(randn({rows, classes}, g, opts(DType::f32)), 2.0).to(dt);
  c.w = randn({rows}, g, opts(DType::f32)).to(dt);
  std::vector<int64_t> t(static_cast<size_t>(rows));
  const std::vector<double> u = rand({rows}, g, opts(DType::f64)).tolist<double>();
  for (int64_t r = 0; r < rows; ++r) t[r] = std::min<int64_t>(classes - 1, static_cast<int64_t>(u[r] * classes));
  if (rows > 1 && classes > kIgnore) t[1] = kIgnore;  // at least one ignored row
  c.t = from_vector_i64(t, {rows});
  c.G = randn({rows, classes}, g, opts(DType::f32)).to(dt);
  return c;
}

// The 0/1 mask of valid rows and the one-hot targets, built on the host.
tensor_list onehot(const Case& c) {
  const int64_t rows = c.x.shape()[0], classes = c.x.shape()[1];
  std::vector<double> oh(static_cast<size_t>(rows * classes), 0.0), valid(static_cast<size_t>(rows), 0.0);
  const std::vector<int64_t> t = c.t.to(cpu()).tolist<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] != kIgnore) oh[r * classes + t[r]] = 1.0, valid[r] = 1.0;
  return {from_vector(oh, {rows, classes}, opts(c.x.dtype())).to(c.x.device()),
          from_vector(valid, {rows}, opts(c.x.dtype())).to(c.x.device())};
}

// gx, gw by autograd through dx = w (softmax(x) − onehot) (ignored rows 0) from primitive ops.
tensor_list reference(const Case& c) {
  Tensor x = c.x.detach().set_requires_grad(true), w = c.w.detach().set_requires_grad(true);
  const tensor_list oh = onehot(c);
  const Tensor e = exp(sub(x, max(x, {-1}, true)));
  const Tensor p = div(e, sum(e, {-1}, true));
  const Tensor dx = mul(sub(p, oh[0]), unsqueeze(mul(w, oh[1]), 1));
  return grad({sum(mul(c.G, dx))}, {x, w});
}

tensor_list fused(const Case& c) {
  const auto nan = [&](const Shape& s) { return full(s, std::numeric_limits<double>::quiet_NaN(), opts(c.x.dtype(), c.x.device())); };
  tensor_list out = {nan(c.x.shape()), nan(c.w.shape())};
  CrossEntropyGradBackward k;
  k.rows = c.x.shape()[0];
  k.classes = c.x.shape()[1];
  k.dtype = c.x.dtype();
  k.ignore_index = kIgnore;
  k.x = c.x.data_ptr();
  k.w = c.w.data_ptr();
  k.targets = c.t.data<int64_t>();
  k.g = c.G.data_ptr();
  k.gx = out[0].data_ptr();
  k.gw = out[1].data_ptr();
  backend(c.x.device()).run(k);
  return out;
}

// Second derivatives of cross_entropy(x, t) through x's gradient, by the op and by -Σ onehot ·
// log_softmax from primitive ops; the calls of the op's create_graph backward.
void check_second_order(Device dev, DType dt, testing::Tol tol, const std::string& reduction) {
  const Case c0 = make_case(9, 13, dt, 17);
  const Case c{c0.x.to(dev), c0.w.to(dev), c0.t.to(dev), c0.G.to(dev)};
  const auto second = [&](bool op, std::vector<KernelStat>* calls) {
    Tensor x = c.x.detach().set_requires_grad(true);
    Tensor loss;
    if (op) {
      loss = cross_entropy(x, c.t, kIgnore, reduction);
    } else {
      const tensor_list oh = onehot(c);
      const Tensor z = sub(x, max(x, {-1}, true));
      const Tensor rows = mul(neg(sum(mul(sub(z, log(sum(exp(z), {-1}, true))), oh[0]), {-1})), oh[1]);
      loss = reduction == "none" ? rows : div(sum(rows), sum(oh[1]));
    }
    const Tensor L = reduction == "none" ? sum(mul(c.w, loss)) : loss;
    tensor_list g1;
    const auto first = [&] { g1 = grad({L}, {x}, {}, std::nullopt, /*create_graph=*/true); };
    if (calls) *calls = testing::profiled_calls(first);
    else first();
    return grad({sum(mul(c.G, g1[0]))}, {x});
  };
  std::vector<KernelStat> calls;
  const tensor_list got = second(true, &calls), ref = second(false, nullptr);
  check_close(got[0], ref[0], tol, std::string(dtype_name(dt)) + " " + reduction + ": d/dx");
  if (dt == DType::f64) return;  // float64 computes the backward's values by the formula
  int64_t kernel = 0, softmax = 0;
  for (const KernelStat& k : calls) {
    if (k.name == "cross_entropy_bwd") kernel += k.calls;
    if (k.name.find("softmax") != std::string::npos) softmax += k.calls;
  }
  CHECK(kernel == 1);
  CHECK(softmax == 0);
}

}  // namespace

TEST_CASE("cross_entropy double backward, CPU kernel = autograd through the backward's formula") {
  for (DType dt : {DType::f64, DType::f32}) {
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10} : testing::Tol{1e-5, 1e-4};
    for (const auto& [rows, classes] : {std::pair<int64_t, int64_t>{7, 5}, {12, 64}, {1, 1}}) {
      const Case c = make_case(rows, classes, dt, 5);
      const tensor_list got = fused(c), ref = reference(c);
      const std::string what = std::string(dtype_name(dt)) + " [" + std::to_string(rows) + ", " + std::to_string(classes) + "]";
      check_close(got[0], ref[0], tol, what + " gx");
      check_close(got[1], ref[1], tol, what + " gw");
    }
  }
}

TEST_CASE("create_graph through cross_entropy: one cross_entropy_backward kernel, second derivatives exact") {
  for (const char* red : {"none", "mean"}) {
    check_second_order(cpu(), DType::f64, {1e-12, 1e-10}, red);
    check_second_order(cpu(), DType::f32, {1e-5, 1e-4}, red);
  }
}

TEST_CASE("cuda cross_entropy double backward = the CPU kernel (poisoned outputs)") {
  TTT_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10}
                             : dt == DType::f32 ? testing::Tol{1e-5, 1e-4}
                                                : testing::Tol{2e-2, 2e-2};
    for (const auto& [rows, classes] : {std::pair<int64_t, int64_t>{7, 5}, {40, 8192}}) {
      const Case c = make_case(rows, classes, dt, 23);
      const Case g{c.x.to(cuda()), c.w.to(cuda()), c.t.to(cuda()), c.G.to(cuda())};
      const tensor_list want = fused(c), got = fused(g);
      const std::string what = std::string("cuda ") + dtype_name(dt) + " [" + std::to_string(rows) + ", " + std::to_string(classes) + "]";
      check_close(got[0].to(cpu()), want[0], tol, what + " gx");
      check_close(got[1].to(cpu()), want[1], tol, what + " gw");
    }
  }
}

TEST_CASE("cuda create_graph through cross_entropy: second derivatives as the primitive ops'") {
  TTT_REQUIRE_GPU();
  for (const char* red : {"none", "mean"}) check_second_order(cuda(), DType::f32, {1e-4, 1e-3}, red);
}
