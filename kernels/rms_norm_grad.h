// kernels/rms_norm_grad.h — the gradient of RMSNorm's backward (RMSNorm's double backward) as a fused
// call (kernels/fused_call.h). CPU reference: kernels/cpu/rms_norm_grad.cpp; CUDA:
// kernels/cuda/rms_norm_grad.cu. The op it serves is rms_norm_backward (autograd/ops/rms_norm_backward.cpp):
// rms_norm's and add_rms_norm's backward under create_graph, whose own backward this is.
//
// The backward it differentiates, per row of C values (means and sums over the row):
//   r = 1 / sqrt(mean(x²) + eps),  x̂ = x r,  g = dy · w  (g = dy without a weight)
//   m = mean(g x̂),  dx = r (g − x̂ m),  dw = Σ_rows dy x̂
// Given the upstream gradients Gx of dx ([rows, C], optional) and Gw of dw ([C], optional), with
// a = Σ Gx x̂ and b = Σ Gx g per row:
//   ∂/∂g  q = r (Gx − a x̂ / C)
//   ∂/∂x̂  h = −r (a g / C + m Gx) + Gw dy        (r held fixed)
//   ∂/∂r  ρ = b − m a                            (x̂ held fixed)
//   gdy = q w + Gw x̂,   gx = r (h − x̂ (Σ h x̂ + r ρ) / C),   gw = Σ_rows q dy
// (x̂ = x r and ∂r/∂x = −r³ x / C give gx.) r is recomputed from x, in double for float64 and in
// float32 otherwise (the CPU reference: double throughout), so float64 results are exact enough for
// finite-difference checks. gw is summed over rows in a fixed order: deterministic.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct RmsNormGradBackward final : FusedCall {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // dy, x, w, gdx, gdw and every output
  double eps = 1e-6;
  const void* dy = nullptr;   // [rows, cols]
  const void* x = nullptr;    // [rows, cols]
  const void* w = nullptr;    // [cols] or null (no weight)
  const void* gdx = nullptr;  // [rows, cols] or null (dx was not used)
  const void* gdw = nullptr;  // [cols] or null (dw was not used, or there is no weight)
  void* gdy = nullptr;        // [rows, cols]; null: not wanted
  void* gx = nullptr;         // [rows, cols]; null: not wanted
  void* gw = nullptr;         // [cols], overwritten; null: not wanted (needs w)
  const char* name() const override { return "rms_norm_grad_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void rms_norm_grad_backward(RmsNormGradBackward& c);
}  // namespace cpu_impl
namespace cuda_impl {
void rms_norm_grad_backward(Backend& be, RmsNormGradBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
