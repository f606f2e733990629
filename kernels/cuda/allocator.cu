// kernels/cuda/allocator.cu — the caching allocator and the backend's memory methods
// (alloc/free, host<->device copies, synchronize). See CachingAllocator in cuda_backend.cuh.
#include <cstdio>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {
constexpr size_t kSmallLimit = size_t{1} << 20;  // below: 512 B classes
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;  // above: 2 MiB classes

std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

// Coarse classes keep the number of distinct sizes small, so a block freed by one step fits the
// same request of the next step; the cost is up to 511 B (small) or 2 MiB - 1 B (large) of slack.
size_t CachingAllocator::round_size(size_t n) {
  if (n < kSmallLimit) return std::max(kSmallRound, (n + kSmallRound - 1) / kSmallRound * kSmallRound);
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

void* CachingAllocator::alloc(size_t nbytes) {
  const size_t size = round_size(nbytes);
  // Tensors can be freed from any thread (their last handle may die anywhere): one lock guards
  // the lists and the counters.
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = cached_.find(size);
  if (it != cached_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
  } else {
    // Cache miss: a new block from the driver. cudaMalloc synchronizes nothing, but it is slow
    // (tens of microseconds), which is why the steady state must not reach this line.
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      // Give the cached blocks back to the driver and try once more.
      cudaGetLastError();
      for (auto& [sz, blocks] : cached_)
        for (void* q : blocks) {
          cudaFree(q);
          reserved_ -= sz;
        }
      cached_.clear();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      // Clear the sticky "last error" so later launch checks do not report this failure.
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw OutOfMemory("CUDA out of memory on cuda:" + std::to_string(device_) + ": tried to allocate " +
                        mib(nbytes) + "; tensors hold " + mib(allocated_) + " (" + mib(reserved_) +
                        " reserved by ttt), the device has " + mib(free_b) + " free of " + mib(total_b) +
                        " (" + cudaGetErrorString(e) + ")");
    }
    reserved_ += size;
  }
  live_.emplace(p, size);
  allocated_ += size;
  peak_ = std::max(peak_, allocated_);
  return p;
}

// The block goes back to its class's list, not to the driver: work already queued on the
// stream that still uses it runs before any later work that reuses it.
void CachingAllocator::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) throw std::logic_error("CUDA allocator: free of a pointer it did not allocate");
  allocated_ -= it->second;
  cached_[it->second].push_back(p);
  live_.erase(it);
}

size_t CachingAllocator::allocated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocated_;
}
size_t CachingAllocator::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}
size_t CachingAllocator::reserved() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reserved_;
}
void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = allocated_;
}
// cudaFree waits for the device to go idle, so this is for memory pressure, not the hot path.
size_t CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t released = 0;
  for (auto& [sz, blocks] : cached_)
    for (void* q : blocks) {
      cudaFree(q);
      released += sz;
    }
  reserved_ -= released;
  cached_.clear();
  return released;
}

// --- backend memory methods -----------------------------------------------------------------------

void* CudaBackend::alloc(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  activate();
  return allocator_.alloc(nbytes);
}

void CudaBackend::free(void* p, size_t) {
  if (!p) return;
  allocator_.free(p);
}

void CudaBackend::copy_from_host(void* dst, const void* src, size_t n) {
  if (n == 0) return;
  activate();
  // From pageable memory this returns once `src` has been staged, so the caller may reuse it.
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_));
}

// Returns once the bytes are on the host, so it is also where errors that kernels recorded since
// the last synchronization surface.
void CudaBackend::copy_to_host(void* dst, const void* src, size_t n) {
  activate();
  if (n) CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  raise_device_error();
}

void CudaBackend::synchronize() {
  activate();
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  raise_device_error();
}

}  // namespace ttt::cuda_impl
