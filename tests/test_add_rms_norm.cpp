// tests/test_add_rms_norm.cpp — the fused residual add + RMSNorm (autograd/ops/add_rms_norm.cpp,
// kernels/add_rms_norm.h) and the blocks that use it (layers/block.h):
//   - gradcheck and gradgradcheck in float64, with and without a weight;
//   - the op against add + rms_norm: outputs, rstd-dependent outputs and every gradient bit for bit
//     in float32 and bfloat16 (the same roundings and arithmetic), and one gradient tensor for h and y;
//   - the composite backward (create_graph) against the fused one;
//   - two blocks and the final norm (both backbones, float32 and bf16 autocast) against the same
//     modules run with separate adds and norms: logits and every gradient bit for bit;
//   - on a GPU (skipped without one): the CUDA kernels against the CPU reference with NaN-poisoned
//     outputs, and the fused op against add + rms_norm on the GPU bit for bit.
#include <doctest/doctest.h>

#include <bit>
#include <cstring>
#include <string>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "kernels/add_rms_norm.h"
#include "layers/block.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"
#include "tests/profile_count.h"

using namespace ttt;

namespace {

// Every element has the same bits (read as float64, which float32 and bfloat16 convert to exactly;
// +0 and -0 differ, NaNs must both be NaN).
void check_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.dtype() == b.dtype());
  const std::vector<double> x = a.to(cpu()).tolist<double>(), y = b.to(cpu()).tolist<double>();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool same = (std::isnan(x[i]) && std::isnan(y[i])) || std::bit_cast<uint64_t>(x[i]) == std::bit_cast<uint64_t>(y[i]);
    if (!same && bad++ == 0) first = i;
  }
  INFO(what, ": ", bad, " of ", x.size(), " elements differ; first at ", first, ": ", (bad ? x[first] : 0.0),
       " vs ", (bad ? y[first] : 0.0));
  CHECK(bad == 0);
}

Tensor leaf(const Shape& s, Generator& g, DType dt, Device dev = cpu(), double mean = 0) {
  return randn(s, g, opts(DType::f32), mean, 1.0).to(dt).to(dev).set_requires_grad(true);
}

// The op and the unfused add + rms_norm on the same inputs and output gradients: s, n and the
// gradients of h, y, w must be identical, and the op hands one tensor to h and y.
void check_against_unfused(const Tensor& h, const Tensor& y, const Tensor& w, const Tensor& ds, const Tensor& dn,
                           double eps, const std::string& what) {
  const tensor_list fused = add_rms_norm(h, y, w, eps);
  const Tensor s_ref = add(h, y), n_ref = rms_norm(s_ref, w, eps);
  check_identical(fused[0], s_ref, what + " s");
  check_identical(fused[1], n_ref, what + " n");
  tensor_list inputs = {h, y};
  if (w.defined()) inputs.push_back(w);
  const tensor_list g = grad(fused, inputs, {ds, dn});
  const tensor_list g_ref = grad({s_ref, n_ref}, inputs, {ds, dn});
  check_identical(g[0], g_ref[0], what + " dh");
  check_identical(g[1], g_ref[1], what + " dy");
  if (w.defined()) check_identical(g[2], g_ref[2], what + " dw");
  CHECK(g[0].data_ptr() == g[1].data_ptr());  // one gradient tensor for both inputs
}

}  // namespace

TEST_CASE("add_rms_norm: gradcheck and gradgradcheck in float64, with and without weight") {
  Generator g(1);
  const tensor_list with_w = {leaf({2, 3, 5}, g, DType::f64), leaf({2, 3, 5}, g, DType::f64),
                              leaf({5}, g, DType::f64, cpu(), 1.0)};
  const tensor_list without_w = {leaf({4, 6}, g, DType::f64), leaf({4, 6}, g, DType::f64)};
  auto fn = [](const tensor_list& x) { return add_rms_norm(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), 1e-6); };
  for (const tensor_list* in : {&with_w, &without_w}) {
    const std::string what = in->size() > 2 ? "with weight" : "without weight";
    GradcheckResult r1 = gradcheck(fn, *in);
    INFO(what, " gradcheck: ", r1.message);
    CHECK(r1.ok);
    GradcheckResult r2 = gradgradcheck(fn, *in);
    INFO(what, " gradgradcheck: ", r2.message);
    CHECK(r2.ok);
  }
}

TEST_CASE("add_rms_norm equals add + rms_norm bit for bit (float32, bfloat16; weight or none)") {
  for (DType dt : {DType::f32, DType::bf16})
    for (bool weighted : {true, false})
      for (int64_t cols : {7, 64}) {  // not a multiple of a vector, and one that is
        Generator g(2);
        const Shape s = {3, 5, cols};
        Tensor h = leaf(s, g, dt), y = leaf(s, g, dt), w = weighted ? leaf({cols}, g, dt, cpu(), 1.0) : Tensor();
        Tensor ds = randn(s, g, opts(DType::f32)).to(dt), dn = randn(s, g, opts(DType::f32)).to(dt);
        check_against_unfused(h, y, w, ds, dn, 1e-6,
                              std::string(dtype_name(dt)) + (weighted ? " weight" : " no weight") + " cols " +
                                  std::to_string(cols));
      }
}

TEST_CASE("add_rms_norm: fused backward = composite backward (create_graph), float64 forward = formula") {
  Generator g(3);
  for (DType dt : {DType::f32, DType::f64}) {
    const Shape s = {6, 40};
    Tensor h = leaf(s, g, dt), y = leaf(s, g, dt), w = leaf({40}, g, dt, cpu(), 1.0);
    Tensor ds = randn(s, g, opts(dt)), dn = randn(s, g, opts(dt));
    const testing::Tol tol = dt == DType::f64 ? testing::Tol{1e-12, 1e-10} : testing::Tol{2e-5, 1e-4};
    {
      NoGradGuard ng;
      Tensor sum = add(h, y);
      Tensor ref = mul(mul(sum, rsqrt(add_scalar(mean(square(sum), {-1}, true), 1e-5))), w);
      testing::check_close(add_rms_norm(h, y, w, 1e-5)[1], ref, tol, std::string(dtype_name(dt)) + " n = formula");
    }
    const tensor_list fused = grad(add_rms_norm(h, y, w, 1e-5), {h, y, w}, {ds, dn});
    const tensor_list comp = grad(add_rms_norm(h, y, w, 1e-5), {h, y, w}, {ds, dn}, true, true);
    for (int i = 0; i < 3; ++i)
      testing::check_close(fused[i], comp[i], tol, std::string(dtype_name(dt)) + " gradient " + std::to_string(i));
  }
}

TEST_CASE("add_rms_norm: only the requested gradients; empty rows; bad inputs are clear errors") {
  Generator g(4);
  Tensor h = leaf({3, 8}, g, DType::f32), y = leaf({3, 8}, g, DType::f32), w = leaf({8}, g, DType::f32);
  const tensor_list out = add_rms_norm(h, y, w);
  const Tensor dn = randn({3, 8}, g, opts(DType::f32));
  // dw alone (the fused kernel without dsum) equals dw of the unfused ops.
  const tensor_list dw = grad({out[1]}, {w}, {dn});
  const tensor_list dw_ref = grad({rms_norm(add(h, y), w)}, {w}, {dn});
  check_identical(dw[0], dw_ref[0], "dw alone");
  // Zero rows: empty outputs, a zero weight gradient.
  Tensor h0 = leaf({0, 8}, g, DType::f32), y0 = leaf({0, 8}, g, DType::f32);
  const tensor_list e = add_rms_norm(h0, y0, w);
  CHECK(e[0].shape() == Shape{0, 8});
  const tensor_list ge = grad({e[1]}, {h0, w}, {zeros({0, 8})});
  CHECK(ge[1].tolist<float>() == std::vector<float>(8, 0.0f));

  auto throws_with = [](auto&& f, const std::string& part) {
    try {
      f();
      FAIL("no exception");
    } catch (const std::invalid_argument& ex) {
      INFO(ex.what());
      CHECK(std::string(ex.what()).find(part) != std::string::npos);
    }
  };
  throws_with([&] { add_rms_norm(h, zeros({3, 7}), w); }, "same shape");
  throws_with([&] { add_rms_norm(h, y.detach().to(DType::bf16), w); }, "add_rms_norm");
  throws_with([&] { add_rms_norm(h, y, zeros({7})); }, "weight must have shape [8]");
}

namespace {

// Block::forward as it was before the fusion: separate adds and norms.
Tensor unfused_block(Block& b, Tensor h) {
  if (b.pre_conv) h = add(h, b.pre_conv->forward(b.pre_conv_norm->forward(h)));
  h = add(h, b.mixer->forward(b.seq_norm->forward(h)));
  return b.mlp ? add(h, b.mlp->forward(b.ffn_norm->forward(h))) : h;
}

}  // namespace

TEST_CASE("blocks with fused residual norms = separate adds and norms, bit for bit (both backbones)") {
  for (std::string backbone : {"transformer", "mamba"})
    for (int64_t d_ff : {24, 0})
      for (bool autocast : {false, true}) {
        ModelConfig c;
        c.d_model = 16;
        c.n_heads = 2;
        c.d_ff = d_ff;
        c.mixer = "attention";
        c.backbone = backbone;
        c.init_std = 0.2;
        Generator gen(5);
        std::vector<std::shared_ptr<Block>> blocks = {std::make_shared<Block>(c, gen), std::make_shared<Block>(c, gen)};
        RMSNorm final_norm(c.d_model, c.norm_eps);
        {
          NoGradGuard ng;  // a weight other than ones
          final_norm.weight.copy_(rand({c.d_model}, gen, opts(DType::f32), 0.5, 1.5));
        }
        const Tensor x = randn({2, 9, c.d_model}, gen, opts(DType::f32)).set_requires_grad(true);
        const Tensor dout = randn({2, 9, c.d_model}, gen, opts(DType::f32));
        tensor_list params = {x, final_norm.weight};
        for (auto& b : blocks)
          for (const Tensor& p : b->parameters()) params.push_back(p);

        AutocastGuard ac(DType::bf16, autocast);
        Residual r{x};
        for (auto& b : blocks) r = b->forward(std::move(r));
        const Tensor out = r.normalized(final_norm);
        Tensor h = x;
        for (auto& b : blocks) h = unfused_block(*b, h);
        const Tensor out_ref = final_norm.forward(h);

        const std::string what = backbone + " d_ff " + std::to_string(d_ff) + (autocast ? " autocast" : "");
        check_identical(out, out_ref, what + " output");
        const tensor_list g = grad({out}, params, {dout});
        const tensor_list g_ref = grad({out_ref}, params, {dout});
        for (size_t i = 0; i < params.size(); ++i) check_identical(g[i], g_ref[i], what + " gradient " + std::to_string(i));
      }
}

// --- CUDA -------------------------------------------------------------------------------------------

TEST_CASE("add_rms_norm under bf16 autocast: n's bf16 copy serves the products that read n") {
  // The op writes n's bf16 rounding in the same pass and records it as n's cast: a product of n (as
  // [B, T, C] or reshaped to [B·T, C]) then makes no cast of its own, and multiplies exactly the
  // values a cast would have given; with grad mode on too.
  Generator g(12);
  const Tensor h = randn({2, 5, 16}, g, opts(DType::f32)), y = randn({2, 5, 16}, g, opts(DType::f32));
  const Tensor w = randn({16}, g, opts(DType::f32), 1.0, 0.1), m = randn({16, 8}, g, opts(DType::f32)).to(DType::bf16);
  AutocastGuard ac(DType::bf16);
  {
    NoGradGuard ng;
    const Tensor n = add_rms_norm(h, y, w, 1e-6)[1];
    const Tensor seeded = Autocast::cached_cast(n, DType::bf16);
    check_identical(seeded, n.to(DType::bf16), "recorded cast");
    Tensor p3, p2;
    CHECK(testing::backend_calls([&] { p3 = matmul(n, m); }, "unary copy") == 0);
    CHECK(testing::backend_calls([&] { p2 = matmul(reshape(n, {10, 16}), m); }, "unary copy") == 0);
    check_identical(p2, matmul(n.to(DType::bf16).to(DType::f32).reshape({10, 16}), m.to(DType::f32)).to(p2.dtype()),
                    "product");
    check_identical(reshape(p3, {10, 8}), p2, "product of the [B, T, C] view");
  }
  // Grad mode on (training): the same, and the product's gradient reaches h exactly as through a cast
  // of its own (add then rms_norm: the same values, no recorded cast, so the product casts).
  const Tensor hg = h.detach().set_requires_grad(true), hr = h.detach().set_requires_grad(true);
  const Tensor n = add_rms_norm(hg, y, w, 1e-6)[1], nr = rms_norm(add(hr, y), w, 1e-6);
  Tensor p, pr;
  CHECK(testing::backend_calls([&] { p = matmul(n, m); }, "unary copy") == 0);
  CHECK(testing::backend_calls([&] { pr = matmul(nr, m); }, "unary copy") == 1);
  check_identical(p, pr, "product, grad mode on");
  const Tensor dp = randn(p.shape(), g, opts(p.dtype()));
  check_identical(grad({p}, {hg}, {dp})[0], grad({pr}, {hr}, {dp})[0], "gradient through the recorded cast");
}

TEST_CASE("cuda add_rms_norm kernels = CPU reference (poisoned outputs), forward and backward") {
  TTT_REQUIRE_GPU();
  using namespace ttt::cudatest;
  Generator gen(6);
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t cols : {1, 7, 768, 4099})
      for (int64_t rows : {1, 65, 1000})
        for (bool weighted : {false, true}) {
          const std::string what = std::string("add_rms_norm ") + dname(dt) + " cols " + std::to_string(cols) +
                                   " rows " + std::to_string(rows) + (weighted ? " weight" : "");
          Pair h = random_pair({rows, cols}, dt, gen, -2, 3), y = random_pair({rows, cols}, dt, gen, -1, 1),
               w = random_pair({cols}, dt, gen, 0.5, 1.5);
          Pair s = poisoned({rows, cols}, dt), n = poisoned({rows, cols}, dt), rstd = poisoned({rows}, DType::f32);
          Pair n_low = poisoned({rows, cols}, DType::bf16);
          for (int dev = 0; dev < 2; ++dev) {
            auto p = [&](const Pair& t) { return (dev ? t.g : t.c).data_ptr(); };
            AddRmsNormForward k;
            k.rows = rows;
            k.cols = cols;
            k.dtype = dt;
            k.eps = 1e-5;
            k.h = p(h);
            k.y = p(y);
            k.w = weighted ? p(w) : nullptr;
            k.s = p(s);
            k.n = p(n);
            k.rstd = static_cast<float*>(p(rstd));
            if (dt == DType::f32) k.n_low = p(n_low);
            (dev ? gpu_be() : cpu_be()).run(k);
          }
          // n's bf16 rounding, written beside it: on each device, exactly its own n cast.
          if (dt == DType::f32) {
            check_identical(n_low.c, n.c.to(DType::bf16), what + " n_low (CPU)");
            check_identical(n_low.g, n.g.to(DType::bf16), what + " n_low (CUDA)");
          }
          // The sum is one rounding of h + y on both devices: identical.
          check_identical(s.g, s.c, what + " s");
          expect_close(n, tol_for(dt), what + " n");
          expect_close(rstd, {1e-5, 1e-5}, what + " rstd");
          // Backward from the CPU's s and rstd on both devices; once with dsum, once dw alone.
          Pair s_in{s.c, s.c.to(cuda())}, rstd_in{rstd.c, rstd.c.to(cuda())};
          Pair ds = random_pair({rows, cols}, dt, gen), dn = random_pair({rows, cols}, dt, gen);
          for (bool with_dsum : {true, false}) {
            Pair dsum = poisoned({rows, cols}, dt), dw = poisoned({cols}, DType::f32);
            for (int dev = 0; dev < 2; ++dev) {
              auto p = [&](const Pair& t) { return (dev ? t.g : t.c).data_ptr(); };
              AddRmsNormBackward k;
              k.rows = rows;
              k.cols = cols;
              k.dtype = dt;
              k.ds = p(ds);
              k.dn = p(dn);
              k.s = p(s_in);
              k.rstd = static_cast<const float*>(p(rstd_in));
              k.w = weighted ? p(w) : nullptr;
              k.dsum = with_dsum ? p(dsum) : nullptr;
              k.dw = static_cast<float*>(p(dw));
              (dev ? gpu_be() : cpu_be()).run(k);
            }
            Tol tx = tol_for(dt);
            if (dt == DType::f32) tx = {1e-4, 1e-4};  // rstd up to 1/sqrt(eps) when cols == 1
            if (with_dsum) expect_close(dsum, tx, what + " dsum");
            const double sr = std::sqrt(static_cast<double>(rows));
            expect_close(dw, {2e-6 * sr, 1e-5}, what + (with_dsum ? " dw" : " dw alone"));
          }
        }
}

TEST_CASE("cuda add_rms_norm op = add + rms_norm on the GPU, bit for bit") {
  TTT_REQUIRE_GPU();
  Generator g(7);
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t cols : {7, 768, 1000})
      for (int64_t rows : {65, 1000})
        for (bool weighted : {true, false}) {
          const Shape s = {rows, cols};
          Tensor h = leaf(s, g, dt, cuda()), y = leaf(s, g, dt, cuda());
          Tensor w = weighted ? leaf({cols}, g, dt, cuda(), 1.0) : Tensor();
          Tensor ds = randn(s, g, opts(DType::f32)).to(dt).to(cuda()), dn = randn(s, g, opts(DType::f32)).to(dt).to(cuda());
          check_against_unfused(h, y, w, ds, dn, 1e-6,
                                std::string("cuda ") + dtype_name(dt) + " cols " + std::to_string(cols) + " rows " +
                                    std::to_string(rows) + (weighted ? " weight" : ""));
        }
}
