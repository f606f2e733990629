// kernels/cuda/gated_delta_chunk.cu — launchers of the chunked gated delta kernels (design and math
// in gated_delta_chunk.cuh and gated_delta_chunk_bwd.cuh), called by gated_delta.cu when
// GatedDeltaShape::chunked. Forward: prep (one block a chunk), the walk over chunks (one block a
// batch · head and 32 value columns), the outputs (one block a chunk). Backward: prep and the walk
// again (keeping T, the states and U), the reverse walk over chunks, the per-chunk gradients, and
// with groups of heads sharing q and k the ordered sum of their dq, dk.
// Tests: tests/test_gated_delta_chunk_emulated.cpp (this source on the host SIMT emulator),
// tests/test_cuda_gated_delta.cpp (on a GPU).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/gated_delta_chunk_bwd.cuh"

namespace ttt::cuda_impl {

namespace {

using gdchunk::Params;

template <bool E> __global__ void __launch_bounds__(gdchunk::THREADS) prep_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdchunk::prep_block<E>(p, static_cast<int64_t>(blockIdx.x), smem);
}
template <bool E> __global__ void __launch_bounds__(gdchunk::THREADS) state_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdchunk::state_block<E>(p, static_cast<int64_t>(blockIdx.x), smem);
}
__global__ void __launch_bounds__(gdchunk::THREADS) out_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdchunk::out_block(p, static_cast<int64_t>(blockIdx.x), smem);
}
template <bool E> __global__ void __launch_bounds__(gdchunk::THREADS) dstate_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdchunk::dstate_block<E>(p, static_cast<int64_t>(blockIdx.x), smem);
}
template <bool E> __global__ void __launch_bounds__(gdchunk::THREADS) grads_kernel(Params p) {
  extern __shared__ __align__(16) char smem[];
  gdchunk::grads_block<E>(p, static_cast<int64_t>(blockIdx.x), smem);
}
__global__ void reduce_kernel(Params p, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    gdchunk::reduce_at(p, e);
}

template <class K> void launch(K kernel, int64_t blocks, int smem_floats, cudaStream_t stream, const Params& p) {
  const int bytes = smem_floats * static_cast<int>(sizeof(float));
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  kernel<<<static_cast<unsigned>(blocks), gdchunk::THREADS, bytes, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

int64_t chunk_blocks(const Params& p) { return p.batch * p.heads * p.chunks; }
int64_t slice_blocks(const Params& p) { return p.batch * p.heads * p.slices; }

// prep and the walk over chunks (the forward's first two kernels; the backward's recomputation).
template <bool E> void prep_and_walk(const Params& p, cudaStream_t stream) {
  launch(prep_kernel<E>, chunk_blocks(p), gdchunk::prep_smem_floats(p.dk_dim), stream, p);
  launch(state_kernel<E>, slice_blocks(p), gdchunk::state_smem_floats(p.dk_dim), stream, p);
}

template <bool E> void forward(const Params& p, cudaStream_t stream) {
  prep_and_walk<E>(p, stream);
  launch(out_kernel, chunk_blocks(p), gdchunk::out_smem_floats(p.dk_dim), stream, p);
}

template <bool E> void backward(const Params& p, cudaStream_t stream) {
  Params walk = p;
  walk.M_final = nullptr;
  prep_and_walk<E>(walk, stream);
  launch(dstate_kernel<E>, slice_blocks(p), gdchunk::dstate_smem_floats(p.dk_dim), stream, p);
  launch(grads_kernel<E>, chunk_blocks(p), gdchunk::grads_smem_floats(p.dk_dim), stream, p);
  if (p.heads_per_group > 1) {
    constexpr int kThreads = 256;
    const int64_t n = gdchunk::reduce_elems(p);
    const int64_t grid = std::min<int64_t>((n + kThreads - 1) / kThreads, 8192);
    reduce_kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p, n);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

std::string gated_delta_chunk_unsupported(const GatedDeltaShape& s) {
  if (s.dk > gdchunk::MAX_DK)
    return "the chunked CUDA kernels cover key head dims up to " + std::to_string(gdchunk::MAX_DK) + ", got " +
           std::to_string(s.dk);
  if (s.batch * s.heads * std::max(gdchunk::chunks_of(s), gdchunk::slices_of(s)) > 0x7fffffff)
    return "too many (batch, head, chunk) blocks for one grid";
  return "";
}

size_t gated_delta_chunk_workspace(const GatedDeltaShape& s, bool backward) {
  return gdchunk::workspace_of(s, backward).total() * sizeof(float);
}

void gated_delta_chunk_forward(Backend& be0, GatedDeltaForward& c) {
  CudaBackend& be = cuda_backend_of(be0, "gated_delta");
  if (!c.workspace) throw std::invalid_argument("gated_delta_fwd (chunked): the workspace is required on CUDA");
  const Params p = gdchunk::params_of(c, static_cast<float*>(c.workspace));
  if (p.erase) forward<true>(p, be.stream());
  else forward<false>(p, be.stream());
}

void gated_delta_chunk_backward(Backend& be0, GatedDeltaBackward& c) {
  CudaBackend& be = cuda_backend_of(be0, "gated_delta");
  if (!c.workspace) throw std::invalid_argument("gated_delta_bwd (chunked): the workspace is required on CUDA");
  const Params p = gdchunk::params_of(c, static_cast<float*>(c.workspace));
  if (p.erase) backward<true>(p, be.stream());
  else backward<false>(p, be.stream());
}

}  // namespace ttt::cuda_impl
