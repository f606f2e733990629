// kernels/multi_tensor.h — the optimizer step's per-parameter kernels over a whole list of tensors
// at once (fused calls, kernels/fused_call.h): a model of ~300 parameter tensors takes one or two
// launches per step instead of one or two per tensor. The idea is PyTorch's multi_tensor_apply
// (apex's fused Adam): a table of the tensors' pointers and sizes travels as the kernel's
// parameters, and each thread block finds its (tensor, chunk) in it.
// CPU: kernels/cpu/multi_tensor.cpp; CUDA: kernels/cuda/random_adamw.cu (AdamW) and
// kernels/cuda/reduce.cu (sums of squares).
//
// AdamWMulti — Backend::adamw (AdamWArgs in backend.h) on every tensor of the list, the
// hyper-parameters shared, the weight decay per tensor. Every element goes through
// smath::adamw_step (kernels/scalar_math.h), as in Backend::adamw, so the parameters and moments
// are bit-identical to one adamw call per tensor on the same device. A null grad is a zero
// gradient (a parameter the loss did not reach: optax still decays its moments and weights).
// A tensor with `low` also gets its updated weights rounded to bf16 there (bf16::from_float, as the
// cast kernels round): the next step's autocast products read that copy instead of casting the
// weight again (Autocast::refresh_weight_casts; trainer/optimizer.cpp).
//
// SumSqMulti — for every tensor, the sum of its squared elements into *out (float32): the value
// Backend::reduce(ReduceOp::sum_sq) gives for the whole tensor (read as float32; bf16 elements are
// widened exactly) on the same device, bit for bit: the CPU adds in double in index order, CUDA
// replays the per-tensor reduction's lanes, splits and combining order for each tensor.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct AdamWTensor {
  float* param = nullptr;         // float32 master weights, updated in place
  const void* grad = nullptr;     // f32 or bf16; null = a zero gradient
  DType grad_dtype = DType::f32;
  float* m = nullptr;             // float32 moments, updated in place
  float* v = nullptr;
  int64_t n = 0;                  // elements (all contiguous)
  double weight_decay = 0;
  bf16* low = nullptr;            // when set: the updated param rounded to bf16 (as a cast rounds it)
};

struct AdamWMulti final : FusedCall {
  const AdamWTensor* tensors = nullptr;
  size_t count = 0;
  // As in AdamWArgs: bias corrections computed by the caller, grads multiplied by grad_scale first.
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, bias_correction1 = 1, bias_correction2 = 1;
  double grad_scale = 1.0;
  const char* name() const override { return "adamw_multi"; }
  double bytes() const override;  // p, m, v read and written, the gradient read
  void run(Backend& be) override;
};

struct SumSqTensor {
  const void* data = nullptr;  // contiguous, f32 or bf16
  DType dtype = DType::f32;
  int64_t n = 0;
  float* out = nullptr;        // one float32 on the same device
};

struct SumSqMulti final : FusedCall {
  const SumSqTensor* tensors = nullptr;
  size_t count = 0;
  const char* name() const override { return "sum_sq_multi"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void adamw_multi(const AdamWMulti& c);
void sum_sq_multi(const SumSqMulti& c);
}  // namespace cpu_impl
namespace cuda_impl {
void adamw_multi(Backend& be, const AdamWMulti& c);
void sum_sq_multi(Backend& be, const SumSqMulti& c);
}  // namespace cuda_impl

}  // namespace ttt
