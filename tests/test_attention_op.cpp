// tests/test_attention_op.cpp — scaled_dot_product_attention (autograd/ops/attention.cpp) with
// the CPU reference kernels (kernels/cpu/attention.cpp) against attention written here from
// primitive ops (matmul, an additive −inf mask built with explicit loops, softmax):
//   - forward and lse, float64 / float32 / bfloat16 (bf16 against float64 on the same values);
//   - first-order gradients: ordinary backward (fused attention_bwd kernel) and create_graph
//     (the op's composite backward) against the gradients of the reference;
//   - float64 through attention_bwd directly (the op routes float64 around it: float32 lse);
//   - strided layouts (AttentionLayout): the kernels on operands inside [B, T, 3, H, D] buffers
//     equal them on contiguous ones, and the op reads [B, T, H, D] projections in place;
//   - hand-computed cases, autocast, and the error messages.
// Shapes cover causal, sliding window, Tq < Tk (decode) and non-causal.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tests/attention_layouts.h"
#include "tests/check_close.h"
#include "tests/profile_count.h"

using namespace ttt;
using ttt::testing::check_close;
using ttt::testing::backend_calls;
using ttt::testing::LayoutResult;
using ttt::testing::run_strided;
using ttt::testing::Tol;

namespace {

struct Config {
  const char* name;
  int64_t B, H, Tq, Tk, D;
  bool causal;
  int64_t window;
};
const Config kConfigs[] = {
    {"causal", 2, 2, 9, 9, 8, true, 0},
    {"window 3", 2, 1, 11, 11, 4, true, 3},
    {"decode Tq 3 < Tk 10", 1, 3, 3, 10, 8, true, 0},
    {"decode Tq 4 < Tk 13, window 5", 2, 2, 4, 13, 6, true, 5},
    {"window longer than the sequence", 1, 2, 6, 6, 4, true, 50},
    {"not causal, Tq 5, Tk 7", 2, 1, 5, 7, 8, false, 0},
};

// The additive mask [Tq, Tk] written out directly from the definition (query i at position
// i + Tk − Tq sees key j iff j <= pos and pos − j < window).
Tensor reference_mask(const Config& c, DType dt) {
  std::vector<double> m(static_cast<size_t>(c.Tq * c.Tk), 0.0);
  for (int64_t i = 0; i < c.Tq; ++i)
    for (int64_t j = 0; j < c.Tk; ++j) {
      const int64_t pos = i + c.Tk - c.Tq;
      const bool ok = !c.causal || (j <= pos && (c.window == 0 || pos - j < c.window));
      if (!ok) m[i * c.Tk + j] = -std::numeric_limits<double>::infinity();
    }
  return from_vector(m, {c.Tq, c.Tk}, opts(dt));
}

Tensor reference_scores(const Tensor& q, const Tensor& k, const Config& c, double scale) {
  return add(mul_scalar(matmul(q, transpose(k, -2, -1)), scale), reference_mask(c, q.dtype()));
}
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Config& c, double scale) {
  return matmul(softmax(reference_scores(q, k, c, scale), -1), v);
}

struct Inputs {
  Tensor q, k, v, dout;
};
Inputs make_inputs(const Config& c, DType dt, uint64_t seed) {
  Generator g(seed);
  Inputs in;
  in.q = randn({c.B, c.H, c.Tq, c.D}, g, opts(dt)).set_requires_grad(true);
  in.k = randn({c.B, c.H, c.Tk, c.D}, g, opts(dt)).set_requires_grad(true);
  in.v = randn({c.B, c.H, c.Tk, c.D}, g, opts(dt)).set_requires_grad(true);
  in.dout = randn({c.B, c.H, c.Tq, c.D}, g, opts(dt));
  return in;
}
Tensor f64_leaf(const Tensor& t) { return t.detach().to(DType::f64).set_requires_grad(true); }

}  // namespace

TEST_CASE("fused attention = reference: forward, ordinary and create_graph backward (f64, f32)") {
  for (DType dt : {DType::f64, DType::f32}) {
    const Tol t = dt == DType::f64 ? Tol{1e-12, 1e-10} : Tol{2e-5, 1e-4};
    for (const Config& c : kConfigs) {
      const std::string tag = std::string(c.name) + " " + dtype_name(dt);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
      Inputs in = make_inputs(c, dt, 11);
      const tensor_list xs = {in.q, in.k, in.v};
      auto fused = [&] { return scaled_dot_product_attention(in.q, in.k, in.v, c.causal, c.window, scale); };
      {
        NoGradGuard ng;
        check_close(fused(), reference_attention(in.q, in.k, in.v, c, scale), t, tag + " forward");
      }
      tensor_list ref = grad({reference_attention(in.q, in.k, in.v, c, scale)}, xs, {in.dout});
      tensor_list g_fused = grad({fused()}, xs, {in.dout});
      tensor_list g_comp = grad({fused()}, xs, {in.dout}, true, true);
      const char* names[] = {"dq", "dk", "dv"};
      for (int i = 0; i < 3; ++i) {
        check_close(g_fused[i], ref[i], t, tag + " fused " + names[i]);
        check_close(g_comp[i], ref[i], t, tag + " composite " + names[i]);
      }
    }
  }
}

TEST_CASE("fused attention in bfloat16 = float64 reference on the same values") {
  // bf16 storage: inputs are exact bf16 numbers, the kernel computes in double and rounds the
  // outputs once; the gradient kernel also reads the bf16-rounded output (D = rowsum(dO ∘ O)).
  const Tol t{2e-2, 2e-2};
  for (const Config& c : kConfigs) {
    const std::string tag = std::string(c.name) + " bfloat16";
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
    Inputs in = make_inputs(c, DType::bf16, 12);
    Tensor q64 = f64_leaf(in.q), k64 = f64_leaf(in.k), v64 = f64_leaf(in.v);
    Tensor y = scaled_dot_product_attention(in.q, in.k, in.v, c.causal, c.window, scale);
    CHECK(y.dtype() == DType::bf16);
    check_close(y, reference_attention(q64, k64, v64, c, scale).detach(), t, tag + " forward");
    tensor_list g = grad({y}, {in.q, in.k, in.v}, {in.dout});
    tensor_list ref = grad({reference_attention(q64, k64, v64, c, scale)}, {q64, k64, v64}, {in.dout.to(DType::f64)});
    for (int i = 0; i < 3; ++i) {
      CHECK(g[i].dtype() == DType::bf16);
      check_close(g[i], ref[i], t, tag + " gradient " + std::to_string(i));
    }
  }
}

TEST_CASE("float64 through attention_fwd / attention_bwd directly: lse and gradients") {
  // float32 lse caps the recomputed probabilities at float32 accuracy.
  const Tol t{1e-6, 1e-5};
  Backend& be = backend(cpu());
  for (const Config& c : kConfigs) {
    const double scale = 0.5;
    Inputs in = make_inputs(c, DType::f64, 13);
    AttentionShape s{c.B, c.H, c.Tq, c.Tk, c.D, c.causal, c.window, scale};
    Tensor out = empty({c.B, c.H, c.Tq, c.D}, opts(DType::f64)), lse = empty({c.B, c.H, c.Tq}, opts(DType::f32));
    be.attention_fwd(out.data_ptr(), lse.data<float>(), in.q.data_ptr(), in.k.data_ptr(), in.v.data_ptr(), s,
                     DType::f64);
    Tensor dq = empty(in.q.shape(), opts(DType::f64)), dk = empty(in.k.shape(), opts(DType::f64)),
           dv = empty(in.v.shape(), opts(DType::f64));
    be.attention_bwd(dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), in.dout.data_ptr(), in.q.data_ptr(),
                     in.k.data_ptr(), in.v.data_ptr(), out.data_ptr(), lse.data<float>(), s, DType::f64);
    Tensor scores = reference_scores(in.q, in.k, c, scale);
    Tensor m = max(scores, {-1}, true).detach();
    Tensor lse_ref = squeeze(add(m, log(sum(exp(sub(scores, m)), {-1}, true))), -1);
    check_close(lse, lse_ref.detach(), {1e-6, 1e-6}, std::string(c.name) + " lse");
    tensor_list ref = grad({reference_attention(in.q, in.k, in.v, c, scale)}, {in.q, in.k, in.v}, {in.dout});
    check_close(dq, ref[0], t, std::string(c.name) + " dq");
    check_close(dk, ref[1], t, std::string(c.name) + " dk");
    check_close(dv, ref[2], t, std::string(c.name) + " dv");
  }
}

TEST_CASE("strided layouts: the CPU kernels on [B, T, 3, H, D] slots equal them on contiguous operands") {
  Backend& be = backend(cpu());
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (const Config& c : kConfigs) {
      Inputs in = make_inputs(c, dt, 16);
      AttentionShape s{c.B, c.H, c.Tq, c.Tk, c.D, c.causal, c.window, 0.4};
      Tensor out = empty({c.B, c.H, c.Tq, c.D}, opts(dt)), lse = empty({c.B, c.H, c.Tq}, opts(DType::f32));
      Tensor dq = empty(in.q.shape(), opts(dt)), dk = empty(in.k.shape(), opts(dt)), dv = empty(in.v.shape(), opts(dt));
      be.attention_fwd(out.data_ptr(), lse.data<float>(), in.q.data_ptr(), in.k.data_ptr(), in.v.data_ptr(), s, dt);
      be.attention_bwd(dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), in.dout.data_ptr(), in.q.data_ptr(),
                       in.k.data_ptr(), in.v.data_ptr(), out.data_ptr(), lse.data<float>(), s, dt);
      const LayoutResult r = run_strided(be, cpu(), in.q.detach(), in.k.detach(), in.v.detach(), in.dout, s, dt);
      const std::string tag = std::string(c.name) + " " + dtype_name(dt);
      check_close(r.out, out, {0, 0}, tag + " out");
      check_close(r.lse, lse, {0, 0}, tag + " lse");
      check_close(r.dq, dq, {0, 0}, tag + " dq");
      check_close(r.dk, dk, {0, 0}, tag + " dk");
      check_close(r.dv, dv, {0, 0}, tag + " dv");
    }
}

TEST_CASE("the op reads [B, T, H, D] projections in place and writes heads-last outputs and gradients") {
  const Config c = kConfigs[2];  // decode-shaped (Tq != Tk); head_dim 8: rows of 16-byte multiples
  for (DType dt : {DType::f32, DType::bf16}) {
    Inputs in = make_inputs(c, dt, 17);
    // The same values as [B, T, H, D] leaves seen as [B, H, T, D] (what a layer's projections give);
    // the incoming gradient likewise, as it comes back through the merged heads.
    const auto heads_last = [](const Tensor& x) { return transpose(x.detach(), 1, 2).contiguous(); };
    Tensor xq = heads_last(in.q).set_requires_grad(true), xk = heads_last(in.k).set_requires_grad(true);
    Tensor xv = heads_last(in.v).set_requires_grad(true), dout = transpose(heads_last(in.dout), 1, 2);
    Tensor y, y_ref = scaled_dot_product_attention(in.q, in.k, in.v, c.causal, c.window, 0.4);
    tensor_list g;
    // No copies forward or backward: the kernels read and write every operand where it lies.
    const int64_t copies = backend_calls(
        [&] {
          y = scaled_dot_product_attention(transpose(xq, 1, 2), transpose(xk, 1, 2), transpose(xv, 1, 2), c.causal,
                                           c.window, 0.4);
          g = grad({y}, {xq, xk, xv}, {dout});
        },
        "unary");
    CHECK(copies == 0);
    // Heads-last output: merging the heads is a free view.
    CHECK(y.strides() == Shape{c.Tq * c.H * c.D, c.D, c.H * c.D, 1});
    check_close(y, y_ref, {0, 0}, std::string("strided forward ") + dtype_name(dt));
    const tensor_list g_ref = grad({y_ref}, {in.q, in.k, in.v}, {in.dout});
    for (int i = 0; i < 3; ++i)
      check_close(transpose(g[i], 1, 2), g_ref[i], {0, 0},
                  std::string("strided gradient ") + std::to_string(i) + " " + dtype_name(dt));
  }
}

TEST_CASE("hand-computed: causal row 0 copies v0; window 1 copies v; equal keys average") {
  // q = k = 0 -> all allowed scores equal -> row i averages the values it sees.
  const Tensor z = zeros({1, 1, 3, 2}, opts(DType::f64));
  const Tensor v = from_vector({1, 10, 2, 20, 6, 60}, {1, 1, 3, 2}, opts(DType::f64));
  auto vals = [](const Tensor& t) { return t.tolist<double>(); };
  const std::vector<double> causal = {1, 10, 1.5, 15, 3, 30};
  CHECK(vals(scaled_dot_product_attention(z, z, v, true, 0, 1.0)) == causal);
  CHECK(vals(scaled_dot_product_attention(z, z, v, true, 1, 1.0)) == vals(v));
  const std::vector<double> window2 = {1, 10, 1.5, 15, 4, 40};
  CHECK(vals(scaled_dot_product_attention(z, z, v, true, 2, 1.0)) == window2);
  const std::vector<double> full = {3, 30, 3, 30, 3, 30};
  CHECK(vals(scaled_dot_product_attention(z, z, v, false, 0, 1.0)) == full);
  // Decode: one query against three keys is the last row of the causal result.
  const std::vector<double> last = {3, 30};
  CHECK(vals(scaled_dot_product_attention(z.narrow(2, 2, 1), z, v, true, 0, 1.0)) == last);
  // Scores 0 and ln 3 (scale 1): row 1 weights 1/4, 3/4.
  Tensor q = from_vector({0, 0, 1, 0, 0, 0}, {1, 1, 3, 2}, opts(DType::f64));
  Tensor k = from_vector({0, 0, std::log(3.0), 0, 0, 0}, {1, 1, 3, 2}, opts(DType::f64));
  auto y = vals(scaled_dot_product_attention(q, k, v, true, 0, 1.0));
  CHECK(y[2] == doctest::Approx(0.25 * 1 + 0.75 * 2).epsilon(1e-14));
  CHECK(y[3] == doctest::Approx(0.25 * 10 + 0.75 * 20).epsilon(1e-14));
}

TEST_CASE("attention under autocast: bf16 kernels, float32 output and gradients") {
  const Config c = kConfigs[0];
  const double scale = 0.35;
  Inputs in = make_inputs(c, DType::f32, 14);
  Tensor y;
  {
    AutocastGuard ac(DType::bf16);
    y = scaled_dot_product_attention(in.q, in.k, in.v, c.causal, c.window, scale);
  }
  CHECK(y.dtype() == DType::f32);
  // Same numbers as the bf16 op on bf16-cast inputs.
  Tensor qb = in.q.detach().to(DType::bf16).set_requires_grad(true);
  Tensor kb = in.k.detach().to(DType::bf16).set_requires_grad(true);
  Tensor vb = in.v.detach().to(DType::bf16).set_requires_grad(true);
  Tensor yb = scaled_dot_product_attention(qb, kb, vb, c.causal, c.window, scale);
  check_close(y, yb, {0, 0}, "autocast forward");
  tensor_list g = grad({y}, {in.q, in.k, in.v}, {in.dout});
  tensor_list gb = grad({yb}, {qb, kb, vb}, {in.dout.to(DType::bf16)});
  for (int i = 0; i < 3; ++i) {
    CHECK(g[i].dtype() == DType::f32);
    check_close(g[i], gb[i], {0, 0}, "autocast gradient " + std::to_string(i));
  }
  // create_graph: the float32 composite on the bf16 values the kernels read (only those are
  // saved), differentiable again with respect to q, k, v: first and second derivatives match the
  // float32 reference on bf16-rounded inputs whose rounding has derivative 1. q, k, v are
  // activations here (views made by an op), as in a model.
  const auto rounded = [](const Tensor& x) {
    return add(x, sub(x.detach().to(DType::bf16).to(DType::f32), x.detach()));
  };
  Generator gw(15);
  const Tensor w = randn(in.q.shape(), gw);
  tensor_list g2, gg2, ref, ggref;
  for (bool autocast : {true, false}) {
    Tensor q = mul_scalar(in.q, 1.0), k = mul_scalar(in.k, 1.0), v = mul_scalar(in.v, 1.0), y2;
    {
      AutocastGuard ac(DType::bf16, autocast);
      y2 = autocast ? scaled_dot_product_attention(q, k, v, c.causal, c.window, scale)
                    : reference_attention(rounded(q), rounded(k), rounded(v), c, scale);
    }
    tensor_list g1 = grad({y2}, {q, k, v}, {in.dout}, true, true);
    tensor_list gg = grad({sum(mul(g1[0], w))}, {in.q, in.k, in.v});
    (autocast ? g2 : ref) = g1;
    (autocast ? gg2 : ggref) = gg;
  }
  for (int i = 0; i < 3; ++i) {
    check_close(g2[i], ref[i], {2e-5, 1e-4}, "autocast create_graph " + std::to_string(i));
    check_close(gg2[i], ggref[i], {2e-5, 1e-4}, "autocast second derivative " + std::to_string(i));
  }
  // Under KeepFloat32Operands the float32 q, k, v are saved too and the composite runs on them:
  // the gradients match the float32 reference on the unrounded inputs.
  Tensor q = mul_scalar(in.q, 1.0), k = mul_scalar(in.k, 1.0), v = mul_scalar(in.v, 1.0), y3;
  {
    AutocastGuard ac(DType::bf16);
    KeepFloat32Operands keep;
    y3 = scaled_dot_product_attention(q, k, v, c.causal, c.window, scale);
  }
  const tensor_list g3 = grad({y3}, {q, k, v}, {in.dout}, true, true);
  const tensor_list exact = grad({reference_attention(q, k, v, c, scale)}, {q, k, v}, {in.dout});
  for (int i = 0; i < 3; ++i) check_close(g3[i], exact[i], {2e-5, 1e-4}, "kept operands " + std::to_string(i));
}

TEST_CASE("attention errors name the op and the shapes") {
  auto msg_of = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const Tensor q = zeros({1, 2, 4, 8}), k = zeros({1, 2, 3, 8}), k3 = zeros({2, 3, 8});
  std::string m = msg_of([&] { scaled_dot_product_attention(q, k, k, true, 0, 1.0); });
  CHECK(m.find("scaled_dot_product_attention") != std::string::npos);
  CHECK(m.find("Tq <= Tk") != std::string::npos);
  CHECK(m.find("[1, 2, 4, 8]") != std::string::npos);
  m = msg_of([&] { scaled_dot_product_attention(q, k3, k3, true, 0, 1.0); });
  CHECK(m.find("[B, H, Tq, D]") != std::string::npos);
  m = msg_of([&] { scaled_dot_product_attention(q, q, q, false, 4, 1.0); });
  CHECK(m.find("window") != std::string::npos);
  m = msg_of([&] { scaled_dot_product_attention(q, q, q.to(DType::f64), true, 0, 1.0); });
  CHECK(m.find("scaled_dot_product_attention") != std::string::npos);
  m = msg_of([&] { scaled_dot_product_attention(q, zeros({1, 2, 4, 4}), zeros({1, 2, 4, 4}), true, 0, 1.0); });
  CHECK(m.find("B, H and D") != std::string::npos);
}
