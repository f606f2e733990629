// kernels/cuda/random_adamw.cu — counter-based random numbers (kernels/philox.h, the same code
// the CPU runs, so a seed gives the same tensor on both) and the fused AdamW step, per tensor
// (Backend::adamw) and over a list of tensors (AdamWMulti, kernels/multi_tensor.h).
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/multi_tensor.h"
#include "kernels/philox.h"
#include "kernels/scalar_math.h"

namespace ttt::cuda_impl {

namespace {

// Element i is a pure function of (seed, offset + i). The affine map to [a, b) or N(a, b^2) is
// done in double with explicit round-to-nearest operations: nvcc would otherwise fuse it into an
// FMA and round differently from the CPU.
template <class T>
__global__ void __launch_bounds__(kThreads) random_kernel(T* __restrict__ out, int64_t n, bool normal,
                                                          uint64_t seed, uint64_t offset, double a, double b) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const double width = b - a;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const uint64_t idx = offset + static_cast<uint64_t>(i);
    const double v = normal ? __dadd_rn(a, __dmul_rn(b, philox::normal(seed, idx)))
                            : __dadd_rn(a, __dmul_rn(width, static_cast<double>(philox::uniform(seed, idx))));
    out[i] = from_compute<T>(v);
  }
}

// --- AdamW ------------------------------------------------------------------------------------------
// Every element goes through smath::adamw_step (kernels/scalar_math.h): double math with each
// operation rounded on its own, so the per-tensor kernel, the multi-tensor kernel and the CPU
// reference give the same bits.

// Elements [b, e) of one tensor by the threads of a block (the per-tensor kernel: the whole grid),
// 16-byte vectors when VEC is 4. A null grad is a zero gradient.
// low (when not null): the updated weights rounded to bf16 as well (AdamWTensor::low).
template <class G, int VEC>
__device__ __forceinline__ void adamw_span(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                                           const G* __restrict__ g, bf16* __restrict__ low, int64_t b, int64_t e,
                                           int64_t first, int64_t step, double wd, const smath::AdamWScalars& s) {
  const int64_t nvec = (e - b) / VEC;
  for (int64_t j = first; j < nvec; j += step) {
    const int64_t o = b + j * VEC;
    Vec<float, VEC> pp = load_vec<VEC>(p + o), mm = load_vec<VEC>(m + o), vv = load_vec<VEC>(v + o);
    Vec<G, VEC> gg;
    if (g) gg = load_vec<VEC>(g + o);
#pragma unroll
    for (int k = 0; k < VEC; ++k)
      smath::adamw_step(pp.v[k], mm.v[k], vv.v[k], g ? static_cast<float>(to_compute(gg.v[k])) : 0.0f, wd, s);
    store_vec<VEC>(p + o, pp);
    store_vec<VEC>(m + o, mm);
    store_vec<VEC>(v + o, vv);
    if (low) {
#pragma unroll
      for (int k = 0; k < VEC; ++k) low[o + k] = bf16::from_float(pp.v[k]);
    }
  }
  for (int64_t o = b + nvec * VEC + first; o < e; o += step) {
    smath::adamw_step(p[o], m[o], v[o], g ? static_cast<float>(to_compute(g[o])) : 0.0f, wd, s);
    if (low) low[o] = bf16::from_float(p[o]);
  }
}

template <class G, int VEC>
__global__ void __launch_bounds__(kThreads) adamw_kernel(float* __restrict__ param, float* __restrict__ m,
                                                         float* __restrict__ v, const G* __restrict__ grad, int64_t n,
                                                         double wd, const __grid_constant__ smath::AdamWScalars s) {
  adamw_span<G, VEC>(param, m, v, grad, nullptr, 0, n, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                     static_cast<int64_t>(gridDim.x) * blockDim.x, wd, s);
}

// The multi-tensor kernel (kernels/multi_tensor.h). A launch's tensor table travels as the
// kernel's parameters (__grid_constant__: read in place from the constant bank, never copied per
// thread). 512 tensors take 31 KB of the 32 KB kernel parameters may hold (CUDA >= 12.1); a longer
// list takes more launches. Each block updates one chunk of kAdamWChunk elements (8 vectors per
// thread) and finds its tensor by a binary search over the tensors' cumulative chunk counts.
constexpr int kMultiTensors = 512;
constexpr int64_t kAdamWChunk = 8 * 4 * kThreads;
enum : uint8_t { kGradBf16 = 1, kGradZero = 2, kAligned = 4 };

struct AdamWTable {
  float* param[kMultiTensors];
  const void* grad[kMultiTensors];
  float* m[kMultiTensors];
  float* v[kMultiTensors];
  int64_t n[kMultiTensors];
  double wd[kMultiTensors];
  bf16* low[kMultiTensors];
  uint32_t chunk_end[kMultiTensors];  // chunks of tensors 0..i together
  uint8_t kind[kMultiTensors];        // kGradBf16 | kGradZero | kAligned
  int count;
};
static_assert(sizeof(AdamWTable) + sizeof(smath::AdamWScalars) <= 32764, "kernel parameters are limited to 32 KB");

__global__ void __launch_bounds__(kThreads) adamw_multi_kernel(const __grid_constant__ AdamWTable t,
                                                               const __grid_constant__ smath::AdamWScalars s) {
  const uint32_t c = blockIdx.x;
  int lo = 0, hi = t.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (t.chunk_end[mid] <= c) lo = mid + 1;
    else hi = mid;
  }
  const int64_t b = static_cast<int64_t>(c - (lo ? t.chunk_end[lo - 1] : 0u)) * kAdamWChunk;
  const int64_t e = b + kAdamWChunk < t.n[lo] ? b + kAdamWChunk : t.n[lo];
  const uint8_t kind = t.kind[lo];
  const void* g = kind & kGradZero ? nullptr : t.grad[lo];
  auto span = [&](auto gtag, auto vec) {
    using G = decltype(gtag);
    adamw_span<G, decltype(vec)::value>(t.param[lo], t.m[lo], t.v[lo], static_cast<const G*>(g), t.low[lo], b, e, threadIdx.x,
                                        blockDim.x, t.wd[lo], s);
  };
  using V4 = std::integral_constant<int, 4>;
  using V1 = std::integral_constant<int, 1>;
  if (kind & kGradBf16) {
    if (kind & kAligned) span(bf16{}, V4{});
    else span(bf16{}, V1{});
  } else {
    if (kind & kAligned) span(float{}, V4{});
    else span(float{}, V1{});
  }
}

}  // namespace

// Each element is independent, so any grid shape gives the same tensor as the CPU's loop.
void CudaBackend::random(const View& out, RandomDist dist, uint64_t seed, uint64_t offset, double a, double b) {
  if (!out.is_contiguous()) throw std::invalid_argument("random: output must be contiguous");
  const int64_t n = out.numel();
  if (n == 0) return;
  activate();
  dispatch_float(out.dtype, "random", [&](auto tag) {
    using T = decltype(tag);
    random_kernel<T><<<grid_for(n, kThreads, sm_count_), kThreads, 0, stream_>>>(
        static_cast<T*>(out.data), n, dist == RandomDist::normal, seed, offset, a, b);
    CUDA_CHECK_LAUNCH();
  });
}

// Memory-bound (26-28 bytes per parameter): 16-byte vectors when every pointer allows; the
// double arithmetic is free next to the traffic.
void CudaBackend::adamw(const AdamWArgs& a) {
  if (a.n == 0) return;
  if (a.grad_dtype != DType::f32 && a.grad_dtype != DType::bf16)
    throw std::invalid_argument(std::string("adamw: gradients must be float32 or bfloat16, got ") +
                                dtype_name(a.grad_dtype));
  activate();
  const smath::AdamWScalars s{a.lr, a.beta1, a.beta2, a.eps, a.bias_correction1, a.bias_correction2, a.grad_scale};
  auto launch = [&](auto gtag) {
    using G = decltype(gtag);
    const G* g = static_cast<const G*>(a.grad);
    const bool aligned = is_aligned(a.param, 16) && is_aligned(a.m, 16) && is_aligned(a.v, 16) &&
                         is_aligned(g, 4 * sizeof(G));
    if (aligned) {
      adamw_kernel<G, 4><<<grid_for(a.n / 4, kThreads, sm_count_), kThreads, 0, stream_>>>(a.param, a.m, a.v, g,
                                                                                           a.n, a.weight_decay, s);
    } else {
      adamw_kernel<G, 1><<<grid_for(a.n, kThreads, sm_count_), kThreads, 0, stream_>>>(a.param, a.m, a.v, g, a.n,
                                                                                       a.weight_decay, s);
    }
    CUDA_CHECK_LAUNCH();
  };
  if (a.grad_dtype == DType::bf16) launch(bf16{});
  else launch(float{});
}

// Tables of up to kMultiTensors tensors, one launch each; empty tensors are left out.
void adamw_multi(Backend& be0, const AdamWMulti& c) {
  CudaBackend& be = cuda_backend_of(be0, "adamw_multi");
  const smath::AdamWScalars s{c.lr, c.beta1, c.beta2, c.eps, c.bias_correction1, c.bias_correction2, c.grad_scale};
  auto table = std::make_unique<AdamWTable>();
  AdamWTable& t = *table;
  launch_in_tables(
      c.count, kMultiTensors, [&](size_t i) { return ceil_div(c.tensors[i].n, kAdamWChunk); },
      [&](int k, size_t i, int64_t blocks_end) {
        const AdamWTensor& x = c.tensors[i];
        const bool bf = x.grad && x.grad_dtype == DType::bf16;
        t.param[k] = x.param;
        t.grad[k] = x.grad;
        t.m[k] = x.m;
        t.v[k] = x.v;
        t.n[k] = x.n;
        t.wd[k] = x.weight_decay;
        t.low[k] = x.low;
        t.chunk_end[k] = static_cast<uint32_t>(blocks_end);
        const bool aligned = is_aligned(x.param, 16) && is_aligned(x.m, 16) && is_aligned(x.v, 16) &&
                             (!x.grad || is_aligned(x.grad, bf ? 8 : 16)) && (!x.low || is_aligned(x.low, 8));
        t.kind[k] = static_cast<uint8_t>((bf ? kGradBf16 : 0) | (x.grad ? 0 : kGradZero) | (aligned ? kAligned : 0));
      },
      [&](int entries, int64_t blocks) {
        t.count = entries;
        adamw_multi_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, be.stream()>>>(t, s);
        CUDA_CHECK_LAUNCH();
      });
}

}  // namespace ttt::cuda_impl
