// kernels/cuda/cuda_backend.cuh — the CUDA implementation of Backend (kernels/backend.h).
//
// One backend object per device, created on first use and never destroyed (tensors freed during
// static destruction must still find it). It owns:
//   - a non-blocking stream on which every kernel, copy and cuBLAS call of this device runs, so
//     work is ordered without device-wide syncs and a freed block can be reused at once;
//   - a caching allocator (no cudaMalloc in the steady state of a training loop);
//   - the cuBLASLt state (handle, workspace, per-shape plans), see gemm.cu;
//   - a small error slot in mapped host memory where kernels report bad indices (a GPU kernel
//     cannot throw); the next synchronize()/copy_to_host() turns it into an exception.
// The methods are defined by family in allocator.cu, elementwise.cu, reduce.cu, gemm.cu,
// index.cu, rows.cu, cross_entropy.cu, random_adamw.cu, fused.cu and attention.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"
#include "kernels/block_pool.h"
#include "kernels/cuda/cuda_common.cuh"

namespace ttt::cuda_impl {

namespace attn {
struct BwdArgs;  // attention.cuh
}

// --- errors found inside kernels -------------------------------------------------------------------

enum DeviceErrorCode : int { kErrNone = 0, kErrIndexSelect = 1, kErrIndexAdd = 2, kErrCrossEntropy = 3 };
struct DeviceError {
  int code;
  int pad;
  long long value;  // the offending index / target
  long long bound;  // the valid range is [0, bound)
};
// Records the first error only; later ones are dropped.
__device__ __forceinline__ void report_error(DeviceError* e, int code, int64_t value, int64_t bound) {
  if (atomicCAS(&e->code, 0, -1) == 0) {
    e->value = value;
    e->bound = bound;
    __threadfence_system();
    atomicExch(&e->code, code);
  }
}

// --- memory -------------------------------------------------------------------------------------------

// Caching allocator: kernels/block_pool.h's best-fit, block-splitting pool (bounded waste per
// block; cached memory serves any request that fits) over cudaMalloc, under a lock. All work of a
// device runs on one stream, so a block freed after kernels were enqueued on it can be reused by
// later work on that stream without waiting. When cudaMalloc runs out of memory, the fully free
// segments are returned and the call retried once before OutOfMemory; any other cudaMalloc or
// cudaFree failure (a sticky fault) is thrown as std::runtime_error naming it.
class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device), pool_(driver(device)) {}
  void* alloc(size_t nbytes);
  void free(void* p);
  size_t allocated() const;  // bytes in blocks handed out (rounded to 512 B)
  size_t peak() const;
  size_t reserved() const;   // bytes obtained from cudaMalloc (handed out + cached)
  void reset_peak();
  size_t release_cached();   // returns fully free segments to the driver; the bytes released

  // Private pools (graph capture, kernels/backend.h): between begin_private() and end_private()
  // every alloc() comes from a new pool of its own; free() finds a block's pool wherever it was
  // made. retire_private(): the pool's memory goes back to the driver once its last block is freed.
  int64_t begin_private();
  void end_private();
  void retire_private(int64_t id);

 private:
  static BlockPool::Driver driver(int device);
  void* alloc_in(BlockPool& pool, size_t nbytes);  // mu_ held
  size_t allocated_locked() const;                  // mu_ held
  int device_;
  mutable std::mutex mu_;
  BlockPool pool_;
  struct PrivatePool {
    std::unique_ptr<BlockPool> pool;
    bool retired = false;
  };
  std::map<int64_t, PrivatePool> private_;
  int64_t allocating_in_ = 0, next_private_ = 1;  // 0: the shared pool
  size_t private_peak_ = 0;
};

class GemmRunner;  // gemm.cu

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);
  ~CudaBackend() override;
  Device device() const override { return cuda(index_); }

  void* alloc(size_t nbytes) override;
  void free(void* p, size_t nbytes) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes) override;
  void synchronize() override;
  void* native_stream() override { return stream_; }  // the NCCL communicator orders its work after it
  size_t memory_allocated() const override { return allocator_.allocated(); }
  size_t memory_peak() const override { return allocator_.peak(); }
  void reset_peak_memory() override { allocator_.reset_peak(); }
  size_t memory_reserved() const override { return allocator_.reserved(); }

  void fill(const View& out, double value) override;
  void unary(UnaryOp op, const View& out, const View& in, double a, double b) override;
  void binary(BinaryOp op, const View& out, const View& a, const View& b) override;
  void where(const View& out, const View& cond, const View& a, const View& b) override;
  void triangle(const View& out, const View& in, int64_t diagonal, bool lower, double fill) override;

  void reduce(ReduceOp op, const View& out, const View& in) override;
  void argmax(const View& out, const View& in, int dim) override;
  void cumsum(const View& out, const View& in, int dim) override;

  void gemm(const GemmArgs& args) override;

  void index_select(const View& out, const View& in, int dim, const View& index) override;
  void index_add(const View& out, int dim, const View& index, const View& src) override;

  void softmax_fwd(void* y, const void* x, int64_t rows, int64_t cols, DType dt, bool log) override;
  void softmax_bwd(void* dx, const void* dy, const void* y, int64_t rows, int64_t cols, DType dt,
                   bool log) override;
  void layer_norm_fwd(void* y, float* mean, float* rstd, const void* x, const void* w, const void* b,
                      int64_t rows, int64_t cols, double eps, DType dt) override;
  void layer_norm_bwd(void* dx, float* dw, float* db, const void* dy, const void* x, const float* mean,
                      const float* rstd, const void* w, int64_t rows, int64_t cols, DType dt) override;
  void rms_norm_fwd(void* y, float* rstd, const void* x, const void* w, int64_t rows, int64_t cols,
                    double eps, DType dt) override;
  void rms_norm_bwd(void* dx, float* dw, const void* dy, const void* x, const float* rstd, const void* w,
                    int64_t rows, int64_t cols, DType dt) override;
  void cross_entropy_fwd(float* loss, float* lse, const void* logits, const int64_t* targets, int64_t rows,
                         int64_t cols, int64_t ignore_index, DType dt) override;
  void cross_entropy_bwd(void* dlogits, const float* dloss, const void* logits, const float* lse,
                         const int64_t* targets, int64_t rows, int64_t cols, int64_t ignore_index,
                         DType dt, DType dx_dt) override;

  void rope(const View& out, const View& in, const View& cos, const View& sin, int time_dim,
            bool inverse) override;
  void swiglu_fwd(const View& out, const View& a, const View& b) override;
  void swiglu_bwd(const View& da, const View& db, const View& dy, const View& a, const View& b) override;

  bool attention_supported(int64_t head_dim, DType dt) const override;
  void attention_fwd(void* out, float* lse, const void* q, const void* k, const void* v, const AttentionShape& s,
                     DType dt) override;
  void attention_bwd(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
                     const void* out, const float* lse, const AttentionShape& s, DType dt) override;

  void random(const View& out, RandomDist dist, uint64_t seed, uint64_t offset, double a, double b) override;
  void adamw(const AdamWArgs& args) override;

  bool graphs_supported() const override { return true; }  // graph.cu
  int64_t graph_begin_capture() override;
  void graph_end_capture(int64_t graph) override;
  void graph_abort_capture(int64_t graph) override;
  void graph_replay(int64_t graph) override;
  void graph_release(int64_t graph) override;

  // --- for the kernel files ---------------------------------------------------------------------
  int index() const { return index_; }
  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return sm_count_; }
  DeviceError* error_slot() const { return error_dev_; }
  // Makes this backend's device current for the calling thread (cheap when it already is).
  void activate() const;
  // Throws (and clears) an error a kernel reported; call after the stream has been synchronized.
  void raise_device_error();
  // attention backward with dQ summed over key tiles in a fixed order (deterministic mode;
  // attention.cu).
  void attention_bwd_ordered(void* dq, const attn::BwdArgs& a, DType dt);
  // rope's fast path over rows of contiguous values (fused.cu).
  void rope_rows(const View& out, const View& in, const View& cos, const View& sin, int time_dim, bool inverse);
  // dq of an attention backward launch from its float32 accumulator; zeros of a [B, H, Tk, D]
  // operand in its layout (attention.cu).
  void store_dq(void* dq, const attn::BwdArgs& a, int64_t tiles, DType dt);
  void zero_rows(void* p, const AttentionLayout& l, const AttentionShape& s, DType dt);
  // index_add of f32/f64 in a fixed order (deterministic mode; index.cu).
  void index_add_ordered(const View& out, int dim, const View& index, const View& src);

  // Temporary device memory from the caching allocator, returned when it goes out of scope.
  // Stream ordering makes it safe to free right after enqueuing the kernels that use it.
  class Scratch {
   public:
    Scratch(CudaBackend& be, size_t nbytes) : be_(&be), n_(nbytes), p_(nbytes ? be.alloc(nbytes) : nullptr) {}
    ~Scratch() {
      if (p_) be_->free(p_, n_);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class T> T* as() const { return static_cast<T*>(p_); }

   private:
    CudaBackend* be_;
    size_t n_;
    void* p_;
  };

 private:
  int index_;
  int sm_count_ = 1;
  cudaStream_t stream_ = nullptr;
  CachingAllocator allocator_;
  DeviceError* error_host_ = nullptr;  // mapped pinned memory ...
  DeviceError* error_dev_ = nullptr;   // ... and its device address
  std::shared_ptr<GemmRunner> gemm_;  // created by the first gemm (gemm.cu)
  std::mutex gemm_mu_;

  // Graphs (graph.cu). A graph's handle is the id of its allocator pool. The host values uploaded
  // during its capture stay in a pinned staging buffer of its own, which the recorded copy reads.
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    char* staging = nullptr;
    size_t staging_used = 0;
  };
  static constexpr size_t kStagingBytes = size_t{64} << 10;
  void stage_upload(void* dst, const void* src, size_t n);  // copy_from_host while capturing
  std::map<int64_t, Graph> graphs_;
  int64_t capturing_ = 0;
  std::vector<char*> staging_to_free_;  // of released graphs, freed when no capture is under way
};

// The CUDA backend behind a fused call's Backend& (kernels/fused_call.h), its device made current;
// `who` names the call in the error for any other backend.
inline CudaBackend& cuda_backend_of(Backend& be, const char* who) {
  auto* c = dynamic_cast<CudaBackend*>(&be);
  if (!c) throw std::invalid_argument(std::string(who) + ": the CUDA kernels need the CUDA backend, got " + be.device().str());
  c->activate();
  return *c;
}

}  // namespace ttt::cuda_impl
