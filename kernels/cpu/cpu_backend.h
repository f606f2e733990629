// kernels/cpu/cpu_backend.h — the reference backend: plain loops (OpenMP over the outer dims)
// and OpenBLAS for float32/float64 GEMMs. bf16 is stored as bf16 and computed in float32.
#pragma once

#include <atomic>

#include "kernels/backend.h"

namespace ttt::cpu_impl {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return ttt::cpu(); }

  void* alloc(size_t nbytes) override;
  void free(void* p, size_t nbytes) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes) override;
  void synchronize() override {}
  size_t memory_allocated() const override { return allocated_.load(); }
  size_t memory_peak() const override { return peak_.load(); }
  void reset_peak_memory() override { peak_.store(allocated_.load()); }

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

  bool attention_supported(int64_t, DType dt) const override { return is_floating(dt); }
  void attention_fwd(void* out, float* lse, const void* q, const void* k, const void* v, const AttentionShape& s,
                     DType dt) override;
  void attention_bwd(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v,
                     const void* out, const float* lse, const AttentionShape& s, DType dt) override;

  void random(const View& out, RandomDist dist, uint64_t seed, uint64_t offset, double a, double b) override;
  void adamw(const AdamWArgs& args) override;

 private:
  std::atomic<size_t> allocated_{0};
  std::atomic<size_t> peak_{0};
};

// The reference kernels' typed loads and stores with every value in double (attention, the row
// kernels, the fused scans): element i of p as double; v rounded once into element i.
template <class T> double ld(const T* p, int64_t i) { return static_cast<double>(to_compute(p[i])); }
template <class T> void st(T* p, int64_t i, double v) {
  using C = decltype(to_compute(T{}));
  p[i] = from_compute<T>(static_cast<C>(v));
}

// Reads element `i` of a raw buffer of dtype `dt` as double / writes it (slow paths, indices).
double load_as_double(const void* p, DType dt, int64_t i);
int64_t load_index(const void* p, DType dt, int64_t i);

}  // namespace ttt::cpu_impl
