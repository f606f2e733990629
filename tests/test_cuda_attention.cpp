// tests/test_cuda_attention.cpp — the CUDA fused attention kernels (kernels/cuda/attention*.cu)
// against the CPU reference (kernels/cpu/attention.cpp) on the same random inputs:
//   forward (out, lse) and backward (dq, dk, dv) for B = 2, H = 3, T in {1, 17, 128, 257},
//   head_dim 64 and 128 (plus 96, and 40 / 33 that the kernels pad), bf16 and float32, causal,
//   sliding window, decode-shaped Tq < Tk and non-causal. Outputs start as NaN, so an element a
//   kernel forgets to write fails. Then the autograd op on the GPU against the op on the CPU
//   (fused path, composite fallback for shapes the kernels refuse, autocast). Strided layouts: every
//   operand a slot of a NaN [B, T, 3, H, D] buffer (tests/attention_layouts.h), with and without
//   deterministic mode, against the CPU reference on contiguous operands.
// Skips itself without a GPU. Run: ./build/tests/test_cuda_attention
#include <algorithm>
#include <cmath>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "tests/attention_layouts.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

struct Case {
  int64_t Tq, Tk, D;
  bool causal;
  int64_t window;
  DType dt;
  std::string str() const {
    return std::string(dtype_name(dt)) + " Tq " + std::to_string(Tq) + " Tk " + std::to_string(Tk) + " D " +
           std::to_string(D) + (causal ? " causal" : " full") +
           (window ? " window " + std::to_string(window) : std::string());
  }
};

// Results of one fwd + bwd through a backend.
struct Result {
  Tensor out, lse, dq, dk, dv;
};

Result run(Backend& be, Device dev, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& do0,
           const AttentionShape& s, DType dt) {
  Tensor q = q0.to(dev), k = k0.to(dev), v = v0.to(dev), dout = do0.to(dev);
  Result r;
  r.out = full(q.shape(), NAN, opts(dt, dev));
  r.lse = full({s.batch, s.heads, s.q_len}, NAN, opts(DType::f32, dev));
  r.dq = full(q.shape(), NAN, opts(dt, dev));
  r.dk = full(k.shape(), NAN, opts(dt, dev));
  r.dv = full(k.shape(), NAN, opts(dt, dev));
  be.attention_fwd(r.out.data_ptr(), r.lse.data<float>(), q.data_ptr(), k.data_ptr(), v.data_ptr(), s, dt);
  be.attention_bwd(r.dq.data_ptr(), r.dk.data_ptr(), r.dv.data_ptr(), dout.data_ptr(), q.data_ptr(), k.data_ptr(),
                   v.data_ptr(), r.out.data_ptr(), r.lse.data<float>(), s, dt);
  be.synchronize();
  return r;
}

double rms(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s / std::max<size_t>(x.size(), 1));
}

// Elementwise |gpu − cpu| <= atol·scale + rtol·|cpu|, with scale = max(rms(cpu), floor) (atol
// relative to the tensor's scale: gradients range over orders of magnitude between shapes), and
// ‖gpu − cpu‖ / ‖cpu‖ <= rel_norm. `floor` is the scale of a sibling tensor for references that are
// exactly zero: with a single visible key (Tk = 1, window 1) dQ and dK vanish in exact arithmetic,
// while the kernel's D_i = rowsum(dO ∘ O) and dP = dO·V cancel only to rounding.
void compare(const Tensor& gpu, const Tensor& ref, double atol, double rtol, double rel_norm, const std::string& what,
             double floor = 1e-30) {
  const std::vector<double> a = gpu.to(cpu()).to(DType::f64).tolist<double>();
  const std::vector<double> r = ref.to(DType::f64).tolist<double>();
  const double scale = std::max(rms(r), floor);
  expect_close(gpu.to(cpu()).to(DType::f64), ref.to(DType::f64), {atol * scale, rtol}, what);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - r[i]) * (a[i] - r[i]);
    den += r[i] * r[i];
  }
  if (den == 0) return;  // all-zero reference: the elementwise check (atol 0) decided
  INFO(what, ": relative error norm ", std::sqrt(num / den));
  CHECK(std::sqrt(num / den) <= rel_norm);
}

// The CUDA kernels against the CPU reference on the same inputs; strided: every GPU operand a slot of a
// larger buffer (tests/attention_layouts.h), the reference's contiguous.
void check_case(const Case& c, Generator& gen, bool strided = false) {
  const int64_t B = 2, H = 3;
  AttentionShape s{B, H, c.Tq, c.Tk, c.D, c.causal, c.window, 1.0 / std::sqrt(static_cast<double>(c.D))};
  // q twice as large as k: scores of std ~2, so softmax rows are far from uniform.
  Tensor q = mul_scalar(randn({B, H, c.Tq, c.D}, gen, opts(DType::f64)), 2.0).to(c.dt);
  Tensor k = randn({B, H, c.Tk, c.D}, gen, opts(DType::f64)).to(c.dt);
  Tensor v = randn({B, H, c.Tk, c.D}, gen, opts(DType::f64)).to(c.dt);
  Tensor dout = randn({B, H, c.Tq, c.D}, gen, opts(DType::f64)).to(c.dt);
  Result ref = run(cpu_be(), cpu(), q, k, v, dout, s, c.dt);
  Result got;
  if (strided) {
    const testing::LayoutResult r = testing::run_strided(gpu_be(), cuda(), q, k, v, dout, s, c.dt);
    got = {r.out, r.lse, r.dq, r.dk, r.dv};
  } else {
    got = run(gpu_be(), cuda(), q, k, v, dout, s, c.dt);
  }
  const bool bf = c.dt == DType::bf16;
  // bf16: P is rounded to bf16 before P·V on the tensor cores (the reference rounds only the
  // result), dS likewise before dK/dQ, so single elements can be off by a few percent of the
  // tensor's rms (seen on an H100: 5% once in 49152) while the error norm stays near 5e-3;
  // float32: exp and dot-product rounding only.
  const double atol = bf ? 6e-2 : 1e-4, rtol = bf ? 3e-2 : 1e-4, rel = bf ? 1.5e-2 : 2e-5;
  const std::string tag = (strided ? "strided " : "") + c.str();
  compare(got.out, ref.out, atol, rtol, rel, tag + " out");
  expect_close(got.lse.to(cpu()), ref.lse, {bf ? 2e-3 : 1e-4, 1e-4}, tag + " lse");
  const double grad_scale = rms(ref.dv.to(DType::f64).tolist<double>());
  compare(got.dq, ref.dq, atol, rtol, rel, tag + " dq", grad_scale);
  compare(got.dk, ref.dk, atol, rtol, rel, tag + " dk", grad_scale);
  compare(got.dv, ref.dv, atol, rtol, rel, tag + " dv");
}

}  // namespace

TEST_CASE("cuda attention kernels = CPU reference: forward and backward") {
  TTT_REQUIRE_GPU();
  Generator gen(31);
  for (DType dt : {DType::bf16, DType::f32})
    for (int64_t D : {64, 128})
      for (int64_t T : {1, 17, 128, 257}) {
        check_case({T, T, D, true, 0, dt}, gen);                          // causal
        check_case({T, T, D, true, 48, dt}, gen);                         // window (crosses tiles)
        check_case({std::max<int64_t>(1, T / 4), T, D, true, 0, dt}, gen);  // decode: Tq < Tk
        check_case({T, T, D, false, 0, dt}, gen);                         // full
      }
}

TEST_CASE("cuda attention kernels: padded head dims, narrow windows, keys nobody sees") {
  TTT_REQUIRE_GPU();
  Generator gen(32);
  for (DType dt : {DType::bf16, DType::f32}) {
    check_case({130, 130, 96, true, 0, dt}, gen);   // the 760M config's head_dim
    check_case({70, 70, 40, true, 7, dt}, gen);     // head_dim padded to 64 inside the kernel
    check_case({5, 300, 64, true, 16, dt}, gen);    // decode with a window: keys < 280 get dk = dv = 0
    check_case({200, 200, 128, true, 1, dt}, gen);  // window 1: every row sees only itself
  }
  check_case({33, 40, 33, true, 0, DType::f32}, gen);  // float32 takes any head_dim <= 128
}

TEST_CASE("cuda attention kernels read and write strided layouts in place (atomic and deterministic dQ)") {
  TTT_REQUIRE_GPU();
  Generator gen(33);
  for (bool det : {false, true}) {
    set_deterministic(det);
    for (DType dt : {DType::bf16, DType::f32}) {
      check_case({257, 257, 64, true, 0, dt}, gen, true);
      check_case({130, 130, 128, true, 48, dt}, gen, true);
      check_case({9, 200, 64, true, 0, dt}, gen, true);
      check_case({70, 70, 40, false, 0, dt}, gen, true);
    }
  }
  set_deterministic(false);
}

TEST_CASE("cuda attention: support matrix and refusals") {
  TTT_REQUIRE_GPU();
  CHECK(gpu_be().attention_supported(64, DType::bf16));
  CHECK(gpu_be().attention_supported(96, DType::bf16));
  CHECK(gpu_be().attention_supported(128, DType::f32));
  CHECK_FALSE(gpu_be().attention_supported(100, DType::bf16));  // rows not 16-byte multiples
  CHECK_FALSE(gpu_be().attention_supported(256, DType::bf16));
  CHECK_FALSE(gpu_be().attention_supported(64, DType::f64));
  AttentionShape s{1, 1, 4, 4, 256, true, 0, 1.0};
  Tensor x = zeros({1, 1, 4, 256}, opts(DType::bf16, cuda())), lse = zeros({1, 1, 4}, opts(DType::f32, cuda()));
  CHECK_THROWS_AS(gpu_be().attention_fwd(x.data_ptr(), lse.data<float>(), x.data_ptr(), x.data_ptr(), x.data_ptr(), s,
                                         DType::bf16),
                  std::invalid_argument);
}

TEST_CASE("cuda scaled_dot_product_attention op = CPU op (fused, fallback, autocast)") {
  TTT_REQUIRE_GPU();
  Generator gen(33);
  struct OpCase {
    int64_t Tq, Tk, D;
    int64_t window;
    DType dt;
    bool autocast;
  };
  const OpCase cases[] = {
      {64, 64, 64, 0, DType::bf16, false},  // fused bf16
      {9, 40, 64, 8, DType::f32, false},    // fused float32, decode with window
      {24, 24, 100, 0, DType::bf16, false},  // head_dim the kernels refuse: composite on the GPU
      {16, 16, 32, 0, DType::f64, false},   // float64: composite on the GPU
      {48, 48, 64, 0, DType::f32, true},    // autocast: bf16 kernels, float32 in and out
  };
  for (const OpCase& c : cases) {
    const std::string tag = std::string(dtype_name(c.dt)) + " D " + std::to_string(c.D) +
                            (c.autocast ? " autocast" : "") + " Tq " + std::to_string(c.Tq);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
    Tensor q = randn({2, 2, c.Tq, c.D}, gen, opts(c.dt)), k = randn({2, 2, c.Tk, c.D}, gen, opts(c.dt));
    Tensor v = randn({2, 2, c.Tk, c.D}, gen, opts(c.dt)), w = randn({2, 2, c.Tq, c.D}, gen, opts(c.dt));
    auto grads = [&](Device dev) {
      tensor_list xs = {q.to(dev).set_requires_grad(true), k.to(dev).set_requires_grad(true),
                        v.to(dev).set_requires_grad(true)};
      Tensor y;
      {
        AutocastGuard ac(DType::bf16, c.autocast);
        y = scaled_dot_product_attention(xs[0], xs[1], xs[2], true, c.window, scale);
      }
      tensor_list g = grad({y}, xs, {w.to(dev)});
      g.insert(g.begin(), y.detach());
      for (auto& t : g) t = t.to(cpu());
      return g;
    };
    tensor_list a = grads(cuda()), r = grads(cpu());
    const bool low = c.dt == DType::bf16 || c.autocast;
    const double tol = c.dt == DType::f64 ? 1e-10 : low ? 3e-2 : 1e-4;
    const char* names[] = {"out", "dq", "dk", "dv"};
    for (int i = 0; i < 4; ++i) {
      CHECK(a[i].dtype() == c.dt);
      compare(a[i], r[i], tol, tol, c.dt == DType::f64 ? 1e-10 : low ? 1.5e-2 : 2e-5, tag + " " + names[i]);
    }
  }
}
