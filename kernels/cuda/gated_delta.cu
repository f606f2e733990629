// kernels/cuda/gated_delta.cu — launchers of the fused gated delta rule (kernels/gated_delta.h;
// block bodies and design in gated_delta.cuh). Forward: one kernel, one block per (value slice of
// 32 columns, batch · head). Backward: the forward walk keeping a checkpoint every 64 tokens, the
// reverse walk (same grid), then one ordered reduction of the slices' partial dq, dk, dg, dβ.
// Covered: float32, key head dim ≤ 256 (any value head dim); anything else takes the composite
// path (gated_delta_unsupported says why). With GatedDeltaShape::chunked the chunked WY kernels
// of gated_delta_chunk.cu run instead (key head dims ≤ 128). The CPU reference's `chunk` (its
// checkpoint interval) does not apply: these kernels keep states every 64 tokens and every S (4,
// or 2 from ROWS 32) inside them. Tests: tests/test_gated_delta_emulated.cpp (this source on the host SIMT emulator),
// tests/test_cuda_gated_delta.cpp (on a GPU).
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/gated_delta.cuh"

namespace ttt::cuda_impl {

namespace {

using gdelta::Params;

template <int ROWS, bool ERASE>
__global__ void __launch_bounds__(gdelta::THREADS) gated_delta_fwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdelta::fwd_block<ROWS, ERASE>(p, static_cast<int64_t>(blockIdx.x), smem);
}

template <int ROWS, bool ERASE>
__global__ void __launch_bounds__(gdelta::THREADS) gated_delta_bwd_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdelta::bwd_block<ROWS, ERASE>(p, static_cast<int64_t>(blockIdx.x), smem);
}

__global__ void gated_delta_reduce_kernel(Params p, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    gdelta::reduce_at(p, e);
}

template <class K> void launch(K kernel, int64_t blocks, size_t smem, cudaStream_t stream, const Params& p) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<static_cast<unsigned>(blocks), gdelta::THREADS, smem, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

// The forward (or checkpoint) walk and the backward walk for p.rows and p.erase.
void launch_fwd(const Params& p, int64_t blocks, cudaStream_t stream) {
  gdelta::with_rows(p.rows, [&](auto r) {
    constexpr int R = decltype(r)::value;
    const size_t smem = sizeof(gdelta::FwdSmem<R>);
    if (p.erase) launch(gated_delta_fwd_kernel<R, true>, blocks, smem, stream, p);
    else launch(gated_delta_fwd_kernel<R, false>, blocks, smem, stream, p);
  });
}
void launch_bwd(const Params& p, int64_t blocks, cudaStream_t stream) {
  gdelta::with_rows(p.rows, [&](auto r) {
    constexpr int R = decltype(r)::value;
    const size_t smem = sizeof(gdelta::BwdSmem<R>);
    if (p.erase) launch(gated_delta_bwd_kernel<R, true>, blocks, smem, stream, p);
    else launch(gated_delta_bwd_kernel<R, false>, blocks, smem, stream, p);
  });
}

int64_t blocks_of(const GatedDeltaShape& s) { return s.batch * s.heads * gdelta::slices_of(s); }

}  // namespace

std::string gated_delta_unsupported(const GatedDeltaShape& s) {
  if (s.dtype != DType::f32) return "the CUDA kernels run float32 (got " + std::string(dtype_name(s.dtype)) + ")";
  if (s.chunked) return gated_delta_chunk_unsupported(s);
  if (gdelta::rows_for(s.dk) == 0) return "the CUDA kernels cover key head dims up to 256, got " + std::to_string(s.dk);
  if (blocks_of(s) > 0x7fffffff) return "too many (batch, head, value slice) blocks for one grid";
  return "";
}

size_t gated_delta_forward_workspace(const GatedDeltaShape& s) {
  return s.chunked && s.len > 0 ? gated_delta_chunk_workspace(s, false) : 0;
}
size_t gated_delta_backward_workspace(const GatedDeltaShape& s) {
  if (s.chunked) return s.len > 0 ? gated_delta_chunk_workspace(s, true) : 0;
  return gdelta::workspace_of(s).total() * sizeof(float);
}

void gated_delta_forward(Backend& be0, GatedDeltaForward& c) {
  const GatedDeltaShape& s = c.s;
  const std::string why = gated_delta_unsupported(s);
  if (!why.empty()) throw std::invalid_argument("gated_delta_fwd on " + be0.device().str() + ": " + why);
  CudaBackend& be = cuda_backend_of(be0, "gated_delta");
  if (s.batch == 0) return;
  if (s.len == 0) {  // nothing to walk: the final state is the initial one
    const size_t bytes = sizeof(float) * s.batch * s.heads * s.dk * s.dv;
    if (c.M_final && c.M0) CUDA_CHECK(cudaMemcpyAsync(c.M_final, c.M0, bytes, cudaMemcpyDeviceToDevice, be.stream()));
    else if (c.M_final) CUDA_CHECK(cudaMemsetAsync(c.M_final, 0, bytes, be.stream()));
    return;
  }
  if (s.chunked) gated_delta_chunk_forward(be, c);
  else launch_fwd(gdelta::params_of(c), blocks_of(s), be.stream());
}

void gated_delta_backward(Backend& be0, GatedDeltaBackward& c) {
  const GatedDeltaShape& s = c.s;
  const std::string why = gated_delta_unsupported(s);
  if (!why.empty()) throw std::invalid_argument("gated_delta_bwd on " + be0.device().str() + ": " + why);
  CudaBackend& be = cuda_backend_of(be0, "gated_delta");
  cudaStream_t stream = be.stream();
  if (s.batch == 0) return;
  if (s.len == 0) {  // nothing to walk: dM0 = dM_final
    const size_t bytes = sizeof(float) * s.batch * s.heads * s.dk * s.dv;
    if (c.dM0 && c.dM_final) CUDA_CHECK(cudaMemcpyAsync(c.dM0, c.dM_final, bytes, cudaMemcpyDeviceToDevice, stream));
    else if (c.dM0) CUDA_CHECK(cudaMemsetAsync(c.dM0, 0, bytes, stream));
    return;
  }
  if (s.chunked) return gated_delta_chunk_backward(be, c);
  if (!c.workspace) throw std::invalid_argument("gated_delta_bwd: the workspace is required on CUDA");
  Params p = gdelta::params_of(c, static_cast<float*>(c.workspace));
  const int64_t blocks = blocks_of(s);
  // The checkpoint walk: the forward kernel with no outputs but the checkpoints.
  Params walk = p;
  walk.o = nullptr;
  walk.M_final = nullptr;
  launch_fwd(walk, blocks, stream);
  launch_bwd(p, blocks, stream);
  constexpr int kThreads = 256;
  const int64_t n = gdelta::reduce_elems(p);
  const int64_t grid = std::min<int64_t>((n + kThreads - 1) / kThreads, 8192);
  gated_delta_reduce_kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl
