// kernels/cuda/gemv.cu — products with few rows (decoding: a token per sequence), C = α A Bᵀ + β C
// with A [m, k] row-major, m <= kSkinnyMaxRows, and B [n, k] row-major (a Linear's weight): one warp
// per output column n reads B's row n once in 16-byte pieces and A's m rows (small, cached), sums in
// float32 and reduces across the warp. A decoded token of the 125M runs ~100 such products; with
// this path instead of cuBLASLt its graphed step went from 1.010 to 0.893 ms on an H200.
// Operands float32 or bf16 (the same dtype), C float32 or bf16, any batch with strides.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/gemv.cuh"

namespace ttt::cuda_impl {

namespace {

constexpr int kGemvWarps = 8;  // output columns per block

template <class T, class TC, int M>
__global__ void __launch_bounds__(kGemvWarps * 32) skinny_kernel(GemmArgs g) {
  constexpr int V = 16 / sizeof(T);  // elements per 16-byte piece
  const int lane = threadIdx.x % 32;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32, batch = blockIdx.y;
  if (col >= g.n) return;
  const T* a = static_cast<const T*>(g.a) + batch * g.stride_a;
  const T* b = static_cast<const T*>(g.b) + batch * g.stride_b + col * g.ldb;
  float acc[M] = {};
#pragma unroll 4  // several pieces of B in flight per lane (a 1.3B model's rows are 4 KB)
  for (int64_t k0 = int64_t{lane} * V; k0 < g.k; k0 += 32 * V) {
    const Vec<T, V> bv = load_vec<V>(b + k0);
    float bf[V];
#pragma unroll
    for (int e = 0; e < V; ++e) bf[e] = to_compute(bv.v[e]);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if (r >= g.m) break;
      const Vec<T, V> av = load_vec<V>(a + r * g.lda + k0);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[r] += to_compute(av.v[e]) * bf[e];
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    if (r >= g.m) break;
    float s = acc[r];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) {
      TC* c = static_cast<TC*>(g.c) + batch * g.stride_c + r * g.ldc + col;
      const float prev = g.beta != 0 ? to_compute(*c) : 0.f;
      *c = from_compute<TC>(static_cast<float>(g.alpha) * s + static_cast<float>(g.beta) * prev);
    }
  }
}

template <class T, class TC>
void launch(const GemmArgs& g, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((g.n + kGemvWarps - 1) / kGemvWarps), static_cast<unsigned>(g.batch));
  if (g.m <= 1) skinny_kernel<T, TC, 1><<<grid, kGemvWarps * 32, 0, stream>>>(g);
  else skinny_kernel<T, TC, kSkinnyMaxRows><<<grid, kGemvWarps * 32, 0, stream>>>(g);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

bool skinny_gemm_applies(const GemmArgs& g) {
  if (g.trans_a || !g.trans_b || g.m < 1 || g.m > kSkinnyMaxRows || g.batch > 65535) return false;
  if (g.ab_dtype != DType::bf16 && g.ab_dtype != DType::f32) return false;
  if (g.c_dtype != DType::bf16 && g.c_dtype != DType::f32) return false;
  const int64_t per16 = 16 / static_cast<int64_t>(dtype_size(g.ab_dtype));
  const bool a_ok = is_aligned(g.a, 16) && (g.m == 1 || g.lda % per16 == 0) && (g.batch == 1 || g.stride_a % per16 == 0);
  const bool b_ok = is_aligned(g.b, 16) && g.ldb % per16 == 0 && (g.batch == 1 || g.stride_b % per16 == 0);
  return g.k % per16 == 0 && a_ok && b_ok;
}

void skinny_gemm(const GemmArgs& g, cudaStream_t stream) {
  const bool bf_ab = g.ab_dtype == DType::bf16, bf_c = g.c_dtype == DType::bf16;
  if (bf_ab && bf_c) launch<bf16, bf16>(g, stream);
  else if (bf_ab) launch<bf16, float>(g, stream);
  else if (bf_c) launch<float, bf16>(g, stream);
  else launch<float, float>(g, stream);
}

}  // namespace ttt::cuda_impl
