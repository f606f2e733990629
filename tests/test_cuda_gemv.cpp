// tests/test_cuda_gemv.cpp — the CUDA GEMM's path for few rows (kernels/cuda/gemv.cu: A [m, k] times
// a transposed B [n, k], m <= 4, the products of decoding) against the CPU reference: row counts
// 1..17 (past the skinny path too), widths from 8 to a vocabulary, bf16 and float32 operands into float32 or
// bf16, α and β, batches with strides and a broadcast A, padded leading dims; C poisoned with NaN
// where β = 0 (an element the kernel forgets stays NaN), and its padding columns untouched.
#include "tests/cuda_test_util.h"

using namespace ttt;
using namespace ttt::cudatest;

namespace {

struct Case {
  int64_t m, n, k, batch;
  bool bcast_a;
  DType ab, c;
  double alpha, beta;
};

void check(const Case& t, Generator& gen) {
  const int64_t lda = t.k + 8, ldb = t.k + 16, ldc = t.n + 3;  // 16-byte multiples for A and B
  Pair A = random_pair({t.bcast_a ? 1 : t.batch, t.m, lda}, t.ab, gen);
  Pair B = random_pair({t.batch, t.n, ldb}, t.ab, gen);
  Pair C = t.beta == 0 ? poisoned({t.batch, t.m, ldc}, t.c) : random_pair({t.batch, t.m, ldc}, t.c, gen);
  for (int dev = 0; dev < 2; ++dev) {
    GemmArgs g;
    g.trans_a = false, g.trans_b = true;
    g.m = t.m, g.n = t.n, g.k = t.k, g.alpha = t.alpha, g.beta = t.beta;
    g.a = (dev ? A.g : A.c).data_ptr(), g.lda = lda, g.stride_a = t.bcast_a ? 0 : t.m * lda;
    g.b = (dev ? B.g : B.c).data_ptr(), g.ldb = ldb, g.stride_b = t.n * ldb;
    g.c = (dev ? C.g : C.c).data_ptr(), g.ldc = ldc, g.stride_c = t.m * ldc;
    g.batch = t.batch, g.ab_dtype = t.ab, g.c_dtype = t.c;
    (dev ? gpu_be() : cpu_be()).gemm(g);
  }
  const double sk = std::sqrt(static_cast<double>(t.k));
  const Tol tol = t.c == DType::bf16 ? Tol{1e-3 * sk, 1e-2} : Tol{1e-5 * sk, 1e-5};
  // Where β = 0 the used columns must be numbers (no NaN survives), the padding NaN on both.
  if (t.beta == 0) {
    const Tensor used = C.g.narrow(2, 0, t.n).to(cpu()).to(DType::f64);
    CHECK_MESSAGE(!std::isnan(sum(used).item()), "an output element was not written");
  }
  expect_close(C, tol, "m" + std::to_string(t.m) + " n" + std::to_string(t.n) + " k" + std::to_string(t.k) + " batch" +
                           std::to_string(t.batch) + (t.bcast_a ? " (A broadcast) " : " ") + dname(t.ab) + "->" +
                           dname(t.c) + " beta " + std::to_string(t.beta));
}

}  // namespace

TEST_CASE("cuda gemm with few rows (decoding's products) equals the CPU reference") {
  TTT_REQUIRE_GPU();
  Generator gen(31);
  const std::vector<std::pair<DType, DType>> dts = {
      {DType::bf16, DType::f32}, {DType::bf16, DType::bf16}, {DType::f32, DType::f32}, {DType::f32, DType::bf16}};
  for (int64_t m = 1; m <= 17; ++m)
    for (const auto& [ab, c] : dts) check({m, 37, 264, 1, false, ab, c, 1.0, 0.0}, gen);
  for (const auto& [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {12, 768}, {2304, 768}, {768, 2048}, {32000, 768}})
    for (const auto& [ab, c] : dts) {
      check({1, n, k, 1, false, ab, c, 1.0, 0.0}, gen);
      check({4, n, k, 1, false, ab, c, 1.5, 0.5}, gen);
    }
  for (bool bcast : {false, true}) check({3, 50, 128, 4, bcast, DType::bf16, DType::f32, 0.5, 0.0}, gen);
}
