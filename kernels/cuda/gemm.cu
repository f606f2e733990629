// kernels/cuda/gemm.cu — batched strided GEMM through cuBLASLt (classic cuBLAS where cuBLASLt has
// no algorithm for a problem, or its algorithm answers NOT_SUPPORTED; any other failure throws).
//
// The backend's GEMM is row-major: C = alpha op(A) op(B) + beta C. A row-major matrix with row
// stride ld is, read column-major, its transpose with leading dim ld, so we ask cuBLAS for the
// column-major product C^T = op(B)^T op(A)^T: operands swapped, m and n swapped, transpose flags
// kept. Supported: bf16 x bf16 -> bf16 or f32, f32 x f32 -> f32, f64 x f64 -> f64 (all with fp32
// or fp64 accumulation); f32 x f32 -> bf16 goes through an f32 scratch C.
//
// float32 GEMMs use exact fp32 arithmetic by default so they match the CPU reference; set
// TTT_ALLOW_TF32=1 to let cuBLAS round inputs to TF32 on the tensor cores (about 3 decimal
// digits, several times faster).
//
// Per distinct shape/layout/alignment a plan (descriptors + heuristic algorithm) is built once
// and cached; the handle and a 32 MiB workspace live as long as the backend.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/gemv.cuh"

namespace ttt::cuda_impl {

#define CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                  \
    cublasStatus_t ttt_st_ = (expr);                                                                    \
    if (ttt_st_ != CUBLAS_STATUS_SUCCESS)                                                               \
      throw std::runtime_error(std::string("cuBLAS error at ") + __FILE__ + ":" + std::to_string(__LINE__) + \
                               ": " + cublasGetStatusString(ttt_st_) + " (" #expr ")");                 \
  } while (0)

namespace {

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f64: return CUDA_R_64F;
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw std::invalid_argument(std::string("cuda gemm: unsupported dtype ") + dtype_name(t));
  }
}

// Largest power of two (<= 256) dividing the address of every batch item.
uint32_t alignment_of(const void* p, int64_t batch_stride, int64_t batch, size_t esize) {
  uint64_t v = reinterpret_cast<uintptr_t>(p);
  if (batch > 1) v |= static_cast<uint64_t>(batch_stride) * esize;
  uint32_t a = 1;
  while (a < 256 && (v & a) == 0) a <<= 1;
  return a;
}

// The column-major description of the cuBLAS call (see the file comment).
struct ColMajorCall {
  cublasOperation_t opa, opb;      // for A' = the row-major B, B' = the row-major A
  int64_t m, n, k;                 // of the column-major product
  int64_t a_rows, a_cols, lda;     // stored A' (= B)
  int64_t b_rows, b_cols, ldb;     // stored B' (= A)
  int64_t ldc;
};

ColMajorCall to_col_major(const GemmArgs& g) {
  ColMajorCall c;
  c.opa = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  c.opb = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  c.m = g.n;
  c.n = g.m;
  c.k = g.k;
  c.a_rows = g.trans_b ? g.k : g.n;
  c.a_cols = g.trans_b ? g.n : g.k;
  c.b_rows = g.trans_a ? g.m : g.k;
  c.b_cols = g.trans_a ? g.k : g.m;
  // A leading dim is never read when the stored matrix has a single column (one row-major
  // row); cuBLAS still insists that ld >= rows.
  c.lda = std::max<int64_t>({g.ldb, c.a_cols == 1 ? c.a_rows : 1, 1});
  c.ldb = std::max<int64_t>({g.lda, c.b_cols == 1 ? c.b_rows : 1, 1});
  c.ldc = std::max<int64_t>({g.ldc, g.m == 1 ? g.n : 1, 1});
  return c;
}

struct PlanKey {
  int64_t v[17];
  bool operator==(const PlanKey& o) const { return std::memcmp(v, o.v, sizeof(v)) == 0; }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = 1469598103934665603ull;
    for (int64_t x : k.v) h = (h ^ std::hash<int64_t>()(x)) * 1099511628211ull;
    return h;
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
};

}  // namespace

class GemmRunner {
 public:
  explicit GemmRunner(CudaBackend& be) : be_(be) {
    const char* tf32 = std::getenv("TTT_ALLOW_TF32");
    allow_tf32_ = tf32 && std::strcmp(tf32, "1") == 0;
    CUBLAS_CHECK(cublasLtCreate(&lt_));
    CUBLAS_CHECK(cublasCreate(&blas_));
    CUBLAS_CHECK(cublasSetStream(blas_, be.stream()));
    CUDA_CHECK(cudaMalloc(&workspace_, kWorkspace));
    CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_, kWorkspace));
    CUBLAS_CHECK(cublasSetMathMode(blas_, allow_tf32_ ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  }
  ~GemmRunner() {
    for (auto& [k, p] : plans_) {
      cublasLtMatmulDescDestroy(p.desc);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
    }
    cublasLtDestroy(lt_);
    cublasDestroy(blas_);
    cudaFree(workspace_);
  }

  // Enqueues one (batched) product on the backend's stream; alpha/beta are host scalars of the
  // scale type (float for fp32 compute, double for fp64).
  void run(const GemmArgs& g) {
    const ColMajorCall cm = to_col_major(g);
    const bool f64 = g.ab_dtype == DType::f64;
    const cublasComputeType_t compute =
        f64 ? CUBLAS_COMPUTE_64F
            : (g.ab_dtype == DType::f32 && allow_tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
    const float alpha_f = static_cast<float>(g.alpha), beta_f = static_cast<float>(g.beta);
    const void* alpha = f64 ? static_cast<const void*>(&g.alpha) : &alpha_f;
    const void* beta = f64 ? static_cast<const void*>(&g.beta) : &beta_f;
    const Plan& p = plan(g, cm, compute);
    if (p.has_algo) {
      cublasStatus_t st = cublasLtMatmul(lt_, p.desc, alpha, g.b, p.a, g.a, p.b, beta, g.c, p.c, g.c, p.c, &p.algo,
                                         workspace_, kWorkspace, be_.stream());
      if (st == CUBLAS_STATUS_SUCCESS) return;
      // Only "this algorithm cannot do that problem" may fall back; an execution failure (a
      // sticky kernel fault, an illegal address) must surface, not be retried on another path.
      if (st != CUBLAS_STATUS_NOT_SUPPORTED)
        throw std::runtime_error(std::string("cublasLtMatmul failed: ") + cublasGetStatusString(st) + " (m " +
                                 std::to_string(g.m) + ", n " + std::to_string(g.n) + ", k " + std::to_string(g.k) +
                                 ", batch " + std::to_string(g.batch) + ")");
      note_fallback(g);
    }
    // Fallback: classic cuBLAS handles every layout the backend can express.
    CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
        blas_, cm.opa, cm.opb, cm.m, cm.n, cm.k, alpha, g.b, cuda_type(g.ab_dtype), cm.lda, g.stride_b, g.a,
        cuda_type(g.ab_dtype), cm.ldb, g.stride_a, beta, g.c, cuda_type(g.c_dtype), cm.ldc, g.stride_c, g.batch,
        compute, CUBLAS_GEMM_DEFAULT));
  }

 private:
  static constexpr size_t kWorkspace = size_t{32} << 20;

  // Said once per runner: cuBLASLt's heuristic picked an algorithm that then declined the problem.
  void note_fallback(const GemmArgs& g) {
    if (fallback_noted_) return;
    fallback_noted_ = true;
    std::fprintf(stderr,
                 "note: cublasLtMatmul does not support a GEMM (m %lld, n %lld, k %lld, batch %lld, %s -> %s); "
                 "using classic cuBLAS for such products\n",
                 static_cast<long long>(g.m), static_cast<long long>(g.n), static_cast<long long>(g.k),
                 static_cast<long long>(g.batch), dtype_name(g.ab_dtype), dtype_name(g.c_dtype));
  }

  const Plan& plan(const GemmArgs& g, const ColMajorCall& cm, cublasComputeType_t compute) {
    const size_t ea = dtype_size(g.ab_dtype), ec = dtype_size(g.c_dtype);
    const uint32_t al_a = alignment_of(g.b, g.stride_b, g.batch, ea), al_b = alignment_of(g.a, g.stride_a, g.batch, ea),
                   al_c = alignment_of(g.c, g.stride_c, g.batch, ec);
    PlanKey key{{cm.opa, cm.opb, cm.m, cm.n, cm.k, cm.lda, cm.ldb, cm.ldc, g.stride_a, g.stride_b, g.stride_c, g.batch,
                 static_cast<int64_t>(g.ab_dtype) * 16 + static_cast<int64_t>(g.c_dtype), compute,
                 al_a | (int64_t{al_b} << 16) | (int64_t{al_c} << 32), g.beta != 0, 0}};
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;

    Plan p;
    const cudaDataType_t tab = cuda_type(g.ab_dtype), tc = cuda_type(g.c_dtype);
    const cudaDataType_t scale = compute == CUBLAS_COMPUTE_64F ? CUDA_R_64F : CUDA_R_32F;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, scale));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &cm.opa, sizeof(cm.opa)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &cm.opb, sizeof(cm.opb)));
    auto layout = [&](cublasLtMatrixLayout_t& l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                      int64_t stride) {
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
      if (g.batch > 1) {
        const int32_t count = static_cast<int32_t>(g.batch);
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
        CUBLAS_CHECK(
            cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
      }
    };
    layout(p.a, tab, cm.a_rows, cm.a_cols, cm.lda, g.stride_b);
    layout(p.b, tab, cm.b_rows, cm.b_cols, cm.ldb, g.stride_a);
    layout(p.c, tc, cm.m, cm.n, cm.ldc, g.stride_c);

    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kWorkspace;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, 4));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, 4));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, 4));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, 4));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
      p.algo = result.algo;
      p.has_algo = true;
    }
    return plans_.emplace(key, p).first->second;
  }

  CudaBackend& be_;
  bool allow_tf32_ = false;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans_;
  bool fallback_noted_ = false;
};

// Validates dtypes like the CPU, handles the cases cuBLAS does not (k == 0, f32 -> bf16), and
// hands the rest to the per-device GemmRunner under a lock (plans are shared state).
void CudaBackend::gemm(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (!is_floating(g.ab_dtype) || !is_floating(g.c_dtype) ||
      ((g.ab_dtype == DType::f64) != (g.c_dtype == DType::f64)))
    throw std::invalid_argument(std::string("cuda gemm: unsupported dtypes ") + dtype_name(g.ab_dtype) + " -> " +
                                dtype_name(g.c_dtype));
  activate();
  View c;  // C as a [batch, m, n] view, for the cases handled outside cuBLAS
  c.data = g.c;
  c.dtype = g.c_dtype;
  c.ndim = 3;
  c.size[0] = g.batch; c.size[1] = g.m; c.size[2] = g.n;
  c.stride[0] = g.stride_c; c.stride[1] = g.ldc; c.stride[2] = 1;
  if (g.k == 0) {  // an empty sum: C = beta * C; with beta = 0, C is not read (it may be garbage)
    if (g.beta == 0) fill(c, 0.0);
    else unary(UnaryOp::affine, c, c, g.beta, 0.0);
    return;
  }
  if (skinny_gemm_applies(g)) return skinny_gemm(g, stream());  // decoding's few rows (gemv.cu)
  if (g.batch > INT32_MAX)  // cuBLASLt's batch count is an int32
    throw std::invalid_argument("cuda gemm: batch " + std::to_string(g.batch) + " exceeds 2^31 - 1");
  if (g.ab_dtype == DType::f32 && g.c_dtype == DType::bf16) {
    // No cuBLAS kernel writes bf16 from f32 inputs: multiply into an f32 scratch, then round.
    Scratch c32(*this, static_cast<size_t>(g.batch * g.m * g.n) * sizeof(float));
    View f = c;
    f.data = c32.as<float>();
    f.dtype = DType::f32;
    f.stride[0] = g.m * g.n; f.stride[1] = g.n;
    if (g.beta != 0) unary(UnaryOp::copy, f, c, 0, 0);
    GemmArgs g32 = g;
    g32.c = f.data;
    g32.c_dtype = DType::f32;
    g32.ldc = g.n;
    g32.stride_c = g.m * g.n;
    gemm(g32);
    unary(UnaryOp::copy, c, f, 0, 0);
    return;
  }
  std::lock_guard<std::mutex> lock(gemm_mu_);
  if (!gemm_) gemm_ = std::make_shared<GemmRunner>(*this);
  gemm_->run(g);
}

}  // namespace ttt::cuda_impl
