// tests/test_cuda_backend.cpp — the CUDA backend against the CPU reference: the caching
// allocator, elementwise ops (fill/unary/copy/binary/where/triangle), reductions, argmax,
// cumsum, index_select/index_add, Philox random numbers and AdamW. Inputs are fresh random
// values; views cover dense, transposed, sliced and broadcast (stride 0) layouts and odd sizes.
// GEMM and the fused row kernels are in test_cuda_gemm_rows.cpp, Tensor-level checks in
// test_cuda_tensor.cpp. Every case skips itself when no GPU is visible.
#include <cstring>

#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

const DType kFloat[] = {DType::f64, DType::f32, DType::bf16};
const DType kAll[] = {DType::f64, DType::f32, DType::bf16, DType::i64, DType::i32, DType::u16};

// Layouts an elementwise op sees: a dense tensor of n elements, a transposed view, a slice of a
// wider buffer and a broadcast input. Each returns (input view, output shape).
enum class Layout { dense, transposed, sliced };
Pair make_input(Layout l, int64_t n, DType dt, Generator& gen, double lo, double hi) {
  switch (l) {
    case Layout::dense: return random_pair({n}, dt, gen, lo, hi);
    case Layout::transposed: return random_pair({53, 37}, dt, gen, lo, hi).map([](Tensor t) { return t.transpose(0, 1); });
    case Layout::sliced: return random_pair({19, 41}, dt, gen, lo, hi).map([](Tensor t) { return t.narrow(1, 3, 29); });
  }
  return {};
}

}  // namespace

TEST_CASE("cuda allocator: caching, statistics and out-of-memory message") {
  TTT_REQUIRE_GPU();
  Backend& be = gpu_be();
  be.synchronize();
  const size_t base = be.memory_allocated();
  void* p = be.alloc(1000);
  CHECK(be.memory_allocated() == base + 1024);  // 512-byte classes below 1 MiB
  be.free(p, 1000);
  CHECK(be.memory_allocated() == base);
  void* q = be.alloc(1000);
  CHECK(q == p);  // the cached block comes back
  void* r = be.alloc(3 << 20);
  CHECK(be.memory_allocated() == base + 1024 + (3 << 20));  // sizes round up to 512 B (kernels/block_pool.h)
  be.reset_peak_memory();
  CHECK(be.memory_peak() == be.memory_allocated());
  be.free(r, 3 << 20);
  void* r2 = be.alloc((3 << 20) + 5);  // the freed block merged with the rest of its segment: same address
  CHECK(r2 == r);
  CHECK(be.memory_peak() == base + 1024 + (3 << 20) + 512);
  be.free(r2, (3 << 20) + 5);
  be.free(q, 1000);
  CHECK(be.memory_allocated() == base);
  try {
    be.alloc(size_t{1} << 52);  // 4 PiB
    FAIL_CHECK("expected OutOfMemory");
  } catch (const OutOfMemory& e) {
    const std::string msg = e.what();
    CHECK(msg.find("cuda:0") != std::string::npos);
    CHECK(msg.find("free of") != std::string::npos);
  }
  // The device still works after the failed allocation.
  Generator gen(1);
  Pair x = random_pair({1000}, DType::f32, gen);
  expect_close(x, tol_for(DType::f32), "round trip after OOM");
}

TEST_CASE("cuda host<->device copies are byte exact") {
  TTT_REQUIRE_GPU();
  for (size_t n : {size_t{1}, size_t{3}, size_t{1000003}}) {
    std::vector<unsigned char> h(n), back(n, 0);
    for (size_t i = 0; i < n; ++i) h[i] = static_cast<unsigned char>((i * 2654435761u) >> 13);
    void* d = gpu_be().alloc(n);
    gpu_be().copy_from_host(d, h.data(), n);
    gpu_be().copy_to_host(back.data(), d, n);
    gpu_be().free(d, n);
    CHECK(std::memcmp(h.data(), back.data(), n) == 0);
  }
}

TEST_CASE("cuda fill over dense and strided views, every dtype") {
  TTT_REQUIRE_GPU();
  for (DType dt : kAll) {
    Pair o = poisoned({7, 11}, dt);
    cpu_be().fill(o.c.transpose(0, 1).view(), 3.75);
    gpu_be().fill(o.g.transpose(0, 1).view(), 3.75);
    Pair s = o.map([](Tensor t) { return t.narrow(1, 2, 5); });
    cpu_be().fill(s.c.view(), -2.0);
    gpu_be().fill(s.g.view(), -2.0);
    expect_close(o, tol_for(dt), "fill " + dname(dt));
    Pair big = poisoned({1000003}, dt);
    cpu_be().fill(big.c.view(), 7);
    gpu_be().fill(big.g.view(), 7);
    expect_close(big, tol_for(dt), "fill dense " + dname(dt));
  }
}

TEST_CASE("cuda unary ops match the CPU for every op, float dtype and layout") {
  TTT_REQUIRE_GPU();
  Generator gen(2);
  for (int opi = static_cast<int>(UnaryOp::neg); opi <= static_cast<int>(UnaryOp::relu_mask); ++opi) {
    const UnaryOp op = static_cast<UnaryOp>(opi);
    const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt ||
                          op == UnaryOp::pow_scalar || op == UnaryOp::reciprocal;
    const double lo = positive ? 0.25 : -3, hi = positive ? 4 : 3;
    const double a = op == UnaryOp::pow_scalar ? 1.7 : 2.5, b = -0.3;
    for (DType dt : kFloat)
      for (Layout l : {Layout::dense, Layout::transposed, Layout::sliced}) {
        const int64_t sizes[] = {1000003, 4099, 3, 1};  // dense sizes: large odd, tail-heavy, tiny
        const int64_t n = sizes[opi % 4];
        Pair x = make_input(l, n, dt, gen, lo, hi);
        Pair y = poisoned(x.c.shape(), dt);
        cpu_be().unary(op, y.c.view(), x.c.view(), a, b);
        gpu_be().unary(op, y.g.view(), x.g.view(), a, b);
        Tol t = tol_for(dt);
        if (dt == DType::f32) t = {3e-6, 3e-6};  // device libm is within a few ulp of glibc
        expect_close(y, t, "unary op " + std::to_string(opi) + " " + dname(dt) + " layout " +
                               std::to_string(static_cast<int>(l)));
      }
  }
}

TEST_CASE("cuda copy converts between every pair of dtypes, dense and strided") {
  TTT_REQUIRE_GPU();
  Generator gen(3);
  for (DType from : kAll)
    for (DType to : kAll)
      for (Layout l : {Layout::dense, Layout::transposed}) {
        Pair x = make_input(l, 1000003, from, gen, 0, 200);  // u16-safe range, fractions for floats
        Pair y = poisoned(x.c.shape(), to);
        cpu_be().unary(UnaryOp::copy, y.c.view(), x.c.view(), 0, 0);
        gpu_be().unary(UnaryOp::copy, y.g.view(), x.g.view(), 0, 0);
        expect_close(y, {0, 0}, "copy " + dname(from) + " -> " + dname(to));
      }
}

TEST_CASE("cuda binary ops, every op and dtype, with broadcasting and strides") {
  TTT_REQUIRE_GPU();
  Generator gen(4);
  for (int opi = 0; opi <= static_cast<int>(BinaryOp::ge); ++opi) {
    const BinaryOp op = static_cast<BinaryOp>(opi);
    for (DType dt : kAll) {
      const bool fl = is_floating(dt);
      const double lo = (op == BinaryOp::pow || dt == DType::u16) ? (fl ? 0.5 : 0) : -20, hi = fl ? 3 : 20;
      // [a] dense vs dense, odd size
      Pair a = random_pair({100003}, dt, gen, lo, hi), b = random_pair({100003}, dt, gen, op == BinaryOp::pow ? 0 : lo,
                                                                          op == BinaryOp::pow ? 4 : hi);
      Pair y = poisoned({100003}, dt);
      cpu_be().binary(op, y.c.view(), a.c.view(), b.c.view());
      gpu_be().binary(op, y.g.view(), a.g.view(), b.g.view());
      expect_close(y, tol_for(dt), "binary " + std::to_string(opi) + " dense " + dname(dt));
      // [b] [33, 1] x [1, 45] broadcast into a transposed output
      Pair col = random_pair({33, 1}, dt, gen, lo, hi).map([](Tensor t) { return t.expand({33, 45}); });
      Pair row = random_pair({1, 45}, dt, gen, op == BinaryOp::pow ? 0 : lo, op == BinaryOp::pow ? 4 : hi)
                     .map([](Tensor t) { return t.expand({33, 45}); });
      Pair yt = poisoned({45, 33}, dt);
      cpu_be().binary(op, yt.c.transpose(0, 1).view(), col.c.view(), row.c.view());
      gpu_be().binary(op, yt.g.transpose(0, 1).view(), col.g.view(), row.g.view());
      expect_close(yt, tol_for(dt), "binary " + std::to_string(opi) + " broadcast " + dname(dt));
    }
  }
}

TEST_CASE("cuda where with any condition dtype and broadcast condition") {
  TTT_REQUIRE_GPU();
  Generator gen(5);
  for (DType cd : {DType::f32, DType::bf16, DType::i64, DType::u16})
    for (DType dt : kAll) {
      Tensor c01 = random_cpu({1, 57}, DType::i64, gen, 0, 2).to(cd);  // zeros and ones
      Pair cond = Pair{c01, c01.to(cuda())}.map([](Tensor t) { return t.expand({31, 57}); });
      Pair a = random_pair({31, 57}, dt, gen, 0, 100), b = random_pair({57, 31}, dt, gen, 0, 100);
      Pair bt = b.map([](Tensor t) { return t.transpose(0, 1); });
      Pair y = poisoned({31, 57}, dt);
      cpu_be().where(y.c.view(), cond.c.view(), a.c.view(), bt.c.view());
      gpu_be().where(y.g.view(), cond.g.view(), a.g.view(), bt.g.view());
      expect_close(y, {0, 0}, "where cond " + dname(cd) + " values " + dname(dt));
    }
}

TEST_CASE("cuda triangle (tril/triu) over batches and diagonals") {
  TTT_REQUIRE_GPU();
  Generator gen(6);
  for (DType dt : {DType::f32, DType::bf16, DType::f64, DType::i64})
    for (int64_t diag : {-2, 0, 3})
      for (bool lower : {true, false}) {
        Pair x = random_pair({3, 9, 5, 7}, dt, gen, 1, 50).map([](Tensor t) { return t.transpose(0, 1); });
        Pair y = poisoned({9, 3, 5, 7}, dt);
        cpu_be().triangle(y.c.view(), x.c.view(), diag, lower, -1e4);
        gpu_be().triangle(y.g.view(), x.g.view(), diag, lower, -1e4);
        expect_close(y, {0, 0}, "triangle " + dname(dt) + " diag " + std::to_string(diag));
      }
}

TEST_CASE("cuda reduce: sum/max/min/sum_sq over any dims, dtypes, odd and large sizes") {
  TTT_REQUIRE_GPU();
  Generator gen(7);
  struct Case {
    Shape shape;
    std::vector<int> dims;
    bool transpose;
  };
  const std::vector<Case> cases = {
      {{6, 50, 37}, {2}, false},      {{6, 50, 37}, {0}, false},    {{6, 50, 37}, {1}, true},
      {{6, 50, 37}, {0, 2}, false},   {{6, 50, 37}, {0, 1, 2}, true}, {{6, 50, 37}, {1, 2}, false},
      {{1000003}, {0}, false},        {{3, 100003}, {1}, false},    {{100003, 5}, {0}, false},
      {{1, 1}, {0, 1}, false},        {{4, 3}, {}, false},
  };
  for (const Case& cs : cases)
    for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::i64, DType::i32})
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::sum_sq}) {
        if (!is_floating(dt) && op == ReduceOp::sum_sq) continue;
        Pair x = random_pair(cs.shape, dt, gen, is_floating(dt) ? -1 : -50, is_floating(dt) ? 1 : 50);
        if (cs.transpose) x = x.map([](Tensor t) { return t.transpose(0, t.dim() - 1); });
        Shape os = x.c.shape();
        int64_t R = 1;
        for (int d : cs.dims) {
          R *= os[d];
          os[d] = 1;
        }
        Pair y = poisoned(os, dt);
        cpu_be().reduce(op, y.c.view(), x.c.view());
        gpu_be().reduce(op, y.g.view(), x.g.view());
        Tol t = tol_for(dt);
        if (op == ReduceOp::max || op == ReduceOp::min) t = {0, 0};  // picks an element: exact
        else if (dt == DType::f32) t = {1e-6 * std::sqrt(static_cast<double>(R)), 1e-5};
        else if (dt == DType::bf16) t = {1e-2 * std::sqrt(static_cast<double>(R)), 1e-2};
        expect_close(y, t, "reduce op " + std::to_string(static_cast<int>(op)) + " " + dname(dt) + " on " +
                               cs.shape.str() + " dims " + std::to_string(cs.dims.size()));
      }
}

TEST_CASE("cuda argmax: first maximum along any dim, with ties") {
  TTT_REQUIRE_GPU();
  Generator gen(8);
  for (DType dt : {DType::f32, DType::bf16, DType::f64, DType::i64, DType::i32})
    for (int dim : {0, 1, 2}) {
      // Integers in a small range make ties common; the first index must win.
      Pair x = random_pair({7, 130, 9}, dt, gen, -4, 4);
      Shape os = x.c.shape();
      os[dim] = 1;
      Pair y = poisoned(os, DType::i64);
      cpu_be().argmax(y.c.view(), x.c.view(), dim);
      gpu_be().argmax(y.g.view(), x.g.view(), dim);
      expect_close(y, {0, 0}, "argmax " + dname(dt) + " dim " + std::to_string(dim));
    }
}

TEST_CASE("cuda cumsum: short and long lines, strided, every dtype") {
  TTT_REQUIRE_GPU();
  Generator gen(9);
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::i64, DType::i32})
    for (auto [shape, dim] : std::vector<std::pair<Shape, int>>{{{40, 33}, 1}, {{40, 33}, 0}, {{3, 5000}, 1},
                                                                {{70001, 2}, 0}, {{2, 3, 4}, 2}}) {
      Pair x = random_pair(shape, dt, gen, is_floating(dt) ? -1 : -20, is_floating(dt) ? 1 : 20);
      Pair y = poisoned(shape, dt);
      cpu_be().cumsum(y.c.view(), x.c.view(), dim);
      gpu_be().cumsum(y.g.view(), x.g.view(), dim);
      Tol t = tol_for(dt);
      if (dt == DType::f32) t = {1e-5, 1e-5};
      expect_close(y, t, "cumsum " + dname(dt) + " " + shape.str() + " dim " + std::to_string(dim));
    }
}

TEST_CASE("cuda index_select: dense rows, strided views, every index dtype, bad index") {
  TTT_REQUIRE_GPU();
  Generator gen(10);
  for (DType it : {DType::i64, DType::i32, DType::u16})
    for (DType dt : {DType::f32, DType::bf16, DType::f64, DType::i64})
      for (int64_t width : {64, 7}) {  // 64: rows copied in 16-byte chunks; 7: element by element
        Pair idx = random_pair({1001}, it, gen, 0, 100);
        Pair w = random_pair({100, width}, dt, gen, -5, 5);  // an embedding table
        Pair y = poisoned({1001, width}, dt);
        cpu_be().index_select(y.c.view(), w.c.view(), 0, idx.c.view());
        gpu_be().index_select(y.g.view(), w.g.view(), 0, idx.g.view());
        expect_close(y, {0, 0}, "index_select rows " + dname(dt) + " idx " + dname(it));
        // dim 1 of a transposed input with a strided index
        Pair x = random_pair({13, 100}, dt, gen, -5, 5).map([](Tensor t) { return t.transpose(0, 1); });  // [100, 13]
        Pair sidx = random_pair({39, 2}, it, gen, 0, 13).map([](Tensor t) { return t.select(1, 1); });  // stride 2
        Pair y2 = poisoned({100, 39}, dt);
        cpu_be().index_select(y2.c.view(), x.c.view(), 1, sidx.c.view());
        gpu_be().index_select(y2.g.view(), x.g.view(), 1, sidx.g.view());
        expect_close(y2, {0, 0}, "index_select strided " + dname(dt) + " idx " + dname(it));
      }
  Tensor w = random_cpu({10, 4}, DType::f32, gen).to(cuda());
  Tensor bad = from_vector_i64({1, 10, 2}, {3}, opts(DType::i64, cuda()));
  Tensor out = empty({3, 4}, opts(DType::f32, cuda()));
  gpu_be().index_select(out.view(), w.view(), 0, bad.view());
  CHECK_THROWS_AS(gpu_be().synchronize(), std::out_of_range);
  gpu_be().synchronize();  // the error was reported once and cleared
}

TEST_CASE("cuda index_add: duplicate indices accumulate, every dtype") {
  TTT_REQUIRE_GPU();
  Generator gen(11);
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::i32, DType::u16})
    for (int dim : {0, 1}) {
      // 200 source rows into 37 destinations: ~5 duplicates each.
      Pair idx = random_pair({200}, DType::i64, gen, 0, 37);
      Shape ss = dim == 0 ? Shape{200, 24} : Shape{24, 200}, os = dim == 0 ? Shape{37, 24} : Shape{24, 37};
      const bool fl = is_floating(dt);
      Pair src = random_pair(ss, dt, gen, fl ? -1 : 0, fl ? 1 : 9);
      Pair out = random_pair(os, dt, gen, fl ? -1 : 0, fl ? 1 : 9);
      if (dim == 1) out = random_pair({37, 24}, dt, gen, fl ? -1 : 0, fl ? 1 : 9).map([](Tensor t) { return t.transpose(0, 1); });
      cpu_be().index_add(out.c.view(), dim, idx.c.view(), src.c.view());
      gpu_be().index_add(out.g.view(), dim, idx.g.view(), src.g.view());
      // bf16: the CPU rounds after every addition, the GPU once (float32 accumulation).
      Tol t = dt == DType::bf16 ? Tol{0.06, 0.02} : dt == DType::f32 ? Tol{1e-5, 1e-5} : tol_for(dt);
      expect_close(out, t, "index_add " + dname(dt) + " dim " + std::to_string(dim));
    }
}

TEST_CASE("cuda Philox random numbers equal the CPU's element for element") {
  TTT_REQUIRE_GPU();
  for (DType dt : kFloat)
    for (RandomDist dist : {RandomDist::uniform, RandomDist::normal}) {
      Pair y = poisoned({1000003}, dt);
      const uint64_t seed = 0x1234567890abcdefull, offset = 5;
      cpu_be().random(y.c.view(), dist, seed, offset, 0.5, 2.0);
      gpu_be().random(y.g.view(), dist, seed, offset, 0.5, 2.0);
      // uniform: bit-identical; normal: the device's double log/cos may differ in the last bit
      // of a double, so allow one unit in the last place of the stored type.
      const Tol ulp = dt == DType::f64 ? Tol{1e-14, 1e-14} : dt == DType::f32 ? Tol{0, 2.4e-7} : Tol{0, 7.9e-3};
      expect_close(y, dist == RandomDist::uniform ? Tol{0, 0} : ulp,
                   std::string(dist == RandomDist::uniform ? "uniform " : "normal ") + dname(dt));
    }
}

TEST_CASE("cuda adamw step equals the CPU bit for bit, f32 and bf16 gradients, aligned and not") {
  TTT_REQUIRE_GPU();
  Generator gen(12);
  for (DType gd : {DType::f32, DType::bf16})
    for (int64_t start : {0, 1}) {  // start 1: pointers off 16-byte alignment (scalar path)
      const int64_t n = 1000003;
      Pair p = random_pair({n + 1}, DType::f32, gen), m = random_pair({n + 1}, DType::f32, gen, -0.1, 0.1),
           v = random_pair({n + 1}, DType::f32, gen, 0.001, 0.1), g = random_pair({n + 1}, gd, gen);
      for (Pair* t : {&p, &m, &v, &g}) *t = t->map([&](Tensor x) { return x.narrow(0, start, n); });
      for (int dev = 0; dev < 2; ++dev) {
        AdamWArgs a;
        const Tensor& P = dev ? p.g : p.c;
        a.param = P.data<float>();
        a.m = (dev ? m.g : m.c).data<float>();
        a.v = (dev ? v.g : v.c).data<float>();
        a.grad = (dev ? g.g : g.c).data_ptr();
        a.grad_dtype = gd;
        a.n = n;
        a.lr = 1e-3; a.beta1 = 0.9; a.beta2 = 0.95; a.eps = 1e-8; a.weight_decay = 0.1;
        a.bias_correction1 = 0.19; a.bias_correction2 = 0.0975; a.grad_scale = 0.7;
        (dev ? gpu_be() : cpu_be()).adamw(a);
      }
      // Bit for bit: both round every double operation of smath::adamw_step alike (no FMA).
      expect_close(p, {0, 0}, "adamw param " + dname(gd));
      expect_close(m, {0, 0}, "adamw m " + dname(gd));
      expect_close(v, {0, 0}, "adamw v " + dname(gd));
    }
}
