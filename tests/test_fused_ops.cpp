// tests/test_fused_ops.cpp — the fused kernels against the composite formulas they replace:
// softmax, log-softmax, LayerNorm, RMSNorm, cross-entropy, SwiGLU's gate (layers/rope.h's fused
// RoPE against its composite: tests/test_layers_basic.cpp).
//
// For each op and dtype (float64, float32):
//   forward:  the op (fused kernel) vs the formula written here with primitive ops;
//   backward: grad() under ordinary backward (fused backward kernel) vs grad(create_graph=true),
//             which runs the op's differentiable composite backward.
// The op routes float64 around the norms' backward and cross-entropy kernels (they keep float32
// statistics), so in float64 those kernels are called directly through the backend instead,
// with tolerances for float32 statistics. Every comparison is |a - ref| <= atol + rtol |ref|.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tests/check_close.h"

using namespace ttt;
using ttt::testing::check_close;
using ttt::testing::Tol;

namespace {

Tol tol_for(DType dt) { return dt == DType::f64 ? Tol{1e-12, 1e-10} : Tol{2e-5, 1e-4}; }
const Tol kF32Stats{1e-6, 1e-5};  // float64 data through kernels that store float32 statistics

using Fn = std::function<Tensor(const tensor_list&)>;

// Gradients of sum(fn(inputs) * w) for a fixed random w: under ordinary backward (fused) and
// with create_graph (composite).
struct BothPaths {
  tensor_list fused, composite;
};
BothPaths gradients(const Fn& fn, const tensor_list& inputs, uint64_t seed) {
  Tensor y = fn(inputs);
  Generator g(seed);
  Tensor w = randn(y.shape(), g, opts(y.dtype()));
  BothPaths r;
  r.fused = grad({y}, inputs, {w}, false, false);
  r.composite = grad({fn(inputs)}, inputs, {w}, true, true);
  return r;
}

void check_paths(const Fn& fn, const Fn& ref, const tensor_list& inputs, const std::string& name) {
  const DType dt = inputs[0].dtype();
  const Tol t = tol_for(dt);
  const std::string tag = name + " " + dtype_name(dt);
  {
    NoGradGuard ng;
    check_close(fn(inputs), ref(inputs), t, tag + " forward");
  }
  BothPaths p = gradients(fn, inputs, 7);
  for (size_t i = 0; i < inputs.size(); ++i)
    check_close(p.fused[i], p.composite[i], t, tag + " gradient of input " + std::to_string(i));
}

Tensor leaf(const Shape& s, Generator& g, DType dt) { return randn(s, g, opts(dt)).set_requires_grad(true); }

// --- reference forwards from primitive ops ----------------------------------------------------
Tensor logsumexp_ref(const Tensor& x, int64_t dim) {
  Tensor m = max(x, {dim}, true).detach();
  return add(m, log(sum(exp(sub(x, m)), {dim}, true)));
}
Tensor layer_norm_ref(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  Tensor xc = sub(x, mean(x, {-1}, true));
  return add(mul(mul(xc, rsqrt(add_scalar(mean(square(xc), {-1}, true), eps))), w), b);
}
Tensor rms_norm_ref(const Tensor& x, const Tensor& w, double eps) {
  return mul(mul(x, rsqrt(add_scalar(mean(square(x), {-1}, true), eps))), w);
}
// Per-row losses logsumexp(x_r) - x_r[t_r], 0 for ignored rows; one-hot rows built on the host.
Tensor cross_entropy_rows_ref(const Tensor& x, const std::vector<int64_t>& t, int64_t ignore) {
  const int64_t rows = x.shape()[0], classes = x.shape()[1];
  std::vector<double> onehot(static_cast<size_t>(rows * classes), 0.0), valid(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] != ignore) {
      onehot[r * classes + t[r]] = 1.0;
      valid[r] = 1.0;
    }
  Tensor oh = from_vector(onehot, {rows, classes}, opts(x.dtype()));
  Tensor lse = squeeze(logsumexp_ref(x, -1), -1);
  return mul(sub(lse, sum(mul(x, oh), {-1})), from_vector(valid, {rows}, opts(x.dtype())));
}

// Targets in [0, classes) with every third one set to `ignore`.
std::vector<int64_t> make_targets(int64_t rows, int64_t classes, int64_t ignore, Generator& g) {
  std::vector<int64_t> t;
  for (double u : rand({rows}, g, opts(DType::f64), 0, static_cast<double>(classes)).tolist<double>())
    t.push_back(std::min<int64_t>(classes - 1, static_cast<int64_t>(u)));
  for (size_t i = 0; i < t.size(); i += 3) t[i] = ignore;
  return t;
}

}  // namespace

TEST_CASE("softmax and log_softmax: fused kernels = composite formulas") {
  for (DType dt : {DType::f64, DType::f32}) {
    Generator g(1);
    for (bool log_form : {false, true}) {
      const char* name = log_form ? "log_softmax" : "softmax";
      auto op = [log_form](int64_t dim) {
        return [log_form, dim](const tensor_list& x) { return log_form ? log_softmax(x[0], dim) : softmax(x[0], dim); };
      };
      auto ref = [log_form](int64_t dim) {
        return [log_form, dim](const tensor_list& x) {
          Tensor z = sub(x[0], logsumexp_ref(x[0], dim));
          return log_form ? z : exp(z);
        };
      };
      // Rows wider than a vector register and not a multiple of one; then a non-last dim.
      check_paths(op(-1), ref(-1), {leaf({7, 67}, g, dt)}, std::string(name) + " [7,67] dim -1");
      check_paths(op(1), ref(1), {leaf({3, 19, 5}, g, dt)}, std::string(name) + " [3,19,5] dim 1");
    }
  }
}

TEST_CASE("layer_norm and rms_norm: fused kernels = composite formulas") {
  const double eps = 1e-5;
  for (DType dt : {DType::f64, DType::f32}) {
    Generator g(2);
    tensor_list ln_in = {leaf({4, 5, 48}, g, dt), leaf({48}, g, dt), leaf({48}, g, dt)};
    check_paths([eps](const tensor_list& x) { return layer_norm(x[0], x[1], x[2], eps); },
                [eps](const tensor_list& x) { return layer_norm_ref(x[0], x[1], x[2], eps); }, ln_in, "layer_norm");
    tensor_list rms_in = {leaf({6, 40}, g, dt), leaf({40}, g, dt)};
    check_paths([eps](const tensor_list& x) { return rms_norm(x[0], x[1], eps); },
                [eps](const tensor_list& x) { return rms_norm_ref(x[0], x[1], eps); }, rms_in, "rms_norm");
  }
}

TEST_CASE("cross_entropy: fused kernels = composite formulas (mean with ignore_index, sum, none)") {
  const int64_t rows = 12, classes = 37, ignore = -100;
  for (DType dt : {DType::f64, DType::f32}) {
    Generator g(3);
    std::vector<int64_t> t = make_targets(rows, classes, ignore, g);
    Tensor tg = from_vector_i64(t, {rows});
    const double n_valid = static_cast<double>(rows - (rows + 2) / 3);
    for (std::string red : {"mean", "sum", "none"}) {
      auto op = [tg, red](const tensor_list& x) { return cross_entropy(x[0], tg, ignore, red); };
      auto ref = [t, red, n_valid](const tensor_list& x) {
        Tensor l = cross_entropy_rows_ref(x[0], t, ignore);
        return red == "none" ? l : red == "sum" ? sum(l) : div_scalar(sum(l), n_valid);
      };
      check_paths(op, ref, {leaf({rows, classes}, g, dt)}, "cross_entropy " + red);
    }
  }
}

TEST_CASE("swiglu: fused kernels = silu(a) * b") {
  for (DType dt : {DType::f64, DType::f32}) {
    Generator g(5);
    // A strided b (transposed view) too: the kernels take any strides.
    check_paths([](const tensor_list& x) { return swiglu(x[0], x[1]); },
                [](const tensor_list& x) { return mul(silu(x[0]), x[1]); }, {leaf({13, 9}, g, dt), leaf({13, 9}, g, dt)},
                "swiglu");
    Tensor b_base = leaf({9, 13}, g, dt);
    check_paths([](const tensor_list& x) { return swiglu(x[0], transpose(x[1], 0, 1)); },
                [](const tensor_list& x) { return mul(silu(x[0]), transpose(x[1], 0, 1)); },
                {leaf({13, 9}, g, dt), b_base}, "swiglu, transposed b");
  }
}

// float64 through the kernels the ops route float64 around: direct backend calls.
TEST_CASE("float64 through the norm and cross-entropy kernels (float32 statistics)") {
  const int64_t rows = 9, cols = 33;
  const double eps = 1e-5;
  Generator g(4);
  Tensor x = leaf({rows, cols}, g, DType::f64), w = leaf({cols}, g, DType::f64), b = leaf({cols}, g, DType::f64);
  Tensor dy = randn({rows, cols}, g, opts(DType::f64));
  Backend& be = backend(cpu());
  Tensor mean_t = empty({rows}, opts(DType::f32)), rstd_t = empty({rows}, opts(DType::f32));
  Tensor dx = empty({rows, cols}, opts(DType::f64));
  Tensor dw = empty({cols}, opts(DType::f32)), db = empty({cols}, opts(DType::f32));

  SUBCASE("layer_norm") {
    Tensor y = empty({rows, cols}, opts(DType::f64));
    be.layer_norm_fwd(y.data_ptr(), mean_t.data<float>(), rstd_t.data<float>(), x.data_ptr(), w.data_ptr(),
                      b.data_ptr(), rows, cols, eps, DType::f64);
    be.layer_norm_bwd(dx.data_ptr(), dw.data<float>(), db.data<float>(), dy.data_ptr(), x.data_ptr(),
                      mean_t.data<float>(), rstd_t.data<float>(), w.data_ptr(), rows, cols, DType::f64);
    tensor_list ref = grad({layer_norm(x, w, b, eps)}, {x, w, b}, {dy});  // float64: composite
    check_close(y, layer_norm_ref(x, w, b, eps).detach(), tol_for(DType::f64), "layer_norm forward");
    check_close(dx, ref[0], kF32Stats, "layer_norm dx");
    check_close(dw, ref[1], kF32Stats, "layer_norm dw");
    check_close(db, ref[2], kF32Stats, "layer_norm db");
  }
  SUBCASE("rms_norm") {
    Tensor y = empty({rows, cols}, opts(DType::f64));
    be.rms_norm_fwd(y.data_ptr(), rstd_t.data<float>(), x.data_ptr(), w.data_ptr(), rows, cols, eps, DType::f64);
    be.rms_norm_bwd(dx.data_ptr(), dw.data<float>(), dy.data_ptr(), x.data_ptr(), rstd_t.data<float>(),
                    w.data_ptr(), rows, cols, DType::f64);
    tensor_list ref = grad({rms_norm(x, w, eps)}, {x, w}, {dy});
    check_close(y, rms_norm_ref(x, w, eps).detach(), tol_for(DType::f64), "rms_norm forward");
    check_close(dx, ref[0], kF32Stats, "rms_norm dx");
    check_close(dw, ref[1], kF32Stats, "rms_norm dw");
  }
  SUBCASE("cross_entropy") {
    std::vector<int64_t> t = make_targets(rows, cols, -1, g);
    Tensor tg = from_vector_i64(t, {rows});
    Tensor loss = empty({rows}, opts(DType::f32)), lse = empty({rows}, opts(DType::f32));
    be.cross_entropy_fwd(loss.data<float>(), lse.data<float>(), x.data_ptr(), tg.data<int64_t>(), rows, cols, -1,
                         DType::f64);
    Tensor dloss = randn({rows}, g, opts(DType::f32));
    be.cross_entropy_bwd(dx.data_ptr(), dloss.data<float>(), x.data_ptr(), lse.data<float>(), tg.data<int64_t>(),
                         rows, cols, -1, DType::f64, DType::f64);
    Tensor l64 = cross_entropy(x, tg, -1, "none");
    check_close(loss, l64.detach(), kF32Stats, "cross_entropy loss");
    tensor_list ref = grad({l64}, {x}, {dloss.to(DType::f64)});
    check_close(dx, ref[0], kF32Stats, "cross_entropy dlogits");
    // bf16 dlogits of float32 logits: the float32 dlogits rounded once, bit for bit.
    const Tensor x32 = x.to(DType::f32);
    Tensor loss32 = empty({rows}, opts(DType::f32)), lse32 = empty({rows}, opts(DType::f32));
    be.cross_entropy_fwd(loss32.data<float>(), lse32.data<float>(), x32.data_ptr(), tg.data<int64_t>(), rows, cols, -1,
                         DType::f32);
    Tensor dx32 = empty({rows, cols}, opts(DType::f32)), dxb = full({rows, cols}, NAN, opts(DType::bf16));
    be.cross_entropy_bwd(dx32.data_ptr(), dloss.data<float>(), x32.data_ptr(), lse32.data<float>(),
                         tg.data<int64_t>(), rows, cols, -1, DType::f32, DType::f32);
    be.cross_entropy_bwd(dxb.data_ptr(), dloss.data<float>(), x32.data_ptr(), lse32.data<float>(),
                         tg.data<int64_t>(), rows, cols, -1, DType::f32, DType::bf16);
    CHECK(max(abs(sub(dxb.to(DType::f32), dx32.to(DType::bf16).to(DType::f32)))).item() == 0.0);
    CHECK_THROWS_WITH_AS(be.cross_entropy_bwd(dxb.data_ptr(), dloss.data<float>(), x.data_ptr(), lse.data<float>(),
                                              tg.data<int64_t>(), rows, cols, -1, DType::f64, DType::bf16),
                         doctest::Contains("dlogits must be"), std::invalid_argument);
  }
}
