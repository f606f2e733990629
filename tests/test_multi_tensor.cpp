// tests/test_multi_tensor.cpp — the multi-tensor optimizer kernels (kernels/multi_tensor.h).
//
// AdamWMulti against one Backend::adamw call per tensor, bit for bit: tensors of odd sizes (1, 3,
// 1000003 elements, ...) at offsets that break 16-byte alignment, f32, bf16 and missing (zero)
// gradients, mixed in one call, per-tensor weight decay; against the AdamW formula in double;
// lists longer than one launch's table. SumSqMulti against one reduce(sum_sq) per tensor, bit for
// bit, and against a hand-computed sum. On the GPU (skipped without one): the CUDA kernels against
// the CUDA per-tensor kernels and against the CPU reference (AdamW bit for bit: both round every
// double operation alike). The tensors live in buffers whose gaps are NaN, so a write out of range
// changes a NaN, and a tensor a kernel skips keeps its input values; both fail the comparisons.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "kernels/multi_tensor.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

// Where each tensor sits in the shared buffers: `misalign` extra elements before it (0 keeps
// 16-byte alignment for f32, anything else breaks it), at least 5 NaN elements around it.
struct Layout {
  std::vector<int64_t> sizes, offsets;
  int64_t total = 0;
};
Layout make_layout(const std::vector<int64_t>& sizes, const std::vector<int>& misalign) {
  Layout L;
  L.sizes = sizes;
  int64_t at = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    at = (at + 8 + 3) / 4 * 4 + misalign[i % misalign.size()];  // >= 8 NaN, then the misalignment
    L.offsets.push_back(at);
    at += sizes[i];
  }
  L.total = at + 8;
  return L;
}

enum class Grad { f32, bf16, none };

// One buffer per role; tensor i's gradient is in g32 or g16 (by its kind) at its offset.
struct State {
  Tensor p, m, v, g32, g16;
};

// NaN everywhere, random values in the tensors' ranges (moments: m small, v positive).
Tensor filled(const Layout& L, DType dt, Generator& gen, double lo, double hi) {
  Tensor t = full({L.total}, NAN, opts(dt));
  for (size_t i = 0; i < L.sizes.size(); ++i)
    t.narrow(0, L.offsets[i], L.sizes[i]).copy_(rand({L.sizes[i]}, gen, opts(DType::f64), lo, hi));
  return t;
}
State make_state(const Layout& L, uint64_t seed) {
  Generator gen(seed);
  State s;
  s.p = filled(L, DType::f32, gen, -1, 1);
  s.m = filled(L, DType::f32, gen, -0.1, 0.1);
  s.v = filled(L, DType::f32, gen, 0.001, 0.1);
  s.g32 = filled(L, DType::f32, gen, -2, 2);
  s.g16 = filled(L, DType::bf16, gen, -2, 2);
  return s;
}
State on(const State& s, Device d) { return {s.p.to(d).clone(), s.m.to(d).clone(), s.v.to(d).clone(), s.g32.to(d).clone(), s.g16.to(d).clone()}; }

struct Hyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, bc1 = 0.19, bc2 = 0.0975, scale = 0.7;
};
double decay_of(size_t i) { return i % 2 ? 0.0 : 0.1; }

std::vector<AdamWTensor> adamw_list(const Layout& L, const State& s, const std::vector<Grad>& kinds) {
  std::vector<AdamWTensor> list;
  for (size_t i = 0; i < L.sizes.size(); ++i) {
    const int64_t o = L.offsets[i];
    AdamWTensor t;
    t.param = s.p.data<float>() + o;
    t.m = s.m.data<float>() + o;
    t.v = s.v.data<float>() + o;
    t.n = L.sizes[i];
    t.weight_decay = decay_of(i);
    const Grad k = kinds[i % kinds.size()];
    t.grad_dtype = k == Grad::bf16 ? DType::bf16 : DType::f32;
    t.grad = k == Grad::none ? nullptr
             : k == Grad::bf16 ? static_cast<const void*>(s.g16.data<bf16>() + o)
                               : static_cast<const void*>(s.g32.data<float>() + o);
    list.push_back(t);
  }
  return list;
}

void run_multi(const Layout& L, const State& s, const std::vector<Grad>& kinds, const Hyper& h) {
  std::vector<AdamWTensor> list = adamw_list(L, s, kinds);
  AdamWMulti c;
  c.tensors = list.data();
  c.count = list.size();
  c.lr = h.lr, c.beta1 = h.beta1, c.beta2 = h.beta2, c.eps = h.eps;
  c.bias_correction1 = h.bc1, c.bias_correction2 = h.bc2, c.grad_scale = h.scale;
  backend(s.p.device()).run(c);
}

// The path the optimizer took before AdamWMulti: one adamw per tensor, zeros for a missing grad.
void run_per_tensor(const Layout& L, const State& s, const std::vector<Grad>& kinds, const Hyper& h) {
  const Device dev = s.p.device();
  for (const AdamWTensor& t : adamw_list(L, s, kinds)) {
    Tensor zero = zeros({std::max<int64_t>(t.n, 1)}, opts(DType::f32, dev));
    AdamWArgs a;
    a.param = t.param, a.m = t.m, a.v = t.v, a.n = t.n;
    a.grad = t.grad ? t.grad : zero.data_ptr();
    a.grad_dtype = t.grad_dtype;
    a.lr = h.lr, a.beta1 = h.beta1, a.beta2 = h.beta2, a.eps = h.eps, a.weight_decay = t.weight_decay;
    a.bias_correction1 = h.bc1, a.bias_correction2 = h.bc2, a.grad_scale = h.scale;
    backend(dev).adamw(a);
  }
}

// Bitwise equality of two buffers (NaN payloads included); names the first differing element.
void expect_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  const Tensor x = a.to(cpu()).contiguous(), y = b.to(cpu()).contiguous();
  REQUIRE(x.numel() == y.numel());
  const size_t es = dtype_size(x.dtype());
  const char* px = static_cast<const char*>(x.data_ptr());
  const char* py = static_cast<const char*>(y.data_ptr());
  for (int64_t i = 0; i < x.numel(); ++i)
    if (std::memcmp(px + i * es, py + i * es, es) != 0) {
      FAIL_CHECK(what << ": element " << i << " differs: " << x.narrow(0, i, 1).item() << " vs "
                      << y.narrow(0, i, 1).item());
      return;
    }
  CHECK(true);
}

void expect_same_state(const State& a, const State& b, const std::string& what) {
  expect_same_bits(a.p, b.p, what + " param");
  expect_same_bits(a.m, b.m, what + " m");
  expect_same_bits(a.v, b.v, what + " v");
}

// Every element outside the tensors is still NaN.
void expect_gaps_nan(const Layout& L, const Tensor& buf, const std::string& what) {
  const std::vector<float> x = buf.to(cpu()).tolist<float>();
  std::vector<bool> inside(x.size(), false);
  for (size_t i = 0; i < L.sizes.size(); ++i)
    for (int64_t j = 0; j < L.sizes[i]; ++j) inside[L.offsets[i] + j] = true;
  int64_t bad = 0;
  for (size_t j = 0; j < x.size(); ++j) bad += !inside[j] && !std::isnan(x[j]);
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " elements written outside the tensors");
}

// Tensor i (updated) against the AdamW formula in double from its inputs (before).
void expect_formula(const Layout& L, const State& before, const State& after, size_t i, Grad kind, const Hyper& h) {
  const int64_t o = L.offsets[i], n = std::min<int64_t>(L.sizes[i], 2000);
  auto get = [&](const Tensor& t) { return t.narrow(0, o, n).tolist<double>(); };
  const auto p0 = get(before.p), m0 = get(before.m), v0 = get(before.v), p1 = get(after.p), m1 = get(after.m),
             v1 = get(after.v);
  const auto g = kind == Grad::bf16 ? get(before.g16) : get(before.g32);
  int64_t bad = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double gj = kind == Grad::none ? 0.0 : g[j] * h.scale;
    const double m = h.beta1 * m0[j] + (1 - h.beta1) * gj, v = h.beta2 * v0[j] + (1 - h.beta2) * gj * gj;
    const double p = p0[j] - h.lr * (m / h.bc1 / (std::sqrt(v / h.bc2) + h.eps) + decay_of(i) * p0[j]);
    bad += std::fabs(m1[j] - m) > 1e-7 * std::fabs(m) || std::fabs(v1[j] - v) > 1e-7 * v ||
           std::fabs(p1[j] - p) > 1e-7 * std::fabs(p) + 1e-12;
  }
  CHECK_MESSAGE(bad == 0, "tensor " << i << ": " << bad << " elements off the AdamW formula");
  CHECK(p1 != p0);  // the step did something
}

const std::vector<int64_t> kOddSizes = {1, 3, 1000003, 4, 33, 70001, 2};
const std::vector<int> kMisalign = {1, 2, 3, 0, 1, 3, 0};

// Per-tensor vs multi on `dev` for one mix of gradient kinds (checks the formula on the way).
void compare_paths(Device dev, const std::vector<Grad>& kinds, const std::string& what) {
  const Layout L = make_layout(kOddSizes, kMisalign);
  const Hyper h;
  const State init = make_state(L, 7);
  State a = on(init, dev), b = on(init, dev);
  run_per_tensor(L, a, kinds, h);
  run_multi(L, b, kinds, h);
  expect_same_state(a, b, what);
  expect_gaps_nan(L, b.p, what + " param");
  expect_gaps_nan(L, b.m, what + " m");
  expect_gaps_nan(L, b.v, what + " v");
  for (size_t i = 0; i < L.sizes.size(); ++i) expect_formula(L, init, on(b, cpu()), i, kinds[i % kinds.size()], h);
}

// Sizes for the sums of squares: one thread (<= 16), each lane count of reduce()'s row mode
// (32..512), split and unsplit, and long tensors cut into hundreds of splits.
const std::vector<int64_t> kSumSizes = {1, 3, 16, 17, 100, 129, 1000, 2049, 4097, 65537, 1000003, 3000001};

// One reduce(sum_sq) per tensor as global_grad_norm's per-tensor path runs it (bf16 through its
// float32 copy) vs one SumSqMulti; `out` poisoned with NaN first.
void compare_sum_sq(Device dev, DType dt, const std::vector<int64_t>& sizes, const std::string& what) {
  const Layout L = make_layout(sizes, kMisalign);
  Generator gen(11);
  const Tensor buf = filled(L, dt, gen, -3, 3).to(dev);
  Tensor ref = full({static_cast<int64_t>(sizes.size())}, NAN, opts(DType::f32, dev));
  Tensor got = full({static_cast<int64_t>(sizes.size())}, NAN, opts(DType::f32, dev));
  std::vector<SumSqTensor> list;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Tensor x = buf.narrow(0, L.offsets[i], sizes[i]);
    const Tensor xf = x.to(DType::f32);
    View o = ref.narrow(0, static_cast<int64_t>(i), 1).view();
    backend(dev).reduce(ReduceOp::sum_sq, o, xf.view());
    list.push_back({x.data_ptr(), dt, sizes[i], got.data<float>() + i});
  }
  SumSqMulti c;
  c.tensors = list.data();
  c.count = list.size();
  backend(dev).run(c);
  expect_same_bits(got, ref, what);
  CHECK(!std::isnan(got.to(cpu()).tolist<double>().back()));
}

}  // namespace

TEST_CASE("adamw_multi equals one adamw per tensor bit for bit on the CPU, and the AdamW formula") {
  compare_paths(cpu(), {Grad::f32}, "cpu f32 grads");
  compare_paths(cpu(), {Grad::bf16}, "cpu bf16 grads");
  compare_paths(cpu(), {Grad::bf16, Grad::none, Grad::f32}, "cpu mixed and missing grads");
}

TEST_CASE("adamw_multi over more tensors than one launch's table (CPU and CUDA)") {
  std::vector<int64_t> sizes;
  for (int i = 0; i < 700; ++i) sizes.push_back(1 + (i * 37) % 301);
  const Layout L = make_layout(sizes, {0, 1, 2, 3});
  const std::vector<Grad> kinds = {Grad::f32, Grad::bf16, Grad::none};
  const Hyper h;
  const State init = make_state(L, 3);
  std::vector<Device> devs = {cpu()};
  if (cuda_available()) devs.push_back(cuda());
  for (Device dev : devs) {
    State a = on(init, dev), b = on(init, dev);
    run_per_tensor(L, a, kinds, h);
    run_multi(L, b, kinds, h);
    expect_same_state(a, b, "700 tensors on " + dev.str());
    expect_gaps_nan(L, b.p, "700 tensors on " + dev.str());
    expect_formula(L, init, on(b, cpu()), 699, kinds[699 % 3], h);
  }
}

TEST_CASE("adamw_multi: empty list and empty tensors do nothing; other gradient dtypes are refused") {
  AdamWMulti none;
  backend(cpu()).run(none);
  Tensor p = from_vector({1.0}, {1}, opts(DType::f32)), g = from_vector({1.0}, {1}, opts(DType::f64));
  Tensor m = zeros({1}), v = zeros({1});
  AdamWTensor t{p.data<float>(), g.data_ptr(), DType::f64, m.data<float>(), v.data<float>(), 1, 0.0};
  AdamWMulti c;
  c.tensors = &t;
  c.count = 1;
  CHECK_THROWS_WITH_AS(backend(cpu()).run(c), doctest::Contains("adamw_multi: tensors must be float32 or bfloat16, got float64"),
                       std::invalid_argument);
  t.grad_dtype = DType::f32;
  t.n = 0;
  backend(cpu()).run(c);
  CHECK(p.item() == 1.0);
}

TEST_CASE("sum_sq_multi equals one reduce(sum_sq) per tensor bit for bit on the CPU, and a hand sum") {
  compare_sum_sq(cpu(), DType::f32, kSumSizes, "cpu f32");
  compare_sum_sq(cpu(), DType::bf16, kSumSizes, "cpu bf16");
  // 1^2 + ... + n^2 = n(n+1)(2n+1)/6, exact in double for n = 1000; empty tensors sum to 0.
  std::vector<double> ramp(1000);
  for (int i = 0; i < 1000; ++i) ramp[i] = i + 1;
  const Tensor x = from_vector(ramp, {1000}, opts(DType::f32));
  Tensor out = full({2}, NAN, opts(DType::f32));
  SumSqTensor list[2] = {{x.data_ptr(), DType::f32, 1000, out.data<float>()}, {x.data_ptr(), DType::f32, 0, out.data<float>() + 1}};
  SumSqMulti c;
  c.tensors = list;
  c.count = 2;
  backend(cpu()).run(c);
  CHECK(out.tolist<double>() == std::vector<double>{static_cast<float>(1000.0 * 1001 * 2001 / 6), 0.0});
}

TEST_CASE("cuda adamw_multi equals the CUDA per-tensor kernel and the CPU reference bit for bit") {
  TTT_REQUIRE_GPU();
  for (const auto& [kinds, what] : std::vector<std::pair<std::vector<Grad>, std::string>>{
           {{Grad::f32}, "f32 grads"}, {{Grad::bf16}, "bf16 grads"}, {{Grad::f32, Grad::none, Grad::bf16}, "mixed grads"}}) {
    compare_paths(cuda(), kinds, "cuda " + what);
    const Layout L = make_layout(kOddSizes, kMisalign);
    const State init = make_state(L, 7);
    State c = on(init, cpu()), g = on(init, cuda());
    run_multi(L, c, kinds, Hyper{});
    run_multi(L, g, kinds, Hyper{});
    expect_same_state(g, c, "cuda vs cpu " + what);
  }
}

TEST_CASE("cuda sum_sq_multi equals the CUDA reduce(sum_sq) per tensor bit for bit, and the CPU closely") {
  TTT_REQUIRE_GPU();
  compare_sum_sq(cuda(), DType::f32, kSumSizes, "cuda f32");
  compare_sum_sq(cuda(), DType::bf16, kSumSizes, "cuda bf16");
  std::vector<int64_t> many;
  for (int i = 0; i < 600; ++i) many.push_back(1 + (i * 53) % 5000);
  compare_sum_sq(cuda(), DType::f32, many, "cuda 600 tensors");
  // Against the CPU's double accumulation: float32 rounding only.
  const Layout L = make_layout(kSumSizes, kMisalign);
  Generator gen(5);
  const Tensor buf = filled(L, DType::f32, gen, -3, 3);
  Pair out{full({static_cast<int64_t>(kSumSizes.size())}, NAN, opts(DType::f32)),
           full({static_cast<int64_t>(kSumSizes.size())}, NAN, opts(DType::f32, cuda()))};
  const Tensor gbuf = buf.to(cuda());
  for (int dev = 0; dev < 2; ++dev) {
    std::vector<SumSqTensor> list;
    const Tensor& b = dev ? gbuf : buf;
    const Tensor& o = dev ? out.g : out.c;
    for (size_t i = 0; i < kSumSizes.size(); ++i)
      list.push_back({b.data<float>() + L.offsets[i], DType::f32, kSumSizes[i], o.data<float>() + i});
    SumSqMulti c;
    c.tensors = list.data();
    c.count = list.size();
    backend(dev ? cuda() : cpu()).run(c);
  }
  expect_close(out, {0, 1e-5}, "sum_sq_multi cuda vs cpu");
}
