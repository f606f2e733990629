// kernels/add_rms_norm.h — the residual add fused with the RMSNorm that follows it, forward and
// backward, as fused calls (kernels/fused_call.h). CPU reference: kernels/cpu/rows.cpp; CUDA:
// kernels/cuda/rows.cu, beside the RMSNorm kernels whose arithmetic they share.
//
// Forward, per row of `cols` values (h, y, s, n: [rows, cols] contiguous, one dtype T):
//   s = h + y   (computed in T's compute type and rounded to T, as the elementwise add does)
//   rstd = 1 / sqrt(mean(s²) + eps),   n = s · rstd · w        (w optional, [cols])
// which is rms_norm(add(h, y)) with the rounded s, the rms_norm kernel's formula and order.
// Backward, given ds and dn, with g = dn · w and ŝ = s · rstd:
//   dsum = ds + rstd (g − ŝ mean(g ŝ))       (the norm's dx rounded to T, then the add)
//   dw   = Σ_rows dn · ŝ                     (float32, summed as rms_norm_bwd sums: deterministic)
// dsum is the gradient of both h and y. One pass reads h, y and writes s, n, rstd; the backward
// reads ds, dn, s (and w) and writes dsum, instead of the norm's dx and a separate add.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct AddRmsNormForward final : FusedCall {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // h, y, s, n and w
  double eps = 1e-6;
  const void* h = nullptr;
  const void* y = nullptr;
  const void* w = nullptr;  // [cols] or null (no weight)
  void* s = nullptr;        // h + y
  void* n = nullptr;        // rms_norm(s) · w
  float* rstd = nullptr;    // [rows]
  // Optional, float32 data only: n rounded to bf16 as well (what an autocast product would cast n
  // to), written in the same pass.
  void* n_low = nullptr;
  const char* name() const override { return "add_rms_norm_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

struct AddRmsNormBackward final : FusedCall {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // ds, dn, s, w, dsum
  const void* ds = nullptr;  // needed with dsum
  const void* dn = nullptr;
  const void* s = nullptr;
  const float* rstd = nullptr;
  const void* w = nullptr;  // [cols] or null
  void* dsum = nullptr;     // null: not wanted
  float* dw = nullptr;      // [cols], overwritten; null: not wanted
  const char* name() const override { return "add_rms_norm_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void add_rms_norm_forward(AddRmsNormForward& c);
void add_rms_norm_backward(AddRmsNormBackward& c);
}  // namespace cpu_impl
namespace cuda_impl {
void add_rms_norm_forward(Backend& be, AddRmsNormForward& c);
void add_rms_norm_backward(Backend& be, AddRmsNormBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
