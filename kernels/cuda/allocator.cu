// kernels/cuda/allocator.cu — the caching allocator and the backend's memory methods
// (alloc/free, host<->device copies, synchronize). See CachingAllocator in cuda_backend.cuh and
// the block scheme in kernels/block_pool.h.
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {
std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

// The driver of the block pool: cudaMalloc / cudaFree on this device. Out of memory is the one
// failure the pool handles (by returning free segments and retrying); anything else — typically a
// sticky error left by a faulted kernel, after which the context is unusable — is thrown as what
// it is, not reported as an out-of-memory.
BlockPool::Driver CachingAllocator::driver(int device) {
  return {[device](size_t n) -> void* {
            void* p = nullptr;
            const cudaError_t e = cudaMalloc(&p, n);
            if (e == cudaSuccess) return p;
            cudaGetLastError();  // clears a non-sticky error; a sticky one stays (and is reported below)
            if (e == cudaErrorMemoryAllocation) return nullptr;
            throw std::runtime_error("cudaMalloc of " + mib(n) + " on cuda:" + std::to_string(device) +
                                     " failed: " + cudaGetErrorString(e) +
                                     " (not an out-of-memory: an earlier kernel may have faulted; the CUDA context "
                                     "is unusable and the process must restart)");
          },
          [device](void* p) {
            const cudaError_t e = cudaFree(p);
            if (e != cudaSuccess) {
              cudaGetLastError();
              throw std::runtime_error("cudaFree on cuda:" + std::to_string(device) + " failed: " +
                                       cudaGetErrorString(e));
            }
          }};
}

void* CachingAllocator::alloc(size_t nbytes) {
  // Tensors can be freed from any thread (their last handle may die anywhere): one lock guards
  // the pools. A cache miss calls cudaMalloc (tens of microseconds, no synchronization); the steady
  // state of a training loop never gets there.
  std::lock_guard<std::mutex> lock(mu_);
  if (allocating_in_ == 0) return alloc_in(pool_, nbytes);
  void* p = alloc_in(*private_.at(allocating_in_).pool, nbytes);
  private_peak_ = std::max(private_peak_, allocated_locked());
  return p;
}

void* CachingAllocator::alloc_in(BlockPool& pool, size_t nbytes) {
  void* p = pool.alloc(nbytes);
  // A private pool cannot use the shared pool's cached segments: give those back and retry. (It
  // keeps its own free segments: the graph being recorded may already use their addresses.)
  if (!p && &pool != &pool_ && pool_.release_free_segments() > 0) p = pool.alloc(nbytes);
  if (p) return p;
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  cudaGetLastError();
  throw OutOfMemory("CUDA out of memory on cuda:" + std::to_string(device_) + ": tried to allocate " + mib(nbytes) +
                    "; tensors hold " + mib(allocated_locked()) + " (" + mib(pool_.reserved()) +
                    " reserved by ttt), the device has " + mib(free_b) + " free of " + mib(total_b));
}

// The block goes back to its pool, not to the driver: work already queued on the stream that
// still uses it runs before any later work that reuses it.
void CachingAllocator::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (private_.empty() || pool_.owns(p)) return pool_.free(p);
  for (auto it = private_.begin(); it != private_.end(); ++it) {
    BlockPool& pool = *it->second.pool;
    if (!pool.owns(p)) continue;
    pool.free(p);
    if (it->second.retired && pool.allocated() == 0) {
      pool.release_free_segments();
      private_.erase(it);
    }
    return;
  }
  pool_.free(p);  // throws: a pointer no pool handed out
}

int64_t CachingAllocator::begin_private() {
  std::lock_guard<std::mutex> lock(mu_);
  if (allocating_in_ != 0) throw std::logic_error("CUDA allocator: a private pool is already being allocated from");
  const int64_t id = next_private_++;
  private_[id] = PrivatePool{std::make_unique<BlockPool>(driver(device_), /*keep_segments=*/true), false};
  allocating_in_ = id;
  return id;
}

void CachingAllocator::end_private() {
  std::lock_guard<std::mutex> lock(mu_);
  allocating_in_ = 0;
}

void CachingAllocator::retire_private(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = private_.find(id);
  if (it == private_.end()) return;
  if (allocating_in_ == id) allocating_in_ = 0;
  it->second.retired = true;
  if (it->second.pool->allocated() == 0) {
    it->second.pool->release_free_segments();
    private_.erase(it);
  }
}

size_t CachingAllocator::allocated_locked() const {
  size_t n = pool_.allocated();
  for (const auto& [id, pp] : private_) n += pp.pool->allocated();
  return n;
}

size_t CachingAllocator::allocated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocated_locked();
}
// The shared pool's peak, or the peak seen while allocating from a private pool (the two pools
// together) when that was higher.
size_t CachingAllocator::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::max(pool_.peak(), private_peak_);
}
size_t CachingAllocator::reserved() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = pool_.reserved();
  for (const auto& [id, pp] : private_) n += pp.pool->reserved();
  return n;
}
void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  pool_.reset_peak();
  private_peak_ = 0;
}
// cudaFree waits for the device to go idle, so this is for memory pressure, not the hot path.
size_t CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  return pool_.release_free_segments();
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
  if (capturing_) return stage_upload(dst, src, n);
  // From pageable memory this returns once `src` has been staged, so the caller may reuse it.
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_));
}

// Returns once the bytes are on the host, so it is also where errors that kernels recorded since
// the last synchronization surface.
void CudaBackend::copy_to_host(void* dst, const void* src, size_t n) {
  if (capturing_) throw GraphCaptureError("copy_to_host while capturing a CUDA graph: the recorded work has not run");
  activate();
  if (n) CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  raise_device_error();
}

void CudaBackend::synchronize() {
  if (capturing_) throw GraphCaptureError("synchronize while capturing a CUDA graph: the recorded work has not run");
  activate();
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  raise_device_error();
}

}  // namespace ttt::cuda_impl
