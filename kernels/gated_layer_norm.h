// kernels/gated_layer_norm.h — a LayerNorm whose output is gated by gelu_tanh of a second input,
// forward and backward, as fused calls (kernels/fused_call.h): the TTT layer's output side on the
// Mamba backbone, gelu_tanh(x W_g) ⊙ post_norm(z) (ttt.py apply_gate). CPU reference:
// kernels/cpu/rows.cpp; CUDA: kernels/cuda/rows.cu, the LayerNorm kernels with the
// gate read in.
//
// Per row of `cols` values (z, g, y: [rows, cols] contiguous, one dtype T; w, b [cols] or null):
//   mean, rstd = 1 / sqrt(var(z) + eps),   n = (z − mean) · rstd,   l = n · w + b,
//   y = gelu_tanh(g) · l
// Backward, given dy, with a = gelu_tanh(g), a' its derivative and e = dy · a:
//   dg = dy · l · a'
//   dz = rstd · (e·w − mean(e·w) − n · mean(e·w · n))          (LayerNorm's dx, of e)
//   dw = Σ_rows e · n,   db = Σ_rows e                        (float32, a fixed order: deterministic)
// The backward recomputes a, a' and l from z, g and the saved mean / rstd, so what a training step
// keeps is z and g: the composite (layer_norm, gelu, mul) keeps z, g, gelu(g) and LN(z).
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct GatedLayerNormForward final : FusedCall {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // z, g, w, b, y
  double eps = 1e-5;
  const void* z = nullptr;
  const void* g = nullptr;
  const void* w = nullptr;  // [cols] or null (1)
  const void* b = nullptr;  // [cols] or null (0)
  void* y = nullptr;
  float* mean = nullptr;  // [rows]
  float* rstd = nullptr;  // [rows]
  const char* name() const override { return "gated_layer_norm_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

struct GatedLayerNormBackward final : FusedCall {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // dy, z, g, w, b, dz, dg
  const void* dy = nullptr;
  const void* z = nullptr;
  const void* g = nullptr;
  const void* w = nullptr;  // [cols] or null
  const void* b = nullptr;  // [cols] or null
  const float* mean = nullptr;
  const float* rstd = nullptr;
  void* dz = nullptr;    // null: not wanted
  void* dg = nullptr;    // null: not wanted
  float* dw = nullptr;   // [cols], overwritten; null: not wanted
  float* db = nullptr;   // [cols], overwritten; null: not wanted
  const char* name() const override { return "gated_layer_norm_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void gated_layer_norm_forward(GatedLayerNormForward& c);
void gated_layer_norm_backward(GatedLayerNormBackward& c);
}  // namespace cpu_impl
namespace cuda_impl {
void gated_layer_norm_forward(Backend& be, GatedLayerNormForward& c);
void gated_layer_norm_backward(Backend& be, GatedLayerNormBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
