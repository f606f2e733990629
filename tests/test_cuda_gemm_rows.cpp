// tests/test_cuda_gemm_rows.cpp — the CUDA GEMM (cuBLASLt) and the fused row kernels (softmax,
// LayerNorm, RMSNorm, cross-entropy, forward and backward) against the CPU reference, on random
// inputs with padded leading dims, batch strides (including a broadcast operand), every
// transpose combination and dtype pairing, and rows from 1 to 32000 wide. Skips without a GPU.
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k, batch;
  bool bcast_a;  // A shared by every batch item (stride 0)
  DType ab, c;
  double alpha, beta;
};

void check_gemm(const GemmCase& t, Generator& gen) {
  const int64_t ra = t.ta ? t.k : t.m, ca = t.ta ? t.m : t.k, lda = ca + 3;
  const int64_t rb = t.tb ? t.n : t.k, cb = t.tb ? t.k : t.n, ldb = cb + 1;
  const int64_t ldc = t.n + 2;
  Pair A = random_pair({t.bcast_a ? 1 : t.batch, ra, lda}, t.ab, gen);
  Pair B = random_pair({t.batch, rb, ldb}, t.ab, gen);
  // Padding columns must stay untouched. With k = 0 and beta = 0 C is not read: it starts as NaN
  // there, and the result must be zeros (0 * NaN would be NaN on both devices and compare equal).
  const bool empty_sum = t.k == 0 && t.beta == 0;
  Pair C = empty_sum ? poisoned({t.batch, t.m, ldc}, t.c) : random_pair({t.batch, t.m, ldc}, t.c, gen);
  for (int dev = 0; dev < 2; ++dev) {
    GemmArgs g;
    g.trans_a = t.ta; g.trans_b = t.tb;
    g.m = t.m; g.n = t.n; g.k = t.k;
    g.alpha = t.alpha; g.beta = t.beta;
    g.a = (dev ? A.g : A.c).data_ptr(); g.lda = lda; g.stride_a = t.bcast_a ? 0 : ra * lda;
    g.b = (dev ? B.g : B.c).data_ptr(); g.ldb = ldb; g.stride_b = rb * ldb;
    g.c = (dev ? C.g : C.c).data_ptr(); g.ldc = ldc; g.stride_c = t.m * ldc;
    g.batch = t.batch;
    g.ab_dtype = t.ab; g.c_dtype = t.c;
    (dev ? gpu_be() : cpu_be()).gemm(g);
  }
  if (empty_sum)
    for (const Tensor& r : {C.c, C.g}) {
      Tensor used = r.narrow(2, 0, t.n);
      CHECK_MESSAGE(max(abs(used.to(DType::f64).to(cpu()))).item() == 0, "gemm k = 0, beta = 0 on " << r.device().str());
    }
  const double sk = std::sqrt(static_cast<double>(std::max<int64_t>(t.k, 1)));
  Tol tol = t.c == DType::f64 ? Tol{1e-12 * sk, 1e-10}
            : t.c == DType::bf16 ? Tol{1e-3 * sk, 1e-2}  // one bf16 rounding of nearly equal f32 sums
                                 : Tol{1e-5 * sk, 1e-5};
  expect_close(C, tol, "gemm " + std::string(t.ta ? "T" : "N") + (t.tb ? "T" : "N") + " m" + std::to_string(t.m) +
                           " n" + std::to_string(t.n) + " k" + std::to_string(t.k) + " batch" +
                           std::to_string(t.batch) + (t.bcast_a ? " (A broadcast) " : " ") + dname(t.ab) + "->" +
                           dname(t.c));
}

}  // namespace

TEST_CASE("cuda gemm: transposes, batch strides, padded leading dims, dtype pairs") {
  TTT_REQUIRE_GPU();
  Generator gen(21);
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1}, {3, 5, 7}, {64, 33, 129}, {17, 1, 9}, {1, 40, 3},
                                                      {256, 384, 512}, {5, 6, 0}};
  const std::vector<std::pair<DType, DType>> dts = {
      {DType::f64, DType::f64}, {DType::f32, DType::f32}, {DType::bf16, DType::bf16},
      {DType::bf16, DType::f32}, {DType::f32, DType::bf16}};
  for (const auto& [m, n, k] : shapes)
    for (int bm = 0; bm < 3; ++bm) {
      if (m * n * k > 1 << 20 && bm > 0) continue;  // the large shape once
      for (const auto& [ab, c] : dts)
        for (int tr = 0; tr < 4; ++tr) {
          const bool scaled = (tr + bm) % 2 == 1;
          check_gemm({tr & 1 ? true : false, tr & 2 ? true : false, m, n, k, bm == 0 ? 1 : 3, bm == 2, ab, c,
                      scaled ? 1.5 : 1.0, scaled ? 0.5 : 0.0},
                     gen);
        }
    }
  GemmArgs bad;
  bad.m = bad.n = bad.k = 2;
  bad.ab_dtype = DType::i64;
  CHECK_THROWS_AS(gpu_be().gemm(bad), std::invalid_argument);
}

TEST_CASE("cuda softmax and log-softmax, forward and backward") {
  TTT_REQUIRE_GPU();
  Generator gen(22);
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t cols : {1, 7, 64, 1000, 32000})
      for (int64_t rows : {1, 33})
        for (bool log : {false, true}) {
          if (cols == 32000 && rows == 33 && dt == DType::f64) continue;
          Pair x = random_pair({rows, cols}, dt, gen, -4, 4);
          Pair y = poisoned({rows, cols}, dt);
          cpu_be().softmax_fwd(y.c.data_ptr(), x.c.data_ptr(), rows, cols, dt, log);
          gpu_be().softmax_fwd(y.g.data_ptr(), x.g.data_ptr(), rows, cols, dt, log);
          const std::string what = std::string(log ? "log_softmax " : "softmax ") + dname(dt) + " cols " +
                                   std::to_string(cols) + " rows " + std::to_string(rows);
          expect_close(y, tol_for(dt), what + " forward");
          Pair dy = random_pair({rows, cols}, dt, gen);
          Tensor yc = y.c, yg = y.c.to(cuda());  // both backwards from the reference output
          Pair dx = poisoned({rows, cols}, dt);
          cpu_be().softmax_bwd(dx.c.data_ptr(), dy.c.data_ptr(), yc.data_ptr(), rows, cols, dt, log);
          gpu_be().softmax_bwd(dx.g.data_ptr(), dy.g.data_ptr(), yg.data_ptr(), rows, cols, dt, log);
          expect_close(dx, tol_for(dt), what + " backward");
        }
}

TEST_CASE("cuda layer_norm and rms_norm, forward and backward with parameter gradients") {
  TTT_REQUIRE_GPU();
  Generator gen(23);
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t cols : {1, 7, 768, 4099})
      for (int64_t rows : {1, 65, 1000})
        for (bool affine : {false, true})
          for (bool rms : {false, true}) {
            const std::string what = std::string(rms ? "rms_norm " : "layer_norm ") + dname(dt) + " cols " +
                                     std::to_string(cols) + " rows " + std::to_string(rows) +
                                     (affine ? " affine" : "");
            Pair x = random_pair({rows, cols}, dt, gen, -2, 3), w = random_pair({cols}, dt, gen, 0.5, 1.5),
                 b = random_pair({cols}, dt, gen);
            Pair y = poisoned({rows, cols}, dt), mean = poisoned({rows}, DType::f32), rstd = poisoned({rows}, DType::f32);
            for (int dev = 0; dev < 2; ++dev) {
              auto p = [&](const Pair& t) { return (dev ? t.g : t.c).data_ptr(); };
              Backend& be = dev ? gpu_be() : cpu_be();
              if (rms) be.rms_norm_fwd(p(y), static_cast<float*>(p(rstd)), p(x), affine ? p(w) : nullptr, rows, cols,
                                       1e-5, dt);
              else be.layer_norm_fwd(p(y), static_cast<float*>(p(mean)), static_cast<float*>(p(rstd)), p(x),
                                     affine ? p(w) : nullptr, affine ? p(b) : nullptr, rows, cols, 1e-5, dt);
            }
            expect_close(y, tol_for(dt), what + " y");
            expect_close(rstd, {1e-5, 1e-5}, what + " rstd");
            if (!rms) expect_close(mean, {1e-6, 1e-5}, what + " mean");
            // Backward from the CPU's statistics on both devices.
            Pair st_mean{mean.c, mean.c.to(cuda())}, st_rstd{rstd.c, rstd.c.to(cuda())};
            Pair dy = random_pair({rows, cols}, dt, gen);
            Pair dx = poisoned({rows, cols}, dt), dw = poisoned({cols}, DType::f32), db = poisoned({cols}, DType::f32);
            for (int dev = 0; dev < 2; ++dev) {
              auto p = [&](const Pair& t) { return (dev ? t.g : t.c).data_ptr(); };
              auto f = [&](const Pair& t) { return static_cast<float*>(p(t)); };
              Backend& be = dev ? gpu_be() : cpu_be();
              if (rms) be.rms_norm_bwd(p(dx), f(dw), p(dy), p(x), f(st_rstd), affine ? p(w) : nullptr, rows, cols, dt);
              else be.layer_norm_bwd(p(dx), f(dw), f(db), p(dy), p(x), f(st_mean), f(st_rstd), affine ? p(w) : nullptr,
                                     rows, cols, dt);
            }
            Tol tx = tol_for(dt);
            if (dt == DType::f32) tx = {1e-4, 1e-4};  // rstd up to 1/sqrt(eps) when cols == 1
            expect_close(dx, tx, what + " dx");
            const double sr = std::sqrt(static_cast<double>(rows));
            expect_close(dw, {2e-6 * sr, 1e-5}, what + " dw");
            if (!rms) expect_close(db, {2e-6 * sr, 1e-5}, what + " db");
          }
}

TEST_CASE("cuda cross_entropy forward and backward with ignore_index, vocabulary-wide rows") {
  TTT_REQUIRE_GPU();
  Generator gen(24);
  const int64_t ignore = -100;
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (int64_t cols : {17, 32000})
      for (int64_t rows : {1, 37}) {
        Pair x = random_pair({rows, cols}, dt, gen, -6, 6);
        std::vector<int64_t> tg;
        Tensor u = rand({rows}, gen, opts(DType::f64), 0, static_cast<double>(cols));
        int64_t i = 0;
        for (double v : u.tolist<double>()) tg.push_back(i++ % 5 == 3 ? ignore : static_cast<int64_t>(v));
        Tensor tc = from_vector_i64(tg, {rows});
        Pair t{tc, tc.to(cuda())};
        Pair loss = poisoned({rows}, DType::f32), lse = poisoned({rows}, DType::f32);
        for (int dev = 0; dev < 2; ++dev) {
          auto f = [&](const Pair& p) { return (dev ? p.g : p.c).data<float>(); };
          (dev ? gpu_be() : cpu_be())
              .cross_entropy_fwd(f(loss), f(lse), (dev ? x.g : x.c).data_ptr(), (dev ? t.g : t.c).data<int64_t>(), rows,
                                 cols, ignore, dt);
        }
        const std::string what = "cross_entropy " + dname(dt) + " cols " + std::to_string(cols) + " rows " +
                                 std::to_string(rows);
        expect_close(loss, {2e-5, 1e-5}, what + " loss");
        expect_close(lse, {2e-5, 1e-5}, what + " lse");
        Pair dloss = random_pair({rows}, DType::f32, gen, 0.5, 2);
        Pair lse_ref{lse.c, lse.c.to(cuda())};
        Pair dx = poisoned({rows, cols}, dt);
        for (int dev = 0; dev < 2; ++dev) {
          auto f = [&](const Pair& p) { return (dev ? p.g : p.c).data<float>(); };
          (dev ? gpu_be() : cpu_be())
              .cross_entropy_bwd((dev ? dx.g : dx.c).data_ptr(), f(dloss), (dev ? x.g : x.c).data_ptr(), f(lse_ref),
                                 (dev ? t.g : t.c).data<int64_t>(), rows, cols, ignore, dt, dt);
        }
        expect_close(dx, dt == DType::f64 ? Tol{1e-12, 1e-10} : tol_for(dt), what + " dlogits");
        if (dt == DType::f32) {  // bf16 dlogits of float32 logits (linear_cross_entropy's P)
          Pair dxb = poisoned({rows, cols}, DType::bf16);
          for (int dev = 0; dev < 2; ++dev) {
            auto f = [&](const Pair& p) { return (dev ? p.g : p.c).data<float>(); };
            (dev ? gpu_be() : cpu_be())
                .cross_entropy_bwd((dev ? dxb.g : dxb.c).data_ptr(), f(dloss), (dev ? x.g : x.c).data_ptr(),
                                   f(lse_ref), (dev ? t.g : t.c).data<int64_t>(), rows, cols, ignore, dt, DType::bf16);
          }
          expect_close(dxb, tol_for(DType::bf16), what + " bf16 dlogits");
          // The GPU's float32 dlogits rounded: the same bits as its bf16 ones.
          CHECK(max(abs(sub(dxb.g.to(cpu()).to(DType::f32), dx.g.to(DType::bf16).to(cpu()).to(DType::f32)))).item() == 0.0);
        }
      }
  // A target outside [0, cols) is reported at the next synchronization.
  Tensor x = random_cpu({2, 5}, DType::f32, gen).to(cuda());
  Tensor t = from_vector_i64({1, 5}, {2}, opts(DType::i64, cuda()));
  Tensor loss = empty({2}, opts(DType::f32, cuda())), lse = empty({2}, opts(DType::f32, cuda()));
  gpu_be().cross_entropy_fwd(loss.data<float>(), lse.data<float>(), x.data_ptr(), t.data<int64_t>(), 2, 5, ignore,
                             DType::f32);
  CHECK_THROWS_AS(gpu_be().synchronize(), std::out_of_range);
}
