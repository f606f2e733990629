// tests/test_layers_basic.cpp — Linear, SwiGLU, RoPE, Embedding and the norms: values against
// hand computation, RoPE's relative-position property, deterministic init, gradcheck in fp64.
// Run: ./build/tests/test_layers_basic
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/graph_memory.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/rope.h"
#include "layers/swiglu.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {
double silu_ref(double z) { return z / (1 + std::exp(-z)); }
}  // namespace

// --- Linear -------------------------------------------------------------------------------------

TEST_CASE("Linear: y = x W^T + b by hand, no bias by default") {
  Generator g(0);
  Linear nobias(3, 2, g);
  CHECK(nobias.named_parameters().size() == 1);
  Linear lin(3, 2, g, 0.02, /*bias=*/true);
  lin.to(DType::f64);
  set_values(lin.weight, {1, 2, 3, -1, 0, 2});  // W = [[1,2,3],[-1,0,2]]
  set_values(lin.bias, {0.5, -0.5});
  Tensor x = from_vector({1, 1, 1, 2, 0, -1}, {1, 2, 3}, opts(DType::f64));
  Tensor y = lin.forward(x);
  CHECK(y.shape() == Shape{1, 2, 2});
  // row (1,1,1): 6.5, 0.5;  row (2,0,-1): -0.5, -4.5
  CHECK(y.tolist<double>() == std::vector<double>{6.5, 0.5, -0.5, -4.5});
  CHECK_THROWS_AS(lin.forward(zeros({2, 4}, opts(DType::f64))), std::invalid_argument);
}

TEST_CASE("Linear: init N(0, std) is deterministic in the seed") {
  Generator g1(7), g2(7), g3(8);
  Linear a(256, 128, g1), b(256, 128, g2), c(256, 128, g3);
  CHECK(max_abs_diff(a.weight, b.weight) == 0.0);
  CHECK(max_abs_diff(a.weight, c.weight) > 0.0);
  auto w = a.weight.tolist<double>();
  double s = 0, s2 = 0;
  for (double v : w) s += v, s2 += v * v;
  const double n = static_cast<double>(w.size()), mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
  CHECK(std::fabs(mean) < 0.001);
  CHECK(sd == doctest::Approx(0.02).epsilon(0.03));
}

TEST_CASE("Linear: gradcheck (fp64)") {
  Generator g(1);
  Linear lin(4, 3, g, 0.5, true);
  lin.to(DType::f64);
  Tensor x = rand64({2, 3, 4}, 2, true);
  auto r = gradcheck([&](const tensor_list& in) { return tensor_list{lin.forward(in[0])}; },
                     {x, lin.weight, lin.bias});
  CHECK_MESSAGE(r.ok, r.message);
}

// --- SwiGLU -------------------------------------------------------------------------------------

TEST_CASE("SwiGLU: w2(silu(w1 x) * w3 x) by hand; names w1 w2 w3") {
  Generator g(3);
  SwiGLU mlp(2, 3, g, 0.5);
  mlp.to(DType::f64);
  auto names = mlp.named_parameters();
  REQUIRE(names.size() == 3);
  CHECK(names[0].first == "w1.weight");
  CHECK(names[1].first == "w2.weight");
  CHECK(names[2].first == "w3.weight");
  Tensor x = rand64({4, 2}, 4);
  auto xv = x.tolist<double>(), w1 = mlp.w1->weight.tolist<double>(), w2 = mlp.w2->weight.tolist<double>(),
       w3 = mlp.w3->weight.tolist<double>();
  auto y = mlp.forward(x).tolist<double>();
  for (int r = 0; r < 4; ++r) {
    double h[3];
    for (int j = 0; j < 3; ++j) {
      double a = 0, b = 0;
      for (int i = 0; i < 2; ++i) a += w1[j * 2 + i] * xv[r * 2 + i], b += w3[j * 2 + i] * xv[r * 2 + i];
      h[j] = silu_ref(a) * b;
    }
    for (int o = 0; o < 2; ++o) {
      double want = 0;
      for (int j = 0; j < 3; ++j) want += w2[o * 3 + j] * h[j];
      CHECK(y[r * 2 + o] == doctest::Approx(want).epsilon(1e-12));
    }
  }
}

TEST_CASE("SwiGLU: gradcheck (fp64)") {
  Generator g(5);
  SwiGLU mlp(3, 4, g, 0.7);
  mlp.to(DType::f64);
  Tensor x = rand64({2, 3}, 6, true);
  tensor_list in = {x};
  for (auto& p : mlp.parameters()) in.push_back(p);
  auto r = gradcheck([&](const tensor_list& i) { return tensor_list{mlp.forward(i[0])}; }, in);
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("SwiGLU bf16_hidden under autocast: the hidden layer is bf16 (half its saved bytes), same results to bf16") {
  // w1 x and w3 x (the swiglu op's saved inputs) and w2's input become bf16: of 3 · d_ff floats per
  // token stored in float32 (w2 keeps a bf16 cast of its input then), 2 · d_ff float32 + d_ff bf16
  // become 3 · d_ff bf16.
  const int64_t N = 10, D = 8, F = 24;
  Generator g0(3);
  const Tensor x0 = randn({N, D}, g0);
  const auto run = [&](bool low, int64_t* saved) {
    Generator g(5);
    SwiGLU mlp(D, F, g, 0.3, low);
    Tensor x = x0.detach().set_requires_grad(true);
    Tensor y;
    {
      AutocastGuard ac(DType::bf16);
      y = mlp.forward(x);
    }
    CHECK(y.dtype() == DType::f32);
    Tensor loss = sum(square(y));
    *saved = 0;
    for (const SavedBytes& r : saved_bytes_by_op(loss)) *saved += r.bytes;
    tensor_list in = {x, mlp.w1->weight, mlp.w2->weight, mlp.w3->weight};
    tensor_list gr = grad({loss}, in);
    gr.insert(gr.begin(), y.detach());
    return gr;
  };
  int64_t s_low = 0, s_f32 = 0;
  const tensor_list a = run(true, &s_low), b = run(false, &s_f32);
  check_near_reference(a, b, 2e-2);
  CHECK(s_f32 - s_low == N * F * (2 * 4 - 2 * 2));
}

// --- RoPE ---------------------------------------------------------------------------------------

TEST_CASE("RoPE: interleaved pairs rotated by p * theta^(-2i/d), by hand") {
  // d = 4, theta = 100: omega_0 = 1, omega_1 = 100^(-1/2) = 0.1. One head, positions {0, 3}.
  Tensor x = from_vector({1, 2, 3, 4, 1, 2, 3, 4}, {1, 1, 2, 4}, opts(DType::f64));
  auto y = apply_rope(x, from_vector_i64({0, 3}, {2}), 100.0).tolist<double>();
  // position 0: unchanged
  for (int i = 0; i < 4; ++i) CHECK(y[i] == doctest::Approx(1.0 + i).epsilon(1e-14));
  const double a0 = 3.0, a1 = 0.3;
  CHECK(y[4] == doctest::Approx(1 * std::cos(a0) - 2 * std::sin(a0)).epsilon(1e-14));
  CHECK(y[5] == doctest::Approx(1 * std::sin(a0) + 2 * std::cos(a0)).epsilon(1e-14));
  CHECK(y[6] == doctest::Approx(3 * std::cos(a1) - 4 * std::sin(a1)).epsilon(1e-14));
  CHECK(y[7] == doctest::Approx(3 * std::sin(a1) + 4 * std::cos(a1)).epsilon(1e-14));
}

TEST_CASE("RoPE: <rope(q, m), rope(k, n)> depends only on m - n") {
  const int64_t d = 16;
  Tensor q = rand64({1, 1, 1, d}, 10), k = rand64({1, 1, 1, d}, 11);
  auto dot_at = [&](int64_t m, int64_t n) {
    Tensor qm = apply_rope(q, from_vector_i64({m}, {1}), 10000.0);
    Tensor kn = apply_rope(k, from_vector_i64({n}, {1}), 10000.0);
    return sum(mul(qm, kn)).item();
  };
  const double base = dot_at(5, 2);  // offset 3
  CHECK(dot_at(3, 0) == doctest::Approx(base).epsilon(1e-12));
  CHECK(dot_at(103, 100) == doctest::Approx(base).epsilon(1e-10));
  CHECK(dot_at(1000, 997) == doctest::Approx(base).epsilon(1e-9));
  // ... and a different offset gives a different value (so the check above can fail).
  CHECK(std::fabs(dot_at(5, 1) - base) > 1e-3);
  // Rotations preserve the norm.
  Tensor qr = apply_rope(q, from_vector_i64({77}, {1}), 10000.0);
  CHECK(sum(mul(qr, qr)).item() == doctest::Approx(sum(mul(q, q)).item()).epsilon(1e-12));
}

TEST_CASE("RoPE: [B,T,H,d] with time_dim 1 equals [B,H,T,d]; bf16 stays bf16; bad input") {
  Tensor x = rand64({2, 5, 3, 8}, 12);  // B T H d
  Tensor pos = rope_positions(4, 5);
  Tensor a = apply_rope(x, pos, 500.0, 1);
  Tensor b = transpose(apply_rope(transpose(x, 1, 2), pos, 500.0), 1, 2);
  CHECK(max_abs_diff(a, b) < 1e-15);
  Tensor xb = x.to(DType::bf16);
  Tensor yb = apply_rope(xb, pos, 500.0, 1);
  CHECK(yb.dtype() == DType::bf16);
  CHECK(max_abs_diff(yb.to(DType::f64), a) < 0.05);
  CHECK_THROWS_AS(apply_rope(x, rope_positions(0, 4), 500.0, 1), std::invalid_argument);  // 4 != T
  CHECK_THROWS_AS(apply_rope(rand64({2, 5, 7}, 1), rope_positions(0, 5), 500.0, 1), std::invalid_argument);
}

TEST_CASE("RoPE: fused op = composite (absolute and t mod K positions, strided inputs, gradients)") {
  // Attention's positions start.. and the TTT layer's t mod K; the [B, T, H, d] projection read
  // as [B, H, T, d] (a strided view) and a contiguous [B, T, H, d] with time_dim 1.
  const int64_t B = 2, T = 11, H = 3, d = 8;
  std::vector<int64_t> mod_k;
  for (int64_t t = 0; t < T; ++t) mod_k.push_back((t + 2) % 4);
  for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
    const double tol = dt == DType::f64 ? 1e-14 : dt == DType::f32 ? 1e-6 : 2e-2;
    for (const Tensor& pos : {rope_positions(7, T), from_vector_i64(mod_k, {T})}) {
      INFO(dtype_name(dt));
      Tensor base = rand64({B, T, H, d}, 20).to(dt).set_requires_grad(true);
      Tensor w = rand64({B, H, T, d}, 21).to(dt);
      // Strided [B, H, T, d] view: the fused forward, its backward, and the composite.
      Tensor fused = apply_rope(transpose(base, 1, 2), pos, 500.0);
      Tensor comp = apply_rope_composite(transpose(base, 1, 2), pos, 500.0);
      CHECK(fused.dtype() == dt);
      CHECK(max_abs_diff(fused.to(DType::f64), comp.to(DType::f64)) < tol);
      Tensor g_fused = grad({fused}, {base}, {w})[0];
      Tensor g_comp = grad({comp}, {base}, {w})[0];
      CHECK(max_abs_diff(g_fused.to(DType::f64), g_comp.to(DType::f64)) < tol);
      // The gradient comes back in the layout of the projection: merging heads stays a view.
      CHECK(g_fused.is_contiguous());
      // create_graph: the backward is the same op, taped (differentiable in the incoming gradient).
      Tensor wl = w.detach().set_requires_grad(true);
      Tensor g_taped = grad({apply_rope(transpose(base, 1, 2), pos, 500.0)}, {base}, {wl}, true, true)[0];
      CHECK(g_taped.requires_grad());
      CHECK(max_abs_diff(g_taped.to(DType::f64), g_comp.to(DType::f64)) < tol);
      // keep_layout: the same values, left in the projection's [B, T, H, d] memory order.
      Tensor kept = apply_rope(transpose(base, 1, 2), pos, 500.0, -2, /*keep_layout=*/true);
      CHECK(kept.strides() == transpose(base, 1, 2).strides());
      CHECK(max_abs_diff(kept.to(DType::f64), fused.to(DType::f64)) == 0);
      CHECK(max_abs_diff(grad({kept}, {base}, {w})[0].to(DType::f64), g_fused.to(DType::f64)) == 0);
      // time_dim 1 on the contiguous layout.
      CHECK(max_abs_diff(apply_rope(base, pos, 500.0, 1).to(DType::f64),
                         apply_rope_composite(base, pos, 500.0, 1).to(DType::f64)) < tol);
    }
  }
}

TEST_CASE("RoPE: gradcheck and gradgradcheck (fp64)") {
  Tensor x = rand64({1, 2, 3, 4}, 13, true);
  Tensor pos = from_vector_i64({1, 5, 2}, {3});
  auto fn = [&](const tensor_list& in) { return tensor_list{apply_rope(in[0], pos, 10.0)}; };
  auto r = gradcheck(fn, {x});
  CHECK_MESSAGE(r.ok, r.message);
  auto r2 = gradgradcheck(fn, {x});
  CHECK_MESSAGE(r2.ok, r2.message);
}

// --- Embedding ----------------------------------------------------------------------------------

TEST_CASE("Embedding: rows of the table; attend = h W^T; repeated ids accumulate gradient") {
  Generator g(20);
  Embedding emb(5, 3, g, 1.0);
  emb.to(DType::f64);
  auto w = emb.weight.tolist<double>();
  Tensor ids = from_vector_i64({4, 0, 4, 2}, {2, 2});
  Tensor e = emb.forward(ids);
  CHECK(e.shape() == Shape{2, 2, 3});
  auto ev = e.tolist<double>();
  const int64_t want_rows[] = {4, 0, 4, 2};
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 3; ++j) CHECK(ev[r * 3 + j] == w[want_rows[r] * 3 + j]);
  // attend: [.., 3] -> [.., 5], logits_v = <h, W[v]>
  Tensor h = rand64({2, 3}, 21);
  auto hv = h.tolist<double>(), lv = emb.attend(h).tolist<double>();
  for (int r = 0; r < 2; ++r)
    for (int v = 0; v < 5; ++v) {
      double dot = 0;
      for (int j = 0; j < 3; ++j) dot += hv[r * 3 + j] * w[v * 3 + j];
      CHECK(lv[r * 5 + v] == doctest::Approx(dot).epsilon(1e-13));
    }
  // d sum(e) / dW: row v gets the number of times v appears.
  sum(e).backward();
  auto gw = emb.weight.grad().tolist<double>();
  const double count[] = {1, 0, 1, 0, 2};
  for (int v = 0; v < 5; ++v)
    for (int j = 0; j < 3; ++j) CHECK(gw[v * 3 + j] == count[v]);
  CHECK_THROWS(emb.forward(from_vector_i64({5}, {1})));  // out of range
}

// --- Norms --------------------------------------------------------------------------------------

TEST_CASE("RMSNorm and LayerNorm by hand; weights start at 1, bias at 0") {
  RMSNorm rms(2, 1e-6);
  rms.to(DType::f64);
  CHECK(rms.weight.tolist<double>() == std::vector<double>{1, 1});
  set_values(rms.weight, {2, -1});
  auto y = rms.forward(from_vector({3, 4}, {1, 2}, opts(DType::f64))).tolist<double>();
  const double r = 1 / std::sqrt(12.5 + 1e-6);  // mean(x^2) = (9 + 16) / 2
  CHECK(y[0] == doctest::Approx(3 * r * 2).epsilon(1e-14));
  CHECK(y[1] == doctest::Approx(4 * r * -1).epsilon(1e-14));

  LayerNorm ln(3, 1e-6);
  ln.to(DType::f64);
  CHECK(ln.bias.tolist<double>() == std::vector<double>{0, 0, 0});
  set_values(ln.weight, {1, 2, 3});
  set_values(ln.bias, {0.5, 0, -0.5});
  auto z = ln.forward(from_vector({1, 2, 3}, {3}, opts(DType::f64))).tolist<double>();
  const double s = 1 / std::sqrt(2.0 / 3.0 + 1e-6);  // biased variance of (1, 2, 3)
  CHECK(z[0] == doctest::Approx(-1 * s * 1 + 0.5).epsilon(1e-14));
  CHECK(z[1] == doctest::Approx(0.0));
  CHECK(z[2] == doctest::Approx(1 * s * 3 - 0.5).epsilon(1e-14));
  LayerNorm plain(3, 1e-6, /*affine=*/false);
  CHECK(plain.named_parameters().empty());
  CHECK_THROWS_AS(rms.forward(zeros({2, 3}, opts(DType::f64))), std::invalid_argument);
}

TEST_CASE("RMSNorm and LayerNorm: gradcheck (fp64)") {
  RMSNorm rms(4);
  LayerNorm ln(4);
  rms.to(DType::f64), ln.to(DType::f64);
  set_values(rms.weight, {1.5, -0.5, 2, 0.7});
  set_values(ln.weight, {0.5, 1, -2, 1.2});
  set_values(ln.bias, {0.1, 0.2, 0.3, 0.4});
  Tensor x = rand64({3, 4}, 22, true);
  auto r1 = gradcheck([&](const tensor_list& in) { return tensor_list{rms.forward(in[0])}; }, {x, rms.weight});
  CHECK_MESSAGE(r1.ok, r1.message);
  auto r2 = gradcheck([&](const tensor_list& in) { return tensor_list{ln.forward(in[0])}; }, {x, ln.weight, ln.bias});
  CHECK_MESSAGE(r2.ok, r2.message);
}
