// kernels/cuda/random_adamw.cu — counter-based random numbers (kernels/philox.h, the same code
// the CPU runs, so a seed gives the same tensor on both) and the fused AdamW step.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/philox.h"

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

// One AdamW step per element, in double like the CPU reference (see AdamWArgs in backend.h).
struct AdamWScalars {
  double lr, b1, b2, eps, wd, bc1, bc2, scale;
};
template <class G>
__device__ __forceinline__ void adamw_one(float& p, float& m, float& v, G graw, const AdamWScalars& s) {
  const double g = static_cast<double>(to_compute(graw)) * s.scale;
  const double m2 = s.b1 * m + (1 - s.b1) * g;
  const double v2 = s.b2 * v + (1 - s.b2) * g * g;
  m = static_cast<float>(m2);
  v = static_cast<float>(v2);
  double pd = p;
  pd -= s.lr * ((m2 / s.bc1) / (::sqrt(v2 / s.bc2) + s.eps) + s.wd * pd);
  p = static_cast<float>(pd);
}

template <class G, int VEC>
__global__ void __launch_bounds__(kThreads) adamw_kernel(float* __restrict__ param, float* __restrict__ m,
                                                         float* __restrict__ v, const G* __restrict__ grad, int64_t n,
                                                         AdamWScalars s) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nvec = n / VEC;
  for (int64_t i = tid; i < nvec; i += step) {
    Vec<float, VEC> p = load_vec<VEC>(param + i * VEC), mm = load_vec<VEC>(m + i * VEC),
                    vv = load_vec<VEC>(v + i * VEC);
    const Vec<G, VEC> g = load_vec<VEC>(grad + i * VEC);
#pragma unroll
    for (int j = 0; j < VEC; ++j) adamw_one(p.v[j], mm.v[j], vv.v[j], g.v[j], s);
    store_vec<VEC>(param + i * VEC, p);
    store_vec<VEC>(m + i * VEC, mm);
    store_vec<VEC>(v + i * VEC, vv);
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += step) adamw_one(param[i], m[i], v[i], grad[i], s);
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
  const AdamWScalars s{a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.bias_correction1, a.bias_correction2,
                       a.grad_scale};
  auto launch = [&](auto gtag) {
    using G = decltype(gtag);
    const G* g = static_cast<const G*>(a.grad);
    const bool aligned = is_aligned(a.param, 16) && is_aligned(a.m, 16) && is_aligned(a.v, 16) &&
                         is_aligned(g, 4 * sizeof(G));
    if (aligned) {
      adamw_kernel<G, 4><<<grid_for(a.n / 4, kThreads, sm_count_), kThreads, 0, stream_>>>(a.param, a.m, a.v, g,
                                                                                           a.n, s);
    } else {
      adamw_kernel<G, 1><<<grid_for(a.n, kThreads, sm_count_), kThreads, 0, stream_>>>(a.param, a.m, a.v, g, a.n,
                                                                                       s);
    }
    CUDA_CHECK_LAUNCH();
  };
  if (a.grad_dtype == DType::bf16) launch(bf16{});
  else launch(float{});
}

}  // namespace ttt::cuda_impl
