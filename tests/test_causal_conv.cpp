// tests/test_causal_conv.cpp — the short causal depthwise convolution (Mamba backbone pre-conv,
// TTT conv_q/conv_k): values against a direct loop, causality, chunked decoding == forward,
// PyTorch-default init bounds, gradcheck in fp64.
// Run: ./build/tests/test_causal_conv
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "kernels/causal_conv.h"
#include "layers/causal_conv.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {
// y[b,t,c] = bias[c] + sum_j w[c,j] x[b, t-(k-1)+j, c] with zeros before t = 0.
std::vector<double> conv_ref(const Tensor& x, const CausalConv1d& conv) {
  const int64_t B = x.shape()[0], T = x.shape()[1], C = x.shape()[2], k = conv.width;
  auto xv = x.tolist<double>(), w = conv.weight.tolist<double>(), b = conv.bias.tolist<double>();
  std::vector<double> y(B * T * C);
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double acc = b[c];
        for (int64_t j = 0; j < k; ++j) {
          const int64_t s = t - (k - 1) + j;
          if (s >= 0) acc += w[c * k + j] * xv[(bi * T + s) * C + c];
        }
        y[(bi * T + t) * C + c] = acc;
      }
  return y;
}
}  // namespace

TEST_CASE("CausalConv1d: forward equals the direct sum, for widths 1..4") {
  for (int64_t k : {1, 2, 4}) {
    Generator g(k);
    CausalConv1d conv(3, k, g);
    conv.to(DType::f64);
    Tensor x = rand64({2, 6, 3}, 20 + k);
    auto y = conv.forward(x).tolist<double>();
    auto want = conv_ref(x, conv);
    REQUIRE(y.size() == want.size());
    for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(want[i]).epsilon(1e-13));
  }
}

TEST_CASE("CausalConv1d: output at t does not depend on inputs after t") {
  Generator g(1);
  CausalConv1d conv(4, 4, g);
  conv.to(DType::f64);
  Tensor x = rand64({1, 8, 4}, 30);
  Tensor y = conv.forward(x);
  for (int64_t t = 0; t < 7; ++t) {
    Tensor x2 = x.clone();
    {
      NoGradGuard ng;
      x2.narrow(1, t + 1, 8 - t - 1).add_(rand64({1, 8 - t - 1, 4}, 31 + t));
    }
    Tensor y2 = conv.forward(x2);
    CHECK(max_abs_diff(y.narrow(1, 0, t + 1), y2.narrow(1, 0, t + 1)) == 0.0);
    CHECK(max_abs_diff(y.narrow(1, t + 1, 1), y2.narrow(1, t + 1, 1)) > 1e-6);  // the next one does change
  }
}

TEST_CASE("CausalConv1d: step over chunks (1, 3, 1, 2, 5 tokens) reproduces forward") {
  Generator g(2);
  CausalConv1d conv(5, 4, g);
  conv.to(DType::f64);
  Tensor x = rand64({2, 12, 5}, 40);
  Tensor full = conv.forward(x);
  Tensor tail = conv.init_tail(2, DType::f64);
  CHECK(tail.shape() == Shape{2, 3, 5});
  int64_t t0 = 0;
  for (int64_t len : {1, 3, 1, 2, 5}) {
    Tensor y = conv.step(x.narrow(1, t0, len), tail);
    CHECK(max_abs_diff(y, full.narrow(1, t0, len)) < 1e-14);
    t0 += len;
  }
  // The tail now holds the last three inputs.
  CHECK(max_abs_diff(tail, x.narrow(1, 9, 3)) == 0.0);
  Tensor bad = conv.init_tail(1, DType::f64);
  CHECK_THROWS_AS(conv.step(x.narrow(1, 0, 1), bad), std::invalid_argument);
}

TEST_CASE("CausalConv1d: PyTorch default init U(-1/sqrt(k), 1/sqrt(k)), deterministic") {
  Generator g1(9), g2(9);
  CausalConv1d a(512, 4, g1), b(512, 4, g2);
  CHECK(max_abs_diff(a.weight, b.weight) == 0.0);
  CHECK(a.weight.shape() == Shape{512, 4});
  auto w = a.weight.tolist<double>();
  double lo = 1, hi = -1;
  for (double v : w) lo = std::min(lo, v), hi = std::max(hi, v);
  CHECK(hi <= 0.5);
  CHECK(lo >= -0.5);
  CHECK(hi > 0.49);
  CHECK(lo < -0.49);
  auto bv = a.bias.tolist<double>();
  CHECK(*std::max_element(bv.begin(), bv.end()) > 0.45);
}

TEST_CASE("CausalConv1d: gradcheck for x, weight, bias, also through step (fp64)") {
  Generator g(3);
  CausalConv1d conv(2, 3, g);
  conv.to(DType::f64);
  Tensor x = rand64({2, 4, 2}, 50, true);
  auto r = gradcheck([&](const tensor_list& in) { return tensor_list{conv.forward(in[0])}; },
                     {x, conv.weight, conv.bias});
  CHECK_MESSAGE(r.ok, r.message);
  Tensor tail0 = rand64({2, 2, 2}, 51, true);
  auto r2 = gradcheck(
      [&](const tensor_list& in) {
        Tensor tail = in[1];
        Tensor y = conv.step(in[0], tail);
        return tensor_list{y, tail};
      },
      {x, tail0, conv.weight});
  CHECK_MESSAGE(r2.ok, r2.message);
}

// --- the fused op (autograd/ops.h causal_conv1d) ------------------------------------------------

namespace {
// Output and the three gradients of sum(y · g) through the op, for inputs on `dev` in dtype dt.
std::vector<Tensor> conv_results(const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& g0, DType dt,
                                 Device dev) {
  auto leaf = [&](const Tensor& t) { return t.to(dt).to(dev).detach().set_requires_grad(true); };
  Tensor x = leaf(x0), w = leaf(w0), b = leaf(b0);
  Tensor y = causal_conv1d(x, w, b);
  tensor_list gr = grad({sum(mul(y, g0.to(dt).to(dev)))}, {x, w, b});
  return {y.to(cpu()).to(DType::f64), gr[0].to(cpu()).to(DType::f64), gr[1].to(cpu()).to(DType::f64),
          gr[2].to(cpu()).to(DType::f64)};
}
}  // namespace

TEST_CASE("causal_conv1d (fused CPU reference) equals the composite slices, float64 and float32; deterministic") {
  Generator g(31);
  const Tensor x = randn({3, 130, 5}, g, opts(DType::f64)), w = randn({5, 4}, g, opts(DType::f64));
  const Tensor b = randn({5}, g, opts(DType::f64)), gy = randn({3, 130, 5}, g, opts(DType::f64));
  CausalConv1d layer(5, 4, g);
  layer.to(DType::f64);
  {
    NoGradGuard ng;
    layer.weight.copy_(w);
    layer.bias.copy_(b);
  }
  // The composite form, via the layer's step() from an empty tail (the same sum of shifted slices).
  Tensor tail = layer.init_tail(3, DType::f64, cpu());
  const Tensor ref = layer.step(x, tail);
  for (DType dt : {DType::f64, DType::f32}) {
    const auto r = conv_results(x, w, b, gy, dt, cpu());
    CHECK(max_rel_diff(r[0], ref, 1.0) < (dt == DType::f64 ? 1e-12 : 1e-5));
    const auto again = conv_results(x, w, b, gy, dt, cpu());
    for (size_t i = 0; i < r.size(); ++i) CHECK(max_abs_diff(r[i], again[i]) == 0.0);
  }
}

TEST_CASE("causal_conv1d on CUDA equals the CPU reference (float32, bfloat16; widths 1, 4, 8); runs repeat bit for bit") {
  TTT_REQUIRE_GPU();
  for (int64_t k : {1, 4, 8}) {
    CAPTURE(k);
    Generator g(40 + k);
    const Tensor x = randn({2, 200, 96}, g, opts(DType::f64)), w = randn({96, k}, g, opts(DType::f64));
    const Tensor b = randn({96}, g, opts(DType::f64)), gy = randn({2, 200, 96}, g, opts(DType::f64));
    for (DType dt : {DType::f32, DType::bf16}) {
      // Against the CPU reference on the same (rounded) data: only the summation order differs.
      const auto ref = conv_results(x, w, b, gy, dt, cpu());
      const auto r = conv_results(x, w, b, gy, dt, cuda());
      const double tol = dt == DType::f32 ? 1e-5 : 1e-2;
      for (size_t i = 0; i < r.size(); ++i) CHECK(max_rel_diff(r[i], ref[i], 1.0) < tol);
      const auto again = conv_results(x, w, b, gy, dt, cuda());
      for (size_t i = 0; i < r.size(); ++i) CHECK(max_abs_diff(r[i], again[i]) == 0.0);
    }
  }
}

TEST_CASE("causal_conv1d CUDA kernels write every output element (outputs poisoned with NaN)") {
  TTT_REQUIRE_GPU();
  Generator g(7);
  const TensorOptions o = opts(DType::f32, cuda());
  const Tensor x = randn({2, 77, 40}, g, o), dy = randn({2, 77, 40}, g, o), w = randn({40, 4}, g, o), b = randn({40}, g, o);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor y = full({2, 77, 40}, nan, o), dx = full({2, 77, 40}, nan, o), dw = full({40, 4}, nan, o), db = full({40}, nan, o);
  CausalConvForward f;
  f.s = {2, 77, 40, 4, DType::f32};
  f.x = {x.data_ptr(), x.strides()[0], x.strides()[1]}, f.y = {y.data_ptr(), y.strides()[0], y.strides()[1]};
  f.w = w.data_ptr(), f.bias = b.data_ptr();
  backend(cuda()).run(f);
  CausalConvBackward bw;
  bw.s = f.s;
  bw.x = f.x, bw.dy = {dy.data_ptr(), dy.strides()[0], dy.strides()[1]}, bw.dx = {dx.data_ptr(), dx.strides()[0], dx.strides()[1]};
  bw.w = w.data_ptr(), bw.dw = dw.data_ptr(), bw.dbias = db.data_ptr();
  Tensor ws = full({static_cast<int64_t>(bw.workspace_bytes() / 4)}, nan, o);
  bw.workspace = ws.data_ptr();
  backend(cuda()).run(bw);
  for (const Tensor& t : {y, dx, dw, db}) {
    const auto v = t.to(cpu()).tolist<double>();
    CHECK(std::none_of(v.begin(), v.end(), [](double e) { return std::isnan(e); }));
  }
}

TEST_CASE("causal_conv1d of bf16 data with float32 weight and bias = the float32 conv of the same values, rounded once") {
  // An autocast model's bf16 activation and its float32 parameters (the kernels read float32
  // parameters for bf16 data): y and dx bf16, dw and dbias float32; the create_graph path too.
  Generator g(41);
  const Tensor x = randn({2, 37, 6}, g).to(DType::bf16).set_requires_grad(true);
  const Tensor w = randn({6, 4}, g).set_requires_grad(true), b = randn({6}, g).set_requires_grad(true);
  const Tensor x32 = x.detach().to(DType::f32).set_requires_grad(true);
  const Tensor dy = randn({2, 37, 6}, g).to(DType::bf16);
  const Tensor y = causal_conv1d(x, w, b), y32 = causal_conv1d(x32, w, b);
  CHECK(y.dtype() == DType::bf16);
  CHECK(max_abs_diff(y.to(DType::f32), y32.detach().to(DType::bf16).to(DType::f32)) == 0.0);
  const tensor_list gm = grad({y}, {x, w, b}, {dy}), gr = grad({y32}, {x32, w, b}, {dy.to(DType::f32)});
  CHECK(gm[0].dtype() == DType::bf16);
  CHECK(gm[1].dtype() == DType::f32);
  CHECK(gm[2].dtype() == DType::f32);
  CHECK(max_abs_diff(gm[0].to(DType::f32), gr[0].to(DType::bf16).to(DType::f32)) == 0.0);
  CHECK(max_rel_diff(gm[1], gr[1], 1.0) < 1e-5);
  CHECK(max_rel_diff(gm[2], gr[2], 1.0) < 1e-5);
  // create_graph: the composite with the parameters cast to bf16, differentiable to the float32 leaves.
  const tensor_list gg = grad({causal_conv1d(x, w, b)}, {x, w, b}, {dy}, std::nullopt, true);
  CHECK(gg[1].dtype() == DType::f32);
  CHECK(max_rel_diff(gg[1], gr[1], 1.0) < 1e-2);
  CHECK(gg[1].requires_grad());
  // float64 data with float32 weights stays an error.
  CHECK_THROWS_AS(causal_conv1d(x.detach().to(DType::f64), w, b), std::invalid_argument);
}

TEST_CASE("CausalConv1d: step with grad mode off (one kernel reads the tail, writes the next) reproduces forward") {
  // The CPU reference of causal_conv1d_continue, fp64: chunks of 1, 3, 1, 2, 5 tokens, widths 2..4.
  NoGradGuard ng;
  for (int64_t k : {2, 3, 4}) {
    CAPTURE(k);
    Generator g(3 + k);
    CausalConv1d conv(5, k, g);
    conv.to(DType::f64);
    Tensor x = rand64({2, 12, 5}, 41);
    Tensor full = conv.forward(x);
    Tensor tail = conv.init_tail(2, DType::f64);
    int64_t t0 = 0;
    for (int64_t len : {1, 3, 1, 2, 5}) {
      const Tensor before = tail;
      Tensor y = conv.step(x.narrow(1, t0, len), tail);
      CHECK(max_abs_diff(y, full.narrow(1, t0, len)) < 1e-14);
      CHECK(tail.data_ptr() != before.data_ptr());  // a new tensor: the old tail is unchanged
      t0 += len;
    }
    CHECK(max_abs_diff(tail, x.narrow(1, 12 - (k - 1), k - 1)) == 0.0);
  }
  // Not differentiable: refused for inputs that need a gradient while grad mode is on.
  GradModeGuard on(true);
  Tensor w = rand64({5, 4}, 42).set_requires_grad(true);
  CHECK_THROWS_AS(causal_conv1d_continue(rand64({1, 2, 5}, 43), rand64({1, 3, 5}, 44), w, Tensor()), std::invalid_argument);
}

TEST_CASE("causal_conv1d_continue on CUDA equals the CPU reference and writes every element (outputs poisoned)") {
  TTT_REQUIRE_GPU();
  NoGradGuard ng;
  for (int64_t T : {1, 3, 40}) {
    CAPTURE(T);
    Generator g(50 + T);
    const Tensor x = randn({2, T, 300}, g), h = randn({2, 3, 300}, g), w = randn({300, 4}, g), b = randn({300}, g);
    const tensor_list ref = causal_conv1d_continue(x, h, w, b);
    const tensor_list r = causal_conv1d_continue(x.to(cuda()), h.to(cuda()), w.to(cuda()), b.to(cuda()));
    CHECK(max_abs_diff(r[0].to(cpu()), ref[0]) < 1e-5);
    CHECK(max_abs_diff(r[1].to(cpu()), ref[1]) == 0.0);  // copies of inputs
    // The kernel call itself with NaN-poisoned outputs.
    const TensorOptions o = opts(DType::f32, cuda());
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor xd = x.to(cuda()), hd = h.to(cuda()), wd = w.to(cuda()), bd = b.to(cuda());
    Tensor y = full({2, T, 300}, nan, o), next = full({2, 3, 300}, nan, o);
    CausalConvForward f;
    f.s = {2, T, 300, 4, DType::f32};
    const auto view = [](const Tensor& t) { return BTCView{t.data_ptr(), t.strides()[0], t.strides()[1]}; };
    f.x = view(xd), f.y = view(y), f.history = view(hd), f.history_out = view(next);
    f.w = wd.data_ptr(), f.bias = bd.data_ptr();
    backend(cuda()).run(f);
    CHECK(max_abs_diff(y.to(cpu()), ref[0]) < 1e-5);
    CHECK(max_abs_diff(next.to(cpu()), ref[1]) == 0.0);
  }
}

namespace {

// A float32 history through bf16 x, as the op takes it, and as casting around the bf16 call: the
// history rounded to bf16, the new one back in float32 (the same values, bit for bit).
void check_f32_history(Device dev) {
  NoGradGuard ng;
  for (int64_t T : {1, 2, 40}) {
    CAPTURE(T);
    Generator g(70 + T);
    const Tensor x = randn({2, T, 300}, g).to(DType::bf16).to(dev), h = randn({2, 3, 300}, g).to(dev);
    const Tensor w = randn({300, 4}, g).to(dev), b = randn({300}, g).to(dev);
    const tensor_list got = causal_conv1d_continue(x, h, w, b);
    const tensor_list ref = causal_conv1d_continue(x, h.to(DType::bf16), w, b);
    REQUIRE(got[1].dtype() == DType::f32);
    CHECK(max_abs_diff(got[0].to(DType::f32), ref[0].to(DType::f32)) == 0.0);
    CHECK(max_abs_diff(got[1], ref[1].to(DType::f32)) == 0.0);
    // The module: a float32 tail stays float32 through bf16 steps, with grad mode off and on.
    CausalConv1d conv(300, 4, g);
    conv.to(dev);
    Tensor tail = h, tail_bf16 = h.to(DType::bf16);
    const Tensor y = conv.step(x, tail), y_ref = conv.step(x, tail_bf16);
    CHECK(tail.dtype() == DType::f32);
    CHECK(max_abs_diff(y.to(DType::f32), y_ref.to(DType::f32)) == 0.0);
    CHECK(max_abs_diff(tail, tail_bf16.to(DType::f32)) == 0.0);
    GradModeGuard on(true);
    Tensor tail_g = h;
    const Tensor yg = conv.step(x, tail_g);  // the composite, cast around
    CHECK(tail_g.dtype() == DType::f32);
    CHECK(max_abs_diff(yg.to(DType::f32), y_ref.to(DType::f32)) == 0.0);
    CHECK(max_abs_diff(tail_g, tail) == 0.0);
  }
}

}  // namespace

TEST_CASE("causal_conv1d_continue: a float32 history through bf16 x = casting around the bf16 call (CPU)") {
  check_f32_history(cpu());
}

TEST_CASE("causal_conv1d_continue on CUDA: a float32 history through bf16 x (outputs poisoned) = the CPU reference") {
  TTT_REQUIRE_GPU();
  check_f32_history(cuda());
  NoGradGuard ng;
  Generator g(90);
  const Tensor x = randn({2, 40, 300}, g).to(DType::bf16), h = randn({2, 3, 300}, g), w = randn({300, 4}, g);
  const tensor_list ref = causal_conv1d_continue(x, h, w, Tensor());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor xd = x.to(cuda()), hd = h.to(cuda()), wd = w.to(cuda());
  Tensor y = full({2, 40, 300}, nan, opts(DType::bf16, cuda())), next = full({2, 3, 300}, nan, opts(DType::f32, cuda()));
  CausalConvForward f;
  f.s = {2, 40, 300, 4, DType::bf16};
  f.history_f32 = true;
  const auto view = [](const Tensor& t) { return BTCView{t.data_ptr(), t.strides()[0], t.strides()[1]}; };
  f.x = view(xd), f.y = view(y), f.history = view(hd), f.history_out = view(next);
  f.w = wd.data_ptr();
  backend(cuda()).run(f);
  CHECK(max_abs_diff(y.to(cpu()).to(DType::f32), ref[0].to(DType::f32)) < 2e-2);  // bf16 outputs, float sums
  CHECK(max_abs_diff(next.to(cpu()), ref[1]) == 0.0);
}
