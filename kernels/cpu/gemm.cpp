// kernels/cpu/gemm.cpp — batched strided GEMM on the CPU.
// float32/float64 go to OpenBLAS (cblas_?gemm, row-major); bf16 operands are widened to float32
// first and the result rounded back. Small products (the 16x64 tiles of the TTT dual form) skip
// the BLAS call overhead with a plain loop and are spread over threads by batch.
#include <cblas.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/strided.h"

namespace ttt::cpu_impl {

namespace {

template <class T>
void small_gemm(const GemmArgs& g, const T* A, const T* B, T* C, double alpha, double beta) {
  // C[i][j] = alpha * sum_p op(A)[i][p] op(B)[p][j] + beta * C[i][j], accumulated in double.
  // op(B) is packed into a dense k x n buffer first so the inner loop (over j) is unit-stride and
  // vectorizes: acc[j] += a_ip * b[p][j].
  thread_local std::vector<double> packed, acc;
  packed.resize(static_cast<size_t>(g.k * g.n));
  acc.resize(static_cast<size_t>(g.n));
  for (int64_t p = 0; p < g.k; ++p)
    for (int64_t j = 0; j < g.n; ++j)
      packed[p * g.n + j] = static_cast<double>(g.trans_b ? B[j * g.ldb + p] : B[p * g.ldb + j]);
  for (int64_t i = 0; i < g.m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t p = 0; p < g.k; ++p) {
      const double a = static_cast<double>(g.trans_a ? A[p * g.lda + i] : A[i * g.lda + p]);
      const double* brow = packed.data() + p * g.n;
      double* out = acc.data();
      for (int64_t j = 0; j < g.n; ++j) out[j] += a * brow[j];
    }
    T* crow = C + i * g.ldc;
    for (int64_t j = 0; j < g.n; ++j)
      crow[j] = static_cast<T>(alpha * acc[j] + (beta == 0 ? 0.0 : beta * static_cast<double>(crow[j])));
  }
}

// cblas takes int dimensions and leading dims: larger ones would be silently truncated.
int blas_int(int64_t v, const char* what) {
  if (v > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string("cpu gemm: ") + what + " = " + std::to_string(v) +
                                " exceeds the BLAS int range (2^31 - 1)");
  return static_cast<int>(v);
}

void check_blas_dims(const GemmArgs& g) {
  blas_int(g.m, "m");
  blas_int(g.n, "n");
  blas_int(g.k, "k");
  blas_int(g.lda, "lda");
  blas_int(g.ldb, "ldb");
  blas_int(g.ldc, "ldc");
}

void blas_gemm(const GemmArgs& g, const float* A, const float* B, float* C) {
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), static_cast<float>(g.alpha), A,
              static_cast<int>(g.lda), B, static_cast<int>(g.ldb), static_cast<float>(g.beta), C,
              static_cast<int>(g.ldc));
}
void blas_gemm(const GemmArgs& g, const double* A, const double* B, double* C) {
  cblas_dgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), g.alpha, A,
              static_cast<int>(g.lda), B, static_cast<int>(g.ldb), g.beta, C, static_cast<int>(g.ldc));
}

template <class T> void gemm_typed(const GemmArgs& g) {
  const T* A = static_cast<const T*>(g.a);
  const T* B = static_cast<const T*>(g.b);
  T* C = static_cast<T*>(g.c);
  const bool small = g.m * g.n * g.k <= 64 * 64 * 64;
  if (small) {
#pragma omp parallel for schedule(static) if (g.batch > 1 && g.batch * g.m * g.n * g.k >= 1 << 16)
    for (int64_t i = 0; i < g.batch; ++i)
      small_gemm<T>(g, A + i * g.stride_a, B + i * g.stride_b, C + i * g.stride_c, g.alpha, g.beta);
  } else {
    check_blas_dims(g);  // the casts in blas_gemm are then exact
    for (int64_t i = 0; i < g.batch; ++i) blas_gemm(g, A + i * g.stride_a, B + i * g.stride_b, C + i * g.stride_c);
  }
}

// Widens `rows x cols` matrices (row stride ld, batch stride bs) to a dense float buffer.
std::vector<float> widen(const void* p, DType dt, int64_t rows, int64_t cols, int64_t ld, int64_t bs,
                         int64_t batch) {
  std::vector<float> out(static_cast<size_t>(batch * rows * cols));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        out[(b * rows + r) * cols + c] = static_cast<float>(load_as_double(p, dt, b * bs + r * ld + c));
  return out;
}

}  // namespace

void CpuBackend::gemm(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (g.ab_dtype == g.c_dtype && (g.ab_dtype == DType::f32 || g.ab_dtype == DType::f64)) {
    if (g.k == 0) {  // C = beta * C: an empty sum; with beta = 0, C is not read (it may be garbage)
      View c;
      c.data = g.c; c.dtype = g.c_dtype; c.ndim = 3;
      c.size[0] = g.batch; c.size[1] = g.m; c.size[2] = g.n;
      c.stride[0] = g.stride_c; c.stride[1] = g.ldc; c.stride[2] = 1;
      if (g.beta == 0) fill(c, 0.0);
      else unary(UnaryOp::affine, c, c, g.beta, 0.0);
      return;
    }
    if (g.ab_dtype == DType::f32) gemm_typed<float>(g);
    else gemm_typed<double>(g);
    return;
  }
  if (!is_floating(g.ab_dtype) || !is_floating(g.c_dtype) || g.ab_dtype == DType::f64 || g.c_dtype == DType::f64)
    throw std::invalid_argument(std::string("cpu gemm: unsupported dtypes ") + dtype_name(g.ab_dtype) + " -> " +
                                dtype_name(g.c_dtype));
  // bf16 / mixed: widen to float32, multiply, narrow into C.
  int64_t ar = g.trans_a ? g.k : g.m, ac = g.trans_a ? g.m : g.k;
  int64_t br = g.trans_b ? g.n : g.k, bc = g.trans_b ? g.k : g.n;
  auto A = widen(g.a, g.ab_dtype, ar, ac, g.lda, g.stride_a, g.batch);
  auto B = widen(g.b, g.ab_dtype, br, bc, g.ldb, g.stride_b, g.batch);
  auto C = widen(g.c, g.c_dtype, g.m, g.n, g.ldc, g.stride_c, g.batch);
  GemmArgs f = g;
  f.a = A.data(); f.lda = ac; f.stride_a = ar * ac;
  f.b = B.data(); f.ldb = bc; f.stride_b = br * bc;
  f.c = C.data(); f.ldc = g.n; f.stride_c = g.m * g.n;
  f.ab_dtype = f.c_dtype = DType::f32;
  if (g.beta == 0) std::fill(C.begin(), C.end(), 0.0f);
  if (g.k > 0) gemm_typed<float>(f);
  else for (auto& v : C) v *= static_cast<float>(g.beta);
  View src, dst;
  src.data = C.data(); src.dtype = DType::f32; src.ndim = 3;
  src.size[0] = dst.size[0] = g.batch; src.size[1] = dst.size[1] = g.m; src.size[2] = dst.size[2] = g.n;
  src.stride[0] = g.m * g.n; src.stride[1] = g.n; src.stride[2] = 1;
  dst.data = g.c; dst.dtype = g.c_dtype; dst.ndim = 3;
  dst.stride[0] = g.stride_c; dst.stride[1] = g.ldc; dst.stride[2] = 1;
  unary(UnaryOp::copy, dst, src, 0, 0);
}

}  // namespace ttt::cpu_impl
