// tests/test_ops.cpp — walks the op table (tests/op_table.h): gradcheck, gradgradcheck,
// non-contiguous inputs and float32/bfloat16 agreement for every differentiable op.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "autograd/op_list.h"
#include "tests/op_table.h"

using namespace ttt;
using namespace ttt::testing;

namespace ttt::testing {
std::vector<OpCase>& op_table() {
  static std::vector<OpCase> table;
  return table;
}
}  // namespace ttt::testing

namespace {

Tensor make_input(const Input& in, Generator& g) {
  Tensor t;
  switch (in.gen) {
    case Gen::normal: t = randn(in.shape, g, opts(DType::f64)); break;
    case Gen::positive: t = rand(in.shape, g, opts(DType::f64), 0.5, 2.0); break;
    case Gen::away_from_0: {
      Tensor mag = rand(in.shape, g, opts(DType::f64), 0.3, 1.5);
      Tensor sgn = sub(mul_scalar(gt(rand(in.shape, g, opts(DType::f64)), full(in.shape, 0.5, opts(DType::f64))), 2.0),
                       ones(in.shape, opts(DType::f64)));
      t = mul(mag, sgn);
      break;
    }
    case Gen::index: {
      Tensor u = rand(in.shape, g, opts(DType::f64), 0.0, static_cast<double>(in.hi));
      std::vector<int64_t> v;
      for (double x : u.tolist<double>()) v.push_back(std::min<int64_t>(in.hi - 1, static_cast<int64_t>(x)));
      return from_vector_i64(v, in.shape, opts(in.int_dtype));
    }
    case Gen::mask: t = gt(rand(in.shape, g, opts(DType::f64)), full(in.shape, 0.5, opts(DType::f64))); break;
  }
  if (in.grad && in.gen != Gen::mask) t.set_requires_grad(true);
  return t;
}

bool is_float_input(const Input& in) { return in.gen != Gen::index; }

// The same values behind a non-contiguous view: a transpose of a contiguous buffer for rank >= 2,
// a slice out of a wider buffer otherwise.
Tensor noncontig_copy(const Tensor& t) {
  NoGradGuard ng;
  Tensor v;
  if (t.dim() >= 2) {
    Tensor buf = contiguous(transpose(t.detach(), -1, -2));
    v = transpose(buf, -1, -2);
  } else if (t.dim() == 1) {
    Tensor buf = zeros({t.shape()[0] + 3}, opts(t.dtype()));
    v = buf.narrow(0, 2, t.shape()[0]);
    v.copy_(t.detach());
  } else {
    v = clone(t.detach());
  }
  if (t.requires_grad()) v = v.detach().set_requires_grad(true);
  return v;
}

double max_rel_err(const Tensor& a, const Tensor& ref) {
  auto x = a.tolist<double>(), r = ref.tolist<double>();
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e = std::max(e, std::fabs(x[i] - r[i]) / (1 + std::fabs(r[i])));
  return e;
}

// Gradients of sum_i <out_i, w_i> with fixed weights w (seeded): a cheap first-order signature.
tensor_list first_order(const OpCase& c, const tensor_list& ins) {
  tensor_list outs = c.fn(ins);
  Generator g(99);
  tensor_list live_out, ws, diff;
  for (auto& o : outs)
    if (o.defined() && o.requires_grad()) {
      live_out.push_back(o);
      ws.push_back(randn(o.shape(), g, opts(o.dtype())));
    }
  for (auto& i : ins)
    if (i.defined() && i.requires_grad()) diff.push_back(i);
  if (live_out.empty()) return {};
  return grad(live_out, diff, ws, false, false, true);
}

}  // namespace

TEST_CASE("every differentiable op has op-table entries") {
  std::set<std::string> have;
  for (auto& c : op_table()) have.insert(c.op);
  std::vector<std::string> missing;
#define TTT_CHECK_OP(name) \
  if (!have.count(#name)) missing.push_back(#name);
  TTT_DIFFERENTIABLE_OPS(TTT_CHECK_OP)
#undef TTT_CHECK_OP
  std::string list;
  for (auto& m : missing) list += m + " ";
  INFO("ops without a table entry: ", list);
  CHECK(missing.empty());
}

TEST_CASE("op table: gradcheck, gradgradcheck, non-contiguous inputs, dtypes") {
  for (const OpCase& c : op_table()) {
    SUBCASE((c.op + ": " + c.label).c_str()) {
      Generator g(std::hash<std::string>{}(c.op + c.label));
      tensor_list ins;
      for (auto& in : c.inputs) ins.push_back(make_input(in, g));
      GradcheckOptions go;
      go.atol = c.atol;
      go.rtol = c.rtol;
      go.eps = c.eps;
      auto r1 = gradcheck(c.fn, ins, go);
      INFO("gradcheck: ", r1.message);
      CHECK(r1.ok);
      if (c.gradgrad) {
        auto r2 = gradgradcheck(c.fn, ins, go);
        INFO("gradgradcheck: ", r2.message);
        CHECK(r2.ok);
      }
      tensor_list ref_out = c.fn(ins);
      if (c.noncontig) {
        tensor_list nc;
        for (size_t i = 0; i < ins.size(); ++i)
          nc.push_back(is_float_input(c.inputs[i]) ? noncontig_copy(ins[i]) : ins[i]);
        tensor_list out = c.fn(nc);
        for (size_t k = 0; k < out.size(); ++k)
          if (out[k].defined()) CHECK(max_rel_err(out[k], ref_out[k]) < 1e-12);
        tensor_list g_ref = first_order(c, ins), g_nc = first_order(c, nc);
        REQUIRE(g_ref.size() == g_nc.size());
        for (size_t k = 0; k < g_ref.size(); ++k)
          if (g_ref[k].defined()) CHECK(max_rel_err(g_nc[k], g_ref[k]) < 1e-12);
      }
      for (DType dt : {DType::f32, DType::bf16}) {
        if (dt == DType::bf16 && !c.bf16) continue;
        NoGradGuard ng;
        tensor_list low;
        for (size_t i = 0; i < ins.size(); ++i)
          low.push_back(is_float_input(c.inputs[i]) ? ins[i].detach().to(dt) : ins[i]);
        // Reference: float64 computed on the values the low-precision inputs actually hold.
        tensor_list ref_in;
        for (size_t i = 0; i < ins.size(); ++i)
          ref_in.push_back(is_float_input(c.inputs[i]) ? low[i].to(DType::f64) : ins[i]);
        tensor_list out = c.fn(low), ref = c.fn(ref_in);
        double tol = dt == DType::f32 ? c.f32_tol : c.bf16_tol;
        for (size_t k = 0; k < out.size(); ++k) {
          if (!out[k].defined() || !is_floating(out[k].dtype())) continue;
          INFO(dtype_name(dt), " output ", k);
          CHECK(out[k].dtype() == dt);
          CHECK(max_rel_err(out[k], ref[k]) <= tol);
        }
      }
    }
  }
}

namespace {
// Runs f, which must throw std::invalid_argument with a message containing every one of `parts`.
template <class F> void check_error(F&& f, std::initializer_list<const char*> parts) {
  std::string msg;
  try {
    f();
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  INFO("message: \"", msg, "\"");
  REQUIRE(!msg.empty());
  for (const char* p : parts) CHECK(msg.find(p) != std::string::npos);
}
std::vector<double> values(const Tensor& t) { return t.to(DType::f64).tolist<double>(); }
}  // namespace

TEST_CASE("errors name the op and what was expected") {
  Tensor x23 = zeros({2, 3}, opts(DType::f64)), x33 = zeros({3, 3}, opts(DType::f64));
  check_error([&] { cat({x23, x33}, 1); }, {"cat", "[3, 3]", "[2, 3]"});
  check_error([&] { stack({x23, x33}, 0); }, {"stack", "[3, 3]"});
  check_error([&] { split(x23, {1, 1}, 1); }, {"split", "[2, 3]"});
  check_error([&] { cross_entropy(x23, from_vector_i64({0, 5}, {2})); }, {"cross_entropy", "target 5", "[2, 3]"});
  check_error([&] { cross_entropy(x23, from_vector({0, 1}, {2}, opts(DType::f64))); }, {"cross_entropy", "integer"});
  check_error([&] { cross_entropy(x23, from_vector_i64({0, 1, 2}, {3})); }, {"cross_entropy", "[3]", "[2, 3]"});
  check_error([&] { cross_entropy(x23, from_vector_i64({0, 1}, {2}), -100, "avg"); }, {"cross_entropy", "avg"});
  check_error([&] { embedding(x23, from_vector({0}, {1}, opts(DType::f64))); }, {"embedding", "ids", "float64"});
  check_error([&] { embedding(x23, from_vector_i64({2}, {1})); }, {"embedding", "[2, 3]"});
  check_error([&] { index_select(x23, 0, from_vector_i64({0, 1}, {1, 2})); }, {"index_select", "[1, 2]"});
  check_error([&] { layer_norm(x23, zeros({2}, opts(DType::f64)), Tensor()); }, {"layer_norm", "weight", "[3]"});
  check_error([&] { rms_norm(x23, zeros({4}, opts(DType::f64))); }, {"rms_norm", "weight", "[4]"});
  check_error([&] { where(zeros({4}), x23, x23); }, {"where", "[4]", "[2, 3]"});
  check_error([&] { masked_fill(zeros({3}, opts(DType::f64)), zeros({2, 3}), 1.0); }, {"masked_fill", "[2, 3]"});
  check_error([&] { tril(zeros({3}, opts(DType::f64))); }, {"tril", "[3]"});
}

TEST_CASE("hand-computed values: cross_entropy, embedding, chunk, tril/triu") {
  // Row 0: uniform logits over 3 classes -> loss ln 3, gradient softmax - onehot(2); row 1 ignored.
  Tensor logits = from_vector({0, 0, 0, 1, 2, 3}, {2, 3}, opts(DType::f64)).set_requires_grad(true);
  Tensor t = from_vector_i64({2, -100}, {2});
  const double ln3 = std::log(3.0);
  CHECK(cross_entropy(logits, t).item() == doctest::Approx(ln3).epsilon(1e-14));
  CHECK(cross_entropy(logits, t, -100, "sum").item() == doctest::Approx(ln3).epsilon(1e-14));
  auto none = values(cross_entropy(logits, t, -100, "none"));
  CHECK(none[0] == doctest::Approx(ln3).epsilon(1e-14));
  CHECK(none[1] == 0.0);
  Tensor dl = grad({cross_entropy(logits, t)}, {logits})[0];
  std::vector<double> want = {1.0 / 3, 1.0 / 3, -2.0 / 3, 0, 0, 0};
  auto got = values(dl);
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-14));
  // The same through the fused float32 kernels.
  Tensor l32 = logits.detach().to(DType::f32).set_requires_grad(true);
  got = values(grad({cross_entropy(l32, t)}, {l32})[0]);
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));

  // Embedding: rows gathered; a repeated id accumulates its gradient.
  Tensor w = from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, opts(DType::f64)).set_requires_grad(true);
  Tensor e = embedding(w, from_vector_i64({2, 0, 2}, {1, 3}));
  CHECK(e.shape() == Shape{1, 3, 2});
  CHECK(values(e) == std::vector<double>{5, 6, 1, 2, 5, 6});
  CHECK(values(grad({sum(e)}, {w})[0]) == std::vector<double>{1, 1, 0, 0, 2, 2});

  // chunk as in PyTorch: pieces of ceil(7/3) = 3.
  tensor_list pieces = chunk(arange(0, 7, 1, opts(DType::f64)), 3, 0);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[2].shape() == Shape{1});
  CHECK(values(pieces[2]) == std::vector<double>{6});

  Tensor m = from_vector({1, 2, 3, 4}, {2, 2}, opts(DType::f64));
  CHECK(values(tril(m)) == std::vector<double>{1, 0, 3, 4});
  CHECK(values(triu(m, 1)) == std::vector<double>{0, 2, 0, 0});
}

TEST_CASE("kernel edge cases: GEMM with k = 0 never reads C when beta = 0; max/min of all -inf in float64") {
  // C starts as NaN: an empty sum with beta = 0 must write zeros, not 0 * NaN (C may be garbage).
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (double beta : {0.0, 0.5}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(beta);
      Tensor a = ones({2, 3, 1}, opts(dt)), b = ones({2, 1, 4}, opts(dt));  // k = 0 after narrowing
      Tensor c = full({2, 3, 5}, beta == 0 ? NAN : 4.0, opts(dt));          // one padding column
      GemmArgs g;
      g.m = 3; g.n = 4; g.k = 0; g.batch = 2;
      g.a = a.data_ptr(); g.lda = 1; g.stride_a = 3;
      g.b = b.data_ptr(); g.ldb = 4; g.stride_b = 4;
      g.c = c.data_ptr(); g.ldc = 5; g.stride_c = 15;
      g.alpha = 1.0; g.beta = beta;
      g.ab_dtype = g.c_dtype = dt;
      backend(cpu()).gemm(g);
      std::vector<double> v = c.tolist<double>();
      for (size_t i = 0; i < v.size(); ++i) {
        if (i % 5 == 4) CHECK((beta == 0 ? std::isnan(v[i]) : v[i] == 4.0));  // padding untouched
        else CHECK(v[i] == (beta == 0 ? 0.0 : 2.0));
      }
    }
  // The op: an empty inner dimension gives a zero product.
  CHECK(matmul(zeros({2, 0}), zeros({0, 3})).tolist<double>() == std::vector<double>(6, 0.0));
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor ninf = full({4}, -INFINITY, opts(dt)), pinf = full({4}, INFINITY, opts(dt));
    CHECK(max(ninf).item() == -INFINITY);
    CHECK(min(pinf).item() == INFINITY);
    CHECK(max(full({2, 3}, -INFINITY, opts(dt)), {1}).tolist<double>() == std::vector<double>(2, -INFINITY));
  }
}
