// tests/test_cuda_deterministic.cpp — deterministic mode on the GPU (kernels/backend.h
// set_deterministic): the kernels that otherwise add with float atomics — index_add (embedding
// gradients) and attention's dQ — give bit-identical results when run twice, index_add equals the
// CPU reference bit for bit (same order of additions), and the attention gradients stay what the
// atomic path computes up to float rounding. Also the caching allocator on the device: cached
// memory serves smaller requests without new segments. Skips without a GPU.
#include "autograd/engine.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

// Sets deterministic mode for a scope.
struct Deterministic {
  bool prev;
  explicit Deterministic(bool on) : prev(deterministic()) { set_deterministic(on); }
  ~Deterministic() { set_deterministic(prev); }
};

std::vector<double> values(const Tensor& t) { return t.to(cpu()).tolist<double>(); }

// index_add of src rows into a zero table on `dev`; ids with many duplicates (a hot row).
Tensor scatter(const Tensor& src_cpu, const Tensor& ids_cpu, int64_t rows, Device dev) {
  Tensor out = zeros({rows, src_cpu.shape()[1]}, opts(src_cpu.dtype(), dev));
  backend(dev).index_add(out.view(), 0, ids_cpu.to(dev).view(), src_cpu.to(dev).view());
  return out;
}

}  // namespace

TEST_CASE("deterministic index_add: two GPU runs bit-identical, equal to the CPU bit for bit") {
  TTT_REQUIRE_GPU();
  Deterministic on(true);
  Generator gen(5);
  const int64_t n = 3000, rows = 37, width = 70;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(i % 5 == 0 ? 3 : (i * 7919) % rows);  // row 3 is hot
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Tensor src = randn({n, width}, gen, opts(dt));
    for (DType idt : {DType::i64, DType::i32}) {
      Tensor idx = from_vector_i64(ids, {n}).to(idt);
      std::vector<double> a = values(scatter(src, idx, rows, cuda()));
      std::vector<double> b = values(scatter(src, idx, rows, cuda()));
      std::vector<double> c = values(scatter(src, idx, rows, cpu()));
      CHECK(a == b);
      CHECK(a == c);
    }
  }
  // A strided destination (dim 1 of [2, rows, 3], written through a transposed view) and the
  // embedding op's backward end to end.
  Tensor src = randn({2, n, 3}, gen, opts(DType::f32));
  Tensor idx = from_vector_i64(ids, {n});
  auto strided = [&](Device dev) {
    Tensor base = zeros({2, 3, rows}, opts(DType::f32, dev));
    Tensor out = transpose(base, 1, 2);  // [2, rows, 3], not contiguous
    backend(dev).index_add(out.view(), 1, idx.to(dev).view(), src.to(dev).view());
    return values(base);
  };
  std::vector<double> s1 = strided(cuda()), s2 = strided(cuda());
  CHECK(s1 == s2);
  CHECK(s1 == strided(cpu()));
  auto emb_grad = [&](Device dev) {
    Tensor w = randn({rows, width}, gen, opts(DType::f32)).to(dev).detach().set_requires_grad(true);
    Tensor g = randn({n, width}, gen, opts(DType::f32)).to(dev);
    backward({sum(mul(embedding(w, idx.to(dev)), g))});
    return values(w.grad());
  };
  Generator keep = gen;
  std::vector<double> e1 = emb_grad(cuda());
  gen = keep;
  std::vector<double> e2 = emb_grad(cuda());
  CHECK(e1 == e2);
}

TEST_CASE("deterministic attention backward: two runs bit-identical, close to the atomic path") {
  TTT_REQUIRE_GPU();
  Generator gen(9);
  struct Case {
    DType dt;
    int64_t B, H, Tq, Tk, D, window;
    bool causal;
  };
  // bf16 (tensor-core kernels, three key-tile sizes) and float32 (CUDA-core kernel), causal with and
  // without a window, a KV-cache shape (Tq < Tk) and a non-causal one; enough heads to need
  // several groups only when the slabs are large (they are not here: one group).
  for (const Case& c : {Case{DType::bf16, 2, 3, 300, 300, 64, 0, true}, Case{DType::bf16, 1, 2, 200, 260, 96, 0, true},
                        Case{DType::bf16, 1, 2, 129, 129, 128, 50, true}, Case{DType::bf16, 2, 2, 100, 100, 64, 0, false},
                        Case{DType::f32, 2, 2, 150, 150, 40, 0, true}, Case{DType::f32, 1, 3, 70, 90, 64, 20, true}}) {
    CAPTURE(dtype_name(c.dt));
    CAPTURE(c.D);
    CAPTURE(c.Tq);
    Tensor q0 = randn({c.B, c.H, c.Tq, c.D}, gen, opts(DType::f32)).to(c.dt);
    Tensor k0 = randn({c.B, c.H, c.Tk, c.D}, gen, opts(DType::f32)).to(c.dt);
    Tensor v0 = randn({c.B, c.H, c.Tk, c.D}, gen, opts(DType::f32)).to(c.dt);
    Tensor w = randn({c.B, c.H, c.Tq, c.D}, gen, opts(DType::f32)).to(c.dt).to(cuda());
    auto grads = [&](bool det) {
      Deterministic mode(det);
      Tensor q = q0.to(cuda()).detach().set_requires_grad(true), k = k0.to(cuda()).detach().set_requires_grad(true),
             v = v0.to(cuda()).detach().set_requires_grad(true);
      Tensor out = scaled_dot_product_attention(q, k, v, c.causal, c.window, 1.0 / std::sqrt(double(c.D)));
      backward({sum(mul(out, w).to(DType::f32))});
      return std::vector<std::vector<double>>{values(q.grad()), values(k.grad()), values(v.grad())};
    };
    auto d1 = grads(true), d2 = grads(true), atomic = grads(false);
    for (int i = 0; i < 3; ++i) CHECK_MESSAGE(d1[i] == d2[i], "gradient " << i << " differs between two runs");
    // The ordered sum and the atomics add the same partials in different orders.
    const Tol tol = c.dt == DType::bf16 ? Tol{2e-2, 2e-2} : Tol{1e-4, 1e-4};
    const Shape shapes[3] = {q0.shape(), k0.shape(), v0.shape()};
    for (int i = 0; i < 3; ++i)
      expect_close(from_vector(d1[i], shapes[i]), from_vector(atomic[i], shapes[i]), tol,
                   "deterministic vs atomic gradient " + std::to_string(i));
  }
}
