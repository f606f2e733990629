// kernels/cuda/swiglu_grad.cu — SwiGLU's double backward on the GPU (math: kernels/swiglu_grad.h;
// reference: kernels/cpu/swiglu_grad.cpp; test: tests/test_swiglu_grad.cpp): one grid-stride
// elementwise kernel over contiguous tensors, the same formulas in the same compute type as the CPU.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/scalar_math.h"
#include "kernels/swiglu_grad.h"

namespace ttt::cuda_impl {

namespace {

template <class T>
__global__ void __launch_bounds__(kThreads) swiglu_grad_kernel(const T* __restrict__ dy, const T* __restrict__ a,
                                                               const T* __restrict__ b, const T* __restrict__ Ga,
                                                               const T* __restrict__ Gb, T* __restrict__ gdy,
                                                               T* __restrict__ ga, T* __restrict__ gb, int64_t n) {
  using A = compute_t<T>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const A d = to_compute(dy[i]), x = to_compute(a[i]), y = to_compute(b[i]);
    const A u = Ga ? static_cast<A>(to_compute(Ga[i])) : A(0), v = Gb ? static_cast<A>(to_compute(Gb[i])) : A(0);
    const A s1 = smath::silu_grad(x);
    if (gdy) gdy[i] = from_compute<T>(u * y * s1 + v * smath::silu(x));
    if (ga) ga[i] = from_compute<T>(u * d * y * smath::silu_second(x) + v * d * s1);
    if (gb) gb[i] = from_compute<T>(u * d * s1);
  }
}

}  // namespace

void swiglu_grad_backward(Backend& be0, SwigluGradBackward& c) {
  if (c.n == 0) return;
  CudaBackend& be = cuda_backend_of(be0, "swiglu double backward");
  dispatch_float(c.dtype, "swiglu double backward", [&](auto tag) {
    using T = decltype(tag);
    swiglu_grad_kernel<T><<<grid_for(c.n, kThreads, be.sm_count()), kThreads, 0, be.stream()>>>(
        static_cast<const T*>(c.dy), static_cast<const T*>(c.a), static_cast<const T*>(c.b),
        static_cast<const T*>(c.ga_in), static_cast<const T*>(c.gb_in), static_cast<T*>(c.gdy), static_cast<T*>(c.ga),
        static_cast<T*>(c.gb), c.n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ttt::cuda_impl
