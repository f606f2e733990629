// kernels/cuda/selective_scan.cu — launchers of the fused Mamba-1 selective scan
// (kernels/selective_scan.h; block bodies and design in selective_scan.cuh). Forward: one kernel,
// one block per (batch, 16 channels). Backward: the reverse walk (same grid), then two ordered
// reductions of its partials (dB, dC over channel blocks; dA, dD, dbias over the batch).
// Covered: float32, state 16, channels a multiple of 16 (the Mamba layers: d_inner = 2 d_model);
// anything else takes the composite path (selective_scan_unsupported says why).
// Tests: tests/test_cuda_selective_scan.cpp (GPU), tests/test_selective_scan_emulated.cpp (this
// source on the host SIMT emulator).
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace ttt::cuda_impl {

namespace {

using sscan::Params;

__global__ void __launch_bounds__(sscan::THREADS) selective_scan_fwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  sscan::fwd_block(p, static_cast<int>(blockIdx.x), smem);
}

__global__ void __launch_bounds__(sscan::THREADS) selective_scan_bwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  sscan::bwd_block(p, static_cast<int>(blockIdx.x), smem);
}

__global__ void selective_scan_reduce_bc_kernel(Params p, float* dB, float* dC, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    sscan::reduce_bc_at(i, p, dB, dC);
}

__global__ void selective_scan_reduce_params_kernel(Params p, float* dA, float* dD, float* dbias, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    sscan::reduce_params_at(i, p, dA, dD, dbias);
}

unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

}  // namespace

std::string selective_scan_unsupported(const SelectiveScanShape& s) {
  if (s.dtype != DType::f32) return "the CUDA selective scan runs float32 only";
  if (s.state != sscan::N) return "the CUDA selective scan needs state 16, got " + std::to_string(s.state);
  if (s.channels % sscan::CH != 0)
    return "the CUDA selective scan needs channels divisible by 16, got " + std::to_string(s.channels);
  if (s.batch * (s.channels / sscan::CH) > 0x7fffffff) return "too many (batch, channel block) pairs for one grid";
  return "";
}

size_t selective_scan_states_bytes(const SelectiveScanShape& s) { return sscan::states_elems(s) * sizeof(float); }
size_t selective_scan_workspace_bytes(const SelectiveScanShape& s) { return sscan::workspace_bytes(s); }

void selective_scan_forward(Backend& be0, SelectiveScanForward& c) {
  const std::string why = selective_scan_unsupported(c.s);
  if (!why.empty()) throw std::invalid_argument("selective_scan_fwd: " + why);
  CudaBackend& be = cuda_backend_of(be0, "selective_scan");
  if (c.s.batch == 0) return;
  if (c.s.len == 0) {  // nothing to walk: the final state is the initial one
    const size_t bytes = sizeof(float) * c.s.batch * c.s.channels * c.s.state;
    if (c.h_final && c.h0) CUDA_CHECK(cudaMemcpyAsync(c.h_final, c.h0, bytes, cudaMemcpyDeviceToDevice, be.stream()));
    else if (c.h_final) CUDA_CHECK(cudaMemsetAsync(c.h_final, 0, bytes, be.stream()));
    return;
  }
  const Params p = sscan::params_of(c);
  const unsigned grid = static_cast<unsigned>(p.batch * p.groups);
  selective_scan_fwd_kernel<<<grid, sscan::THREADS, sizeof(sscan::FwdSmem), be.stream()>>>(p);
  CUDA_CHECK_LAUNCH();
}

void selective_scan_backward(Backend& be0, SelectiveScanBackward& c) {
  const std::string why = selective_scan_unsupported(c.s);
  if (!why.empty()) throw std::invalid_argument("selective_scan_bwd: " + why);
  const SelectiveScanShape& s = c.s;
  CudaBackend& be = cuda_backend_of(be0, "selective_scan");
  cudaStream_t stream = be.stream();
  if (s.batch == 0 || s.len == 0) {  // nothing to walk: the parameter gradients are zero
    for (void* g : {c.dA, c.dD, c.dbias})
      if (g) CUDA_CHECK(cudaMemsetAsync(g, 0, sizeof(float) * s.channels * (g == c.dA ? s.state : 1), stream));
    return;
  }
  if (!c.states) throw std::invalid_argument("selective_scan_bwd: the forward's states are required on CUDA");
  const Params p = sscan::params_of(c);
  const unsigned grid = static_cast<unsigned>(p.batch * p.groups);
  selective_scan_bwd_kernel<<<grid, sscan::THREADS, sizeof(sscan::BwdSmem), stream>>>(p);
  CUDA_CHECK_LAUNCH();
  constexpr int kThreads = 256;
  const int64_t nbc = s.batch * s.len * sscan::N, npar = s.channels * sscan::N;
  selective_scan_reduce_bc_kernel<<<blocks_for(nbc, kThreads), kThreads, 0, stream>>>(
      p, static_cast<float*>(c.dB), static_cast<float*>(c.dC), nbc);
  CUDA_CHECK_LAUNCH();
  selective_scan_reduce_params_kernel<<<blocks_for(npar, kThreads), kThreads, 0, stream>>>(
      p, static_cast<float*>(c.dA), static_cast<float*>(c.dD), static_cast<float*>(c.dbias), npar);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
