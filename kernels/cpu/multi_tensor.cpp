// kernels/cpu/multi_tensor.cpp — the CPU reference of kernels/multi_tensor.h, and the dispatch of
// both calls by device.
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/multi_tensor.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/strided.h"
#include "kernels/scalar_math.h"

namespace ttt {

namespace {
void check_grad_dtype(const char* what, DType dt) {
  if (dt != DType::f32 && dt != DType::bf16)
    throw std::invalid_argument(std::string(what) + ": tensors must be float32 or bfloat16, got " + dtype_name(dt));
}
}  // namespace

double AdamWMulti::bytes() const {
  double b = 0;
  for (size_t i = 0; i < count; ++i)
    b += static_cast<double>(tensors[i].n) *
         (24.0 + (tensors[i].grad ? dtype_size(tensors[i].grad_dtype) : 0) + (tensors[i].low ? 2.0 : 0));
  return b;
}

double SumSqMulti::bytes() const {
  double b = 0;
  for (size_t i = 0; i < count; ++i) b += static_cast<double>(tensors[i].n) * dtype_size(tensors[i].dtype) + 4.0;
  return b;
}

void AdamWMulti::run(Backend& be) {
  for (size_t i = 0; i < count; ++i)
    if (tensors[i].grad) check_grad_dtype("adamw_multi", tensors[i].grad_dtype);
  cpu_impl::dispatch_fused(be, *this, cpu_impl::adamw_multi,
                           [](Backend& b, auto& c) { cuda_impl::adamw_multi(b, c); });
}

void SumSqMulti::run(Backend& be) {
  for (size_t i = 0; i < count; ++i) check_grad_dtype("sum_sq_multi", tensors[i].dtype);
  cpu_impl::dispatch_fused(be, *this, cpu_impl::sum_sq_multi,
                           [](Backend& b, auto& c) { cuda_impl::sum_sq_multi(b, c); });
}

namespace cpu_impl {

// Chunks of every tensor in one parallel loop: many small tensors still keep every thread busy.
// Each element gets smath::adamw_step, as in CpuBackend::adamw, so the split does not matter.
void adamw_multi(const AdamWMulti& c) {
  constexpr int64_t kChunk = 1 << 15;
  const smath::AdamWScalars s{c.lr, c.beta1, c.beta2, c.eps, c.bias_correction1, c.bias_correction2, c.grad_scale};
  std::vector<std::pair<size_t, int64_t>> chunks;  // (tensor, first element)
  int64_t total = 0;
  for (size_t i = 0; i < c.count; ++i) {
    for (int64_t b = 0; b < c.tensors[i].n; b += kChunk) chunks.emplace_back(i, b);
    total += c.tensors[i].n;
  }
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(static) if (total >= kParallelGrain && nchunks > 1)
  for (int64_t k = 0; k < nchunks; ++k) {
    const AdamWTensor& t = c.tensors[chunks[k].first];
    const int64_t b = chunks[k].second, e = std::min(b + kChunk, t.n);
    const bool bf16_grad = t.grad_dtype == DType::bf16;
    for (int64_t i = b; i < e; ++i) {
      const float g = !t.grad ? 0.0f
                      : bf16_grad ? static_cast<const bf16*>(t.grad)[i].to_float()
                                  : static_cast<const float*>(t.grad)[i];
      smath::adamw_step(t.param[i], t.m[i], t.v[i], g, t.weight_decay, s);
      if (t.low) t.low[i] = bf16::from_float(t.param[i]);
    }
  }
}

// As CpuBackend::reduce(sum_sq) over a whole tensor: double accumulation in index order, rounded
// once to float32. Tensors are independent, so they are spread over the threads.
void sum_sq_multi(const SumSqMulti& c) {
  int64_t total = 0;
  for (size_t i = 0; i < c.count; ++i) total += c.tensors[i].n;
  const int64_t count = static_cast<int64_t>(c.count);
#pragma omp parallel for schedule(dynamic) if (total >= kParallelGrain && count > 1)
  for (int64_t i = 0; i < count; ++i) {
    const SumSqTensor& t = c.tensors[i];
    double acc = 0;
    if (t.dtype == DType::bf16) {
      const bf16* x = static_cast<const bf16*>(t.data);
      for (int64_t j = 0; j < t.n; ++j) {
        const double v = x[j].to_float();
        acc += v * v;
      }
    } else {
      const float* x = static_cast<const float*>(t.data);
      for (int64_t j = 0; j < t.n; ++j) {
        const double v = x[j];
        acc += v * v;
      }
    }
    *t.out = static_cast<float>(acc);
  }
}

}  // namespace cpu_impl

}  // namespace ttt
