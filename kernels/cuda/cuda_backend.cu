// kernels/cuda/cuda_backend.cu — creation of the per-device CUDA backends, the device guard and
// the reporting of errors that kernels recorded. The compute methods live in the family files
// (see cuda_backend.cuh).
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.cuh"

namespace ttt {

namespace cuda_impl {

CudaBackend::CudaBackend(int index) : index_(index), allocator_(index) {
  CUDA_CHECK(cudaSetDevice(index));
  CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, index));
  // Non-blocking: never implicitly synchronizes with the legacy default stream.
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&error_host_), sizeof(DeviceError), cudaHostAllocMapped));
  *error_host_ = DeviceError{kErrNone, 0, 0, 0};
  CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&error_dev_), error_host_, 0));
}

CudaBackend::~CudaBackend() {
  // Never reached for the registered backends (they live until exit); kept for completeness.
  cudaStreamDestroy(stream_);
  cudaFreeHost(error_host_);
}

void CudaBackend::activate() const {
  int cur = -1;
  cudaGetDevice(&cur);
  if (cur != index_) CUDA_CHECK(cudaSetDevice(index_));
}

void CudaBackend::raise_device_error() {
  volatile DeviceError* e = error_host_;
  const int code = e->code;
  if (code == kErrNone) return;
  const long long v = e->value, bound = e->bound;
  e->code = kErrNone;
  const char* op = code == kErrIndexSelect  ? "index_select"
                   : code == kErrIndexAdd   ? "index_add"
                   : code == kErrCrossEntropy ? "cross_entropy (target)"
                                              : "kernel";
  throw std::out_of_range(std::string(op) + " on " + device().str() + ": index " + std::to_string(v) +
                          " out of range [0, " + std::to_string(bound) +
                          ") (reported by the GPU at the next synchronization; results since are invalid)");
}

}  // namespace cuda_impl

int cuda_device_count_impl() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: not an error for a CPU run
    return 0;
  }
  return n;
}
bool cuda_built_impl() { return true; }

Backend* cuda_backend_instance(int index) {
  static std::mutex mu;
  // Raw pointers on purpose: the backends must outlive every static Tensor.
  static std::vector<cuda_impl::CudaBackend*> backends;
  std::lock_guard<std::mutex> lock(mu);
  if (backends.empty()) backends.resize(static_cast<size_t>(cuda_device_count_impl()), nullptr);
  if (index < 0 || index >= static_cast<int>(backends.size())) return nullptr;
  if (!backends[index]) backends[index] = new cuda_impl::CudaBackend(index);
  return backends[index];
}

}  // namespace ttt
