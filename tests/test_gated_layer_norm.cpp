// tests/test_gated_layer_norm.cpp — gelu_tanh(g) · layer_norm(z, w, b) as one op
// (autograd/ops/gated_layer_norm.cpp, kernels/gated_layer_norm.h) and the TTT layer that uses it:
//   - the CPU reference kernels in float64 against the composite (layer_norm, gelu, mul)
//     differentiated by autograd: output and every gradient to 1e-12, with and without w / b, and
//     with only some gradients wanted;
//   - the op in float32 / bfloat16 (fused backward) against the float64 composite;
//   - create_graph through the op (composite fallback) against the composite's own;
//   - on a GPU (skipped without one): the CUDA kernels against the CPU reference with NaN-poisoned
//     outputs, and the op against the composite on the GPU.
// gradcheck / gradgradcheck in float64 are in the op table (tests/op_cases/nn_cases.cpp).
#include <doctest/doctest.h>

#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/gated_layer_norm.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using ttt::testing::check_close;

namespace {

Tensor composite(const Tensor& z, const Tensor& w, const Tensor& b, const Tensor& g, double eps) {
  return mul(gelu(g, true), layer_norm(z, w, b, eps));
}

struct Inputs {
  Tensor z, w, b, g, dy;
};
Inputs make_inputs(int64_t rows, int64_t cols, bool affine, DType dt, Generator& gen, Device dev = cpu()) {
  const auto leaf = [&](const Shape& s, double mean, double sd) {
    return randn(s, gen, opts(DType::f64), mean, sd).to(dt).to(dev).set_requires_grad(true);
  };
  Inputs in;
  in.z = leaf({rows, cols}, 0.3, 2.0);
  in.g = leaf({rows, cols}, 0.0, 1.5);
  if (affine) in.w = leaf({cols}, 1.0, 0.5), in.b = leaf({cols}, 0.0, 0.5);
  in.dy = randn({rows, cols}, gen, opts(DType::f64)).to(dt).to(dev);
  return in;
}

// y and the gradients of (z, w, b, g) (undefined where there is no w / b) of f on `in`.
tensor_list run(const Inputs& in, const std::function<Tensor(const Inputs&)>& f) {
  const Tensor y = f(in);
  tensor_list wrt = {in.z, in.g};
  if (in.w.defined()) wrt.insert(wrt.end(), {in.w, in.b});
  tensor_list g = grad({y}, wrt, {in.dy});
  return {y.detach(), g[0], g[1], in.w.defined() ? g[2] : Tensor(), in.w.defined() ? g[3] : Tensor()};
}

const char* kNames[] = {"y", "dz", "dg", "dw", "db"};

}  // namespace

TEST_CASE("gated_layer_norm CPU reference kernels in float64 = the composite differentiated by autograd") {
  Generator gen(1);
  for (int64_t cols : {1, 5, 64, 768})
    for (int64_t rows : {1, 3, 40})
      for (bool affine : {true, false}) {
        const std::string what = "cols " + std::to_string(cols) + " rows " + std::to_string(rows) +
                                 (affine ? " affine" : "");
        Inputs in = make_inputs(rows, cols, affine, DType::f64, gen);
        const tensor_list ref = run(in, [](const Inputs& x) { return composite(x.z, x.w, x.b, x.g, 1e-5); });
        // The kernels themselves (the op's float64 backward is the composite, so call them).
        GatedLayerNormForward f;
        f.rows = rows, f.cols = cols, f.dtype = DType::f64, f.eps = 1e-5;
        Tensor y = full({rows, cols}, NAN, opts(DType::f64)), mean = full({rows}, NAN, opts(DType::f32)),
               rstd = full({rows}, NAN, opts(DType::f32));
        f.z = in.z.data_ptr(), f.g = in.g.data_ptr();
        f.w = affine ? in.w.data_ptr() : nullptr, f.b = affine ? in.b.data_ptr() : nullptr;
        f.y = y.data_ptr(), f.mean = mean.data<float>(), f.rstd = rstd.data<float>();
        backend(cpu()).run(f);
        check_close(y, ref[0], {1e-12, 1e-12}, what + " y");
        // The backward reads the float32 statistics, so it is exact only to float32 in z's
        // normalisation: compare at 1e-6 (a wrong formula is off by O(1)); one column normalises
        // z − mean(z) = 0 to the mean's float32 rounding times rstd = 1/sqrt(eps).
        const double bt = cols == 1 ? 1e-4 : 1e-6;
        for (int wanted = 0; wanted < 2; ++wanted) {  // every gradient; then dg and db alone
          GatedLayerNormBackward k;
          k.rows = rows, k.cols = cols, k.dtype = DType::f64;
          k.dy = in.dy.data_ptr(), k.z = in.z.data_ptr(), k.g = in.g.data_ptr();
          k.w = f.w, k.b = f.b, k.mean = mean.data<float>(), k.rstd = rstd.data<float>();
          Tensor dz = full({rows, cols}, NAN, opts(DType::f64)), dg = full({rows, cols}, NAN, opts(DType::f64));
          Tensor dw = full({cols}, NAN, opts(DType::f32)), db = full({cols}, NAN, opts(DType::f32));
          k.dz = wanted == 0 ? dz.data_ptr() : nullptr;
          k.dg = dg.data_ptr();
          k.dw = wanted == 0 ? dw.data<float>() : nullptr;
          k.db = db.data<float>();
          backend(cpu()).run(k);
          check_close(dg, ref[2], {bt, bt}, what + " dg");
          if (wanted == 0) check_close(dz, ref[1], {10 * bt, 10 * bt}, what + " dz");
          if (affine) {
            if (wanted == 0) check_close(dw, ref[3], {10 * bt, bt}, what + " dw");
            check_close(db, ref[4], {10 * bt, bt}, what + " db");
          }
        }
      }
}

TEST_CASE("gated_layer_norm in float32 and bfloat16 (fused backward) = the float64 composite") {
  Generator gen(2);
  for (DType dt : {DType::f32, DType::bf16})
    for (bool affine : {true, false}) {
      Inputs in64 = make_inputs(37, 96, affine, DType::f64, gen), in = in64;
      const auto low = [&](const Tensor& t) { return t.defined() ? t.detach().to(dt).set_requires_grad(true) : t; };
      in = {low(in64.z), low(in64.w), low(in64.b), low(in64.g), in64.dy.to(dt)};
      // The float64 reference on the same (rounded) values.
      const auto wide = [](const Tensor& t) {
        return t.defined() ? t.detach().to(DType::f64).set_requires_grad(true) : t;
      };
      Inputs ref_in{wide(in.z), wide(in.w), wide(in.b), wide(in.g), in.dy.to(DType::f64)};
      const tensor_list ref = run(ref_in, [](const Inputs& x) { return composite(x.z, x.w, x.b, x.g, 1e-5); });
      const tensor_list got = run(in, [](const Inputs& x) { return gated_layer_norm(x.z, x.w, x.b, x.g, 1e-5); });
      const testing::Tol tol = dt == DType::f32 ? testing::Tol{2e-5, 2e-5} : testing::Tol{3e-2, 2e-2};
      for (int i = 0; i < 5; ++i) {
        if (!ref[i].defined()) continue;
        // dw, db sum 37 rows: their absolute error grows with it.
        const testing::Tol t = i >= 3 ? testing::Tol{tol.atol * 10, tol.rtol} : tol;
        check_close(got[i], ref[i], t, std::string(dtype_name(dt)) + (affine ? " affine " : " ") + kNames[i]);
      }
    }
}

TEST_CASE("gated_layer_norm with create_graph: second derivatives equal the composite's") {
  Generator gen(3);
  Inputs in = make_inputs(4, 6, true, DType::f64, gen);
  const Tensor v = randn({4, 6}, gen, opts(DType::f64));
  tensor_list second[2];
  for (int fused = 0; fused < 2; ++fused) {
    Tensor y = fused ? gated_layer_norm(in.z, in.w, in.b, in.g) : composite(in.z, in.w, in.b, in.g, 1e-5);
    tensor_list g1 = grad({y}, {in.z, in.g}, {in.dy}, std::nullopt, true);
    second[fused] = grad({add(sum(mul(g1[0], v)), sum(mul(g1[1], g1[1])))}, {in.z, in.w, in.b, in.g});
  }
  for (int i = 0; i < 4; ++i)
    check_close(second[1][i], second[0][i], {1e-12, 1e-10}, "second derivative " + std::to_string(i));
}

TEST_CASE("gated_layer_norm errors name the op and the shapes") {
  const auto msg_of = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const Tensor z = zeros({2, 3}), g = zeros({2, 3});
  CHECK(msg_of([&] { gated_layer_norm(z, Tensor(), Tensor(), zeros({3, 2})); }).find("[3, 2]") != std::string::npos);
  CHECK(msg_of([&] { gated_layer_norm(z, zeros({2}), Tensor(), g); }).find("weight must have shape [3]") !=
        std::string::npos);
  CHECK(msg_of([&] { gated_layer_norm(z, Tensor(), Tensor(), g.to(DType::f64)); }).find("gated_layer_norm") !=
        std::string::npos);
}

// --- CUDA -------------------------------------------------------------------------------------------

TEST_CASE("cuda gated_layer_norm kernels = CPU reference (poisoned outputs), forward and backward") {
  TTT_REQUIRE_GPU();
  using namespace ttt::cudatest;
  Generator gen(6);
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t cols : {1, 7, 768, 4099})
      for (int64_t rows : {1, 65, 1000})
        for (bool affine : {false, true}) {
          const std::string what = std::string("gated_layer_norm ") + dname(dt) + " cols " + std::to_string(cols) +
                                   " rows " + std::to_string(rows) + (affine ? " affine" : "");
          Pair z = random_pair({rows, cols}, dt, gen, -2, 3), g = random_pair({rows, cols}, dt, gen, -3, 3),
               w = random_pair({cols}, dt, gen, 0.5, 1.5), b = random_pair({cols}, dt, gen, -0.5, 0.5);
          Pair y = poisoned({rows, cols}, dt), mean = poisoned({rows}, DType::f32), rstd = poisoned({rows}, DType::f32);
          for (int dev = 0; dev < 2; ++dev) {
            auto p = [&](const Pair& t) { return (dev ? t.g : t.c).data_ptr(); };
            GatedLayerNormForward k;
            k.rows = rows, k.cols = cols, k.dtype = dt, k.eps = 1e-5;
            k.z = p(z), k.g = p(g), k.w = affine ? p(w) : nullptr, k.b = affine ? p(b) : nullptr;
            k.y = p(y), k.mean = static_cast<float*>(p(mean)), k.rstd = static_cast<float*>(p(rstd));
            (dev ? gpu_be() : cpu_be()).run(k);
          }
          Tol ty = tol_for(dt);
          if (dt == DType::f32) ty = {1e-4, 1e-4};  // rstd up to 1/sqrt(eps) when cols == 1
          expect_close(y, ty, what + " y");
          expect_close(mean, {1e-5, 1e-5}, what + " mean");
          expect_close(rstd, {1e-5, 1e-5}, what + " rstd");
          // Backward from the CPU's statistics on both devices: every output, then dg and db alone.
          Pair mean_in{mean.c, mean.c.to(cuda())}, rstd_in{rstd.c, rstd.c.to(cuda())};
          Pair dy = random_pair({rows, cols}, dt, gen);
          for (bool all : {true, false}) {
            Pair dz = poisoned({rows, cols}, dt), dg = poisoned({rows, cols}, dt), dw = poisoned({cols}, DType::f32),
                 db = poisoned({cols}, DType::f32);
            for (int dev = 0; dev < 2; ++dev) {
              auto p = [&](const Pair& t) { return (dev ? t.g : t.c).data_ptr(); };
              GatedLayerNormBackward k;
              k.rows = rows, k.cols = cols, k.dtype = dt;
              k.dy = p(dy), k.z = p(z), k.g = p(g), k.w = affine ? p(w) : nullptr, k.b = affine ? p(b) : nullptr;
              k.mean = static_cast<const float*>(p(mean_in)), k.rstd = static_cast<const float*>(p(rstd_in));
              k.dz = all ? p(dz) : nullptr, k.dg = p(dg);
              k.dw = all ? static_cast<float*>(p(dw)) : nullptr, k.db = static_cast<float*>(p(db));
              (dev ? gpu_be() : cpu_be()).run(k);
            }
            Tol tx = tol_for(dt);
            if (dt == DType::f32) tx = {1e-4, 1e-4};
            if (all) expect_close(dz, tx, what + " dz");
            expect_close(dg, tx, what + (all ? " dg" : " dg alone"));
            const double sr = std::sqrt(static_cast<double>(rows));
            if (all) expect_close(dw, {2e-5 * sr, 1e-4}, what + " dw");
            expect_close(db, {2e-5 * sr, 1e-4}, what + " db");
          }
        }
}

TEST_CASE("cuda gated_layer_norm op = the composite on the GPU") {
  TTT_REQUIRE_GPU();
  Generator gen(7);
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t cols : {7, 768})
      for (bool affine : {true, false}) {
        Inputs in = make_inputs(129, cols, affine, dt, gen, cuda());
        const tensor_list ref = run(in, [](const Inputs& x) { return composite(x.z, x.w, x.b, x.g, 1e-5); });
        const tensor_list got = run(in, [](const Inputs& x) { return gated_layer_norm(x.z, x.w, x.b, x.g, 1e-5); });
        // The composite rounds LN(z) and gelu(g) to the dtype before the product; the kernel not.
        const testing::Tol tol = dt == DType::f32 ? testing::Tol{1e-4, 1e-4} : testing::Tol{5e-2, 3e-2};
        for (int i = 0; i < 5; ++i) {
          if (!ref[i].defined()) continue;
          const testing::Tol t = i >= 3 ? testing::Tol{tol.atol * 20, tol.rtol} : tol;
          check_close(got[i].to(cpu()), ref[i].to(cpu()), t,
                      std::string("cuda ") + dtype_name(dt) + " cols " + std::to_string(cols) + " " + kNames[i]);
        }
      }
}

TEST_CASE("gated_layer_norm of bf16 z and gate with float32 weight and bias = the op on the bf16-cast parameters; dw, db float32") {
  Generator gen(77);
  const Inputs lo = make_inputs(9, 40, true, DType::bf16, gen);
  Inputs mixed = lo;
  mixed.w = lo.w.detach().to(DType::f32).set_requires_grad(true);
  mixed.b = lo.b.detach().to(DType::f32).set_requires_grad(true);
  const auto op = [](const Inputs& in) { return gated_layer_norm(in.z, in.w, in.b, in.g, 1e-5); };
  const tensor_list a = run(mixed, op), b = run(lo, op);
  CHECK(a[3].dtype() == DType::f32);
  CHECK(a[4].dtype() == DType::f32);
  for (int i = 0; i < 5; ++i) {
    CAPTURE(kNames[i]);
    // dw, db: the kernel's float32 sums, rounded to bf16 only in the all-bf16 call.
    const Tensor got = i >= 3 ? a[i].to(DType::bf16) : a[i];
    CHECK(max(abs(sub(got.to(DType::f32), b[i].to(DType::f32)))).item() == 0.0);
  }
  // create_graph falls back to the composite on the same values; the parameter grads stay float32.
  const tensor_list gg = grad({op(mixed)}, {mixed.w, mixed.b}, {mixed.dy}, std::nullopt, true);
  CHECK(gg[0].dtype() == DType::f32);
  check_close(gg[0], a[3], {2e-2, 2e-2}, "create_graph dw");
  check_close(gg[1], a[4], {2e-2, 2e-2}, "create_graph db");
}
