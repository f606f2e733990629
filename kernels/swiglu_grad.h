// kernels/swiglu_grad.h — the gradient of SwiGLU's backward (its double backward) as a fused call
// (kernels/fused_call.h). CPU reference: kernels/cpu/swiglu_grad.cpp; CUDA: kernels/cuda/swiglu_grad.cu.
// The op it serves is swiglu_backward (autograd/ops/swiglu_backward.cpp): swiglu's backward under
// create_graph, whose own backward this is.
//
// The backward it differentiates, elementwise (s = silu, s' and s'' its derivatives):
//   da = dy · b · s'(a),   db = dy · s(a)
// Given the upstream gradients Ga of da and Gb of db (either may be absent: zero):
//   gdy = Ga · b · s'(a) + Gb · s(a)
//   ga  = Ga · dy · b · s''(a) + Gb · dy · s'(a)
//   gb  = Ga · dy · s'(a)
// All tensors contiguous, of one shape and dtype; computed in float for float32 / bfloat16, in double
// for float64.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct SwigluGradBackward final : FusedCall {
  int64_t n = 0;             // elements
  DType dtype = DType::f32;  // every tensor
  const void* dy = nullptr;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* ga_in = nullptr;  // Ga, or null
  const void* gb_in = nullptr;  // Gb, or null
  void* gdy = nullptr;          // outputs; null: not wanted
  void* ga = nullptr;
  void* gb = nullptr;
  const char* name() const override { return "swiglu_grad_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void swiglu_grad_backward(SwigluGradBackward& c);
}  // namespace cpu_impl
namespace cuda_impl {
void swiglu_grad_backward(Backend& be, SwigluGradBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
