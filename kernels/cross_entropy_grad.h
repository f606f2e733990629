// kernels/cross_entropy_grad.h — the gradient of cross-entropy's backward (its double backward) as a
// fused call (kernels/fused_call.h). CPU reference: kernels/cpu/cross_entropy_grad.cpp; CUDA:
// kernels/cuda/cross_entropy_grad.cu. The op it serves is cross_entropy_backward
// (autograd/ops/cross_entropy_backward.cpp): cross_entropy's backward under create_graph (TTT-E2E's
// inner loss), whose own backward this is.
//
// The backward it differentiates, per row i of C logits x_i with target t_i and row gradient w_i
// (p_i = softmax(x_i), y_i = onehot(t_i)):   dx_i = w_i (p_i − y_i),   dx_i = 0 when t_i == ignore_index.
// Given the upstream gradient G of dx ([rows, C]), with s_i = Σ_j G_ij p_ij:
//   gx_ij = w_i p_ij (G_ij − s_i),   gw_i = s_i − G_{i, t_i}          (both 0 for ignored rows)
// logsumexp(x_i) is recomputed in the kernel (double for float64, float otherwise; the CPU reference
// computes in double). Targets are int64 in [0, C) or ignore_index (the forward checked them).
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct CrossEntropyGradBackward final : FusedCall {
  int64_t rows = 0, classes = 0;
  DType dtype = DType::f32;  // x, w, G, gx, gw
  int64_t ignore_index = -100;
  const void* x = nullptr;            // [rows, classes]
  const void* w = nullptr;            // [rows]
  const int64_t* targets = nullptr;   // [rows]
  const void* g = nullptr;            // [rows, classes]: G
  void* gx = nullptr;                 // [rows, classes]; null: not wanted
  void* gw = nullptr;                 // [rows]; null: not wanted
  const char* name() const override { return "cross_entropy_grad_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void cross_entropy_grad_backward(CrossEntropyGradBackward& c);
}  // namespace cpu_impl
namespace cuda_impl {
void cross_entropy_grad_backward(Backend& be, CrossEntropyGradBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
