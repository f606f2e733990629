// kernels/cuda/cuda_backend.cu — registration of the CUDA backend (skeleton; kernels to come).
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace ttt {

namespace {
[[noreturn]] void not_yet(const char* what) {
  throw std::runtime_error(std::string("CUDA backend: ") + what + " is not implemented yet");
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index) {}
  Device device() const override { return cuda(index_); }
  void* alloc(size_t nbytes) override {
    cudaSetDevice(index_);
    void* p = nullptr;
    if (cudaMalloc(&p, nbytes) != cudaSuccess) throw OutOfMemory("out of GPU memory on " + device().str());
    return p;
  }
  void free(void* p, size_t) override { cudaFree(p); }
  void copy_from_host(void* dst, const void* src, size_t n) override { cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice); }
  void copy_to_host(void* dst, const void* src, size_t n) override { cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost); }
  void synchronize() override { cudaDeviceSynchronize(); }
  size_t memory_allocated() const override { return 0; }
  size_t memory_peak() const override { return 0; }
  void reset_peak_memory() override {}
  void fill(const View&, double) override { not_yet("fill"); }
  void unary(UnaryOp, const View&, const View&, double, double) override { not_yet("unary"); }
  void binary(BinaryOp, const View&, const View&, const View&) override { not_yet("binary"); }
  void where(const View&, const View&, const View&, const View&) override { not_yet("where"); }
  void triangle(const View&, const View&, int64_t, bool, double) override { not_yet("triangle"); }
  void reduce(ReduceOp, const View&, const View&) override { not_yet("reduce"); }
  void argmax(const View&, const View&, int) override { not_yet("argmax"); }
  void cumsum(const View&, const View&, int) override { not_yet("cumsum"); }
  void gemm(const GemmArgs&) override { not_yet("gemm"); }
  void index_select(const View&, const View&, int, const View&) override { not_yet("index_select"); }
  void index_add(const View&, int, const View&, const View&) override { not_yet("index_add"); }
  void softmax_fwd(void*, const void*, int64_t, int64_t, DType, bool) override { not_yet("softmax"); }
  void softmax_bwd(void*, const void*, const void*, int64_t, int64_t, DType, bool) override { not_yet("softmax"); }
  void layer_norm_fwd(void*, float*, float*, const void*, const void*, const void*, int64_t, int64_t, double,
                      DType) override { not_yet("layer_norm"); }
  void layer_norm_bwd(void*, float*, float*, const void*, const void*, const float*, const float*, const void*,
                      int64_t, int64_t, DType) override { not_yet("layer_norm"); }
  void rms_norm_fwd(void*, float*, const void*, const void*, int64_t, int64_t, double, DType) override {
    not_yet("rms_norm");
  }
  void rms_norm_bwd(void*, float*, const void*, const void*, const float*, const void*, int64_t, int64_t,
                    DType) override { not_yet("rms_norm"); }
  void cross_entropy_fwd(float*, float*, const void*, const int64_t*, int64_t, int64_t, int64_t, DType) override {
    not_yet("cross_entropy");
  }
  void cross_entropy_bwd(void*, const float*, const void*, const float*, const int64_t*, int64_t, int64_t, int64_t,
                         DType) override { not_yet("cross_entropy"); }
  bool attention_supported(int64_t, DType) const override { return false; }
  void attention_fwd(void*, float*, const void*, const void*, const void*, const AttentionShape&, DType) override {
    not_yet("attention");
  }
  void attention_bwd(void*, void*, void*, const void*, const void*, const void*, const void*, const void*,
                     const float*, const AttentionShape&, DType) override { not_yet("attention"); }
  void random(const View&, RandomDist, uint64_t, uint64_t, double, double) override { not_yet("random"); }
  void adamw(const AdamWArgs&) override { not_yet("adamw"); }

 private:
  int index_;
};
}  // namespace

int cuda_device_count_impl() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}
bool cuda_built_impl() { return true; }

Backend* cuda_backend_instance(int index) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CudaBackend>> backends;
  std::lock_guard<std::mutex> lock(mu);
  if (backends.empty()) backends.resize(static_cast<size_t>(cuda_device_count_impl()));
  if (index < 0 || index >= static_cast<int>(backends.size())) return nullptr;
  if (!backends[index]) backends[index] = std::make_unique<CudaBackend>(index);
  return backends[index].get();
}

}  // namespace ttt
