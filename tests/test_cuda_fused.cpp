// tests/test_cuda_fused.cpp — the CUDA fused elementwise kernels (RoPE, SwiGLU forward and
// backward) against the CPU reference: strided (transposed) inputs and outputs, every dtype,
// RoPE's fused casts (float32 <-> bf16) and inverse rotation, lengths that leave a vector tail.
// Then the ops end to end on the GPU (apply_rope, swiglu with gradients) against the CPU.
// Skips without a GPU.
#include "autograd/engine.h"
#include "layers/rope.h"
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

Tol loose(DType a, DType b) {
  Tol ta = tol_for(a), tb = tol_for(b);
  return {std::max(ta.atol, tb.atol), std::max(ta.rtol, tb.rtol)};
}

}  // namespace

TEST_CASE("cuda rope: strided inputs and outputs, dtype pairs, inverse") {
  TTT_REQUIRE_GPU();
  Generator gen(41);
  const int64_t B = 2, T = 37, H = 3;
  const std::vector<std::pair<DType, DType>> pairs = {{DType::f64, DType::f64}, {DType::f32, DType::f32},
                                                      {DType::bf16, DType::bf16}, {DType::f32, DType::bf16},
                                                      {DType::bf16, DType::f32}};
  // D 16 and 64: same-dtype bf16 / float32 rows take the vectorized row kernel (16-byte multiples);
  // D 6 the per-pair kernel.
  for (int64_t D : {16, 64, 6})
  for (const auto& [in_dt, out_dt] : pairs) {
    const DType tab_dt = in_dt == DType::f64 ? DType::f64 : DType::f32;
    Pair x = random_pair({B, T, H, D}, in_dt, gen);  // a [B, T, H, D] projection
    Pair cs = random_pair({T, D / 2}, tab_dt, gen), sn = random_pair({T, D / 2}, tab_dt, gen);
    for (bool inverse : {false, true}) {
      const std::string tag =
          dname(in_dt) + "->" + dname(out_dt) + " D " + std::to_string(D) + (inverse ? " inverse" : "");
      // Read as [B, H, T, D] (strided), written contiguous.
      Pair y = poisoned({B, H, T, D}, out_dt);
      for (int dev = 0; dev < 2; ++dev) {
        Tensor xi = transpose(dev ? x.g : x.c, 1, 2);
        (dev ? gpu_be() : cpu_be()).rope((dev ? y.g : y.c).view(), xi.view(), (dev ? cs.g : cs.c).view(),
                                         (dev ? sn.g : sn.c).view(), 2, inverse);
      }
      expect_close(y, loose(in_dt, out_dt), "rope strided in " + tag);
      // Contiguous in, written through a transposed output view, time dim 1.
      Pair z = poisoned({B, H, T, D}, out_dt);
      for (int dev = 0; dev < 2; ++dev) {
        Tensor zo = transpose(dev ? z.g : z.c, 1, 2);
        (dev ? gpu_be() : cpu_be()).rope(zo.view(), (dev ? x.g : x.c).view(), (dev ? cs.g : cs.c).view(),
                                         (dev ? sn.g : sn.c).view(), 1, inverse);
      }
      expect_close(z, loose(in_dt, out_dt), "rope strided out " + tag);
    }
  }
  Pair x = random_pair({2, 4, 6}, DType::f32, gen), t = random_pair({4, 2}, DType::f32, gen);
  CHECK_THROWS_AS(gpu_be().rope(x.g.view(), x.g.view(), t.g.view(), t.g.view(), 1, false), std::invalid_argument);
}

TEST_CASE("cuda swiglu forward and backward: dtypes, tails, strided operands") {
  TTT_REQUIRE_GPU();
  Generator gen(42);
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t n : {1, 7, 1001, 4096}) {
      const std::string tag = dname(dt) + " n" + std::to_string(n);
      Pair a = random_pair({n, 3}, dt, gen, -4, 4), b = random_pair({3, n}, dt, gen), dy = random_pair({n, 3}, dt, gen);
      Pair y = poisoned({n, 3}, dt), da = poisoned({n, 3}, dt), db = poisoned({n, 3}, dt);
      for (int dev = 0; dev < 2; ++dev) {
        Backend& be = dev ? gpu_be() : cpu_be();
        Tensor bt = transpose(dev ? b.g : b.c, 0, 1);  // a transposed operand
        be.swiglu_fwd((dev ? y.g : y.c).view(), (dev ? a.g : a.c).view(), bt.view());
        be.swiglu_bwd((dev ? da.g : da.c).view(), (dev ? db.g : db.c).view(), (dev ? dy.g : dy.c).view(),
                      (dev ? a.g : a.c).view(), bt.view());
      }
      expect_close(y, tol_for(dt), "swiglu forward " + tag);
      expect_close(da, tol_for(dt), "swiglu da " + tag);
      expect_close(db, tol_for(dt), "swiglu db " + tag);
    }
}

TEST_CASE("cuda apply_rope and swiglu ops with gradients = CPU") {
  TTT_REQUIRE_GPU();
  Generator gen(43);
  Pair x = random_pair({2, 9, 4, 8}, DType::f32, gen), a = random_pair({5, 33}, DType::f32, gen),
       b = random_pair({5, 33}, DType::f32, gen), w = random_pair({2, 4, 9, 8}, DType::f32, gen),
       w2 = random_pair({5, 33}, DType::f32, gen);
  std::vector<int64_t> mod;
  for (int64_t t = 0; t < 9; ++t) mod.push_back(t % 4);
  for (const Tensor& pos : {rope_positions(3, 9), from_vector_i64(mod, {9})}) {
    Pair gx, y;
    for (int dev = 0; dev < 2; ++dev) {
      Tensor xl = (dev ? x.g : x.c).detach().set_requires_grad(true);
      Tensor r = apply_rope(transpose(xl, 1, 2), pos, 10000.0);
      (dev ? y.g : y.c) = r.detach();
      (dev ? gx.g : gx.c) = grad({r}, {xl}, {dev ? w.g : w.c})[0];
    }
    expect_close(y, tol_for(DType::f32), "apply_rope");
    expect_close(gx, tol_for(DType::f32), "apply_rope gradient");
  }
  Pair ga, gb;
  for (int dev = 0; dev < 2; ++dev) {
    Tensor al = (dev ? a.g : a.c).detach().set_requires_grad(true), bl = (dev ? b.g : b.c).detach().set_requires_grad(true);
    tensor_list g = grad({swiglu(al, bl)}, {al, bl}, {dev ? w2.g : w2.c});
    (dev ? ga.g : ga.c) = g[0];
    (dev ? gb.g : gb.c) = g[1];
  }
  expect_close(ga, tol_for(DType::f32), "swiglu op da");
  expect_close(gb, tol_for(DType::f32), "swiglu op db");
}
