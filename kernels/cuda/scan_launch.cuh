// kernels/cuda/scan_launch.cuh — what the fused-scan launchers (ttt_linear_scan.cu, ttt_mlp_scan.cu)
// share: the device's shared-memory limits, the backend's stream, and a launch of `blocks` blocks of
// one kernel configuration with its dynamic shared memory.
#pragma once

#include <algorithm>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl::scan_launch {

// An attribute of the current device (the device is fixed for the process: queried once per attribute).
template <cudaDeviceAttr A>
int device_attribute() {
  static const int v = [] {
    int dev = 0, s = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&s, A, dev));
    return s;
  }();
  return v;
}
inline int smem_optin() { return device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(); }
inline int smem_per_sm() { return device_attribute<cudaDevAttrMaxSharedMemoryPerMultiprocessor>(); }
inline int sm_count() { return device_attribute<cudaDevAttrMultiProcessorCount>(); }
inline int compute_major() { return device_attribute<cudaDevAttrComputeCapabilityMajor>(); }

// Whether a grid whose first `waiting` blocks wait for later ones (and the later ones for nothing)
// is sure to progress: the waiting blocks must leave an SM free for the others. With `waiting` at
// least the SM count (a small MIG slice, or a batch of many short sequences forced chunk-parallel)
// they could hold every SM and spin forever.
inline bool leaves_sm_free(int64_t waiting) { return waiting < sm_count(); }

// Dynamic shared memory of at least `need` bytes that also leaves room for only one block per SM
// (a latency-bound serial walk must not share its SM with other blocks of its grid).
inline size_t smem_one_block_per_sm(size_t need) {
  const size_t half = static_cast<size_t>(smem_per_sm()) / 2 + 1024;
  return std::max(need, std::min(half, static_cast<size_t>(smem_optin())));
}

inline cudaStream_t stream_of(Backend& be) { return static_cast<cudaStream_t>(be.native_stream()); }

// `blocks` blocks of `threads` threads with `smem` bytes of dynamic shared memory on be's stream.
template <class P>
void launch_blocks(void (*kernel)(P), int threads, int64_t blocks, size_t smem, const P& p, Backend& be) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream_of(be)>>>(p);
  CUDA_CHECK_LAUNCH();
}

// `blocks` blocks as clusters of `cluster` consecutive blocks (sm_90: the blocks of a cluster run at
// once on as many SMs and reach each other's shared memory).
template <class P>
void launch_clusters(void (*kernel)(P), int threads, int64_t blocks, int cluster, size_t smem, const P& p,
                     Backend& be) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(static_cast<unsigned>(threads));
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream_of(be);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(cluster);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, p));
  CUDA_CHECK_LAUNCH();
}

}  // namespace ttt::cuda_impl::scan_launch
