// kernels/cuda/graph.cu — CUDA graphs of the backend's stream (the contract: kernels/backend.h,
// "graphs"). A decode step of a small model is hundreds of small kernels whose launches, not their
// work, set the time; recorded once and replayed, they cost one launch (layers/decode_graphs.h).
//
// The capture runs in relaxed mode: the allocator may still call cudaMalloc for a new segment of
// the graph's private pool (a call the stricter modes forbid while a thread captures).
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

int64_t CudaBackend::graph_begin_capture() {
  activate();
  if (capturing_) throw GraphCaptureError("graph_begin_capture: a capture is already under way on " + device().str());
  Graph g;
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&g.staging), kStagingBytes, cudaHostAllocDefault));
  const int64_t id = allocator_.begin_private();
  const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    cudaGetLastError();
    allocator_.end_private();
    allocator_.retire_private(id);
    cudaFreeHost(g.staging);
    throw GraphCaptureError(std::string("cudaStreamBeginCapture failed: ") + cudaGetErrorString(e));
  }
  graphs_[id] = g;
  capturing_ = id;
  return id;
}

void CudaBackend::stage_upload(void* dst, const void* src, size_t n) {
  Graph& g = graphs_.at(capturing_);
  const size_t at = (g.staging_used + 15) / 16 * 16;
  if (at + n > kStagingBytes)
    throw GraphCaptureError("a CUDA graph capture uploads more than " + std::to_string(kStagingBytes >> 10) +
                            " KiB of host values");
  std::memcpy(g.staging + at, src, n);
  g.staging_used = at + n;
  CUDA_CHECK(cudaMemcpyAsync(dst, g.staging + at, n, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::graph_end_capture(int64_t id) {
  if (capturing_ != id) throw GraphCaptureError("graph_end_capture: graph " + std::to_string(id) + " is not being captured");
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream_, &graph);
  capturing_ = 0;
  allocator_.end_private();
  if (e == cudaSuccess) {
    e = cudaGraphInstantiate(&graphs_.at(id).exec, graph, 0);
    cudaGraphDestroy(graph);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    graph_release(id);
    throw GraphCaptureError(std::string("CUDA graph capture failed: ") + cudaGetErrorString(e));
  }
}

void CudaBackend::graph_abort_capture(int64_t id) {
  if (capturing_ != id) return;
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream_, &graph);  // fails when the capture was invalidated: nothing to keep either way
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  capturing_ = 0;
  allocator_.end_private();
  graph_release(id);
}

void CudaBackend::graph_replay(int64_t id) {
  auto it = graphs_.find(id);
  if (it == graphs_.end() || !it->second.exec) throw GraphCaptureError("graph_replay: no graph " + std::to_string(id));
  activate();
  CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream_));
}

// The pool stays until its last block is freed: tensors made during the capture (a decoder's state)
// may outlive the graph. The staging buffer is freed by cudaFreeHost, which waits for the device
// (so a replay still in flight has read it) and so cannot run while another graph is captured.
void CudaBackend::graph_release(int64_t id) {
  auto it = graphs_.find(id);
  if (it == graphs_.end()) return;
  if (it->second.exec) cudaGraphExecDestroy(it->second.exec);
  staging_to_free_.push_back(it->second.staging);
  graphs_.erase(it);
  allocator_.retire_private(id);
  if (capturing_) return;
  for (char* p : staging_to_free_) cudaFreeHost(p);
  staging_to_free_.clear();
}

}  // namespace ttt::cuda_impl
