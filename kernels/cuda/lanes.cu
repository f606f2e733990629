// kernels/cuda/lanes.cu — lanes of the CUDA backend (the contract: kernels/backend.h): streams
// beside the backend's own, for independent work that alone leaves most of the GPU idle.
//
// Fork: an event on the home stream, which every opened lane's stream waits for; the allocator
// holds frees from then on. set_lane: the calls that follow go to that lane's stream (every kernel
// file launches on stream(); cuBLAS takes it per call, with a workspace per stream, gemm.cu).
// Join: an event on every lane, which the home stream waits for; then the held blocks go back to
// their pools (the home stream's later work is ordered after every lane's).
//
// Why frees are held: the caching allocator hands a freed block out again at once, which is safe
// only when the next user is on the stream of the last one. With lanes, a block read by lane 2
// and dropped by the host while it enqueues lane 3's work would be reused by lane 3 while lane 2
// may still be reading it. Holding every free until the join costs the memory that the lanes'
// work frees meanwhile (one wave of a wavefront prefill).
#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {
// At most 16 lanes; TTT_MAX_LANES=n caps them lower (1: none, the work runs in order on one stream).
int max_lanes() {
  static const int n = [] {
    const char* env = std::getenv("TTT_MAX_LANES");
    if (!env) return 16;
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || v < 1)
      throw std::invalid_argument(std::string("TTT_MAX_LANES must be a lane count >= 1, got '") + env + "'");
    return static_cast<int>(std::min<long>(v, 16));
  }();
  return n;
}
}  // namespace

int CudaBackend::lanes_fork(int n) {
  if (lanes_open_ > 0) throw std::logic_error("lanes_fork on " + device().str() + ": lanes are already open");
  n = std::min(n, max_lanes());
  if (capturing_ || n <= 1) return 1;
  activate();
  while (static_cast<int>(lane_events_.size()) < n) {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    lane_events_.push_back(e);
  }
  while (static_cast<int>(lane_streams_.size()) < n - 1) {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    lane_streams_.push_back(s);
  }
  CUDA_CHECK(cudaEventRecord(lane_events_[0], home_));
  for (int k = 1; k < n; ++k) CUDA_CHECK(cudaStreamWaitEvent(lane_streams_[k - 1], lane_events_[0], 0));
  allocator_.hold_frees();
  lanes_open_ = n;
  return n;
}

void CudaBackend::set_lane(int k) {
  if (lanes_open_ == 0) {
    if (k == 0) return;
    throw std::logic_error("set_lane(" + std::to_string(k) + ") on " + device().str() + ": no lanes are open");
  }
  if (k < 0 || k >= lanes_open_)
    throw std::out_of_range("set_lane(" + std::to_string(k) + "): " + std::to_string(lanes_open_) + " lanes are open");
  stream_ = k == 0 ? home_ : lane_streams_[k - 1];
}

// The backend is back on its home stream with frees released even when a CUDA call here fails
// (the error, sticky, is thrown after).
void CudaBackend::lanes_join() {
  const int n = lanes_open_;
  if (n == 0) return;
  lanes_open_ = 0;
  stream_ = home_;
  activate();
  cudaError_t err = cudaSuccess;
  for (int k = 1; k < n && err == cudaSuccess; ++k) {
    err = cudaEventRecord(lane_events_[k], lane_streams_[k - 1]);
    if (err == cudaSuccess) err = cudaStreamWaitEvent(home_, lane_events_[k], 0);
  }
  allocator_.release_held();
  CUDA_CHECK(err);
}

}  // namespace ttt::cuda_impl
