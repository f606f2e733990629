// kernels/ssd.h — Mamba 2's SSD scan (Dao & Gu 2024) as one fused forward and one fused backward call
// (kernels/fused_call.h). CPU reference: kernels/cpu/ssd.cpp (double arithmetic, the backward's
// formulas in its header); CUDA: kernels/cuda/ssd.cu (float32). Per batch b and head h, whose B and
// C come from group g = h / (heads / groups):
//
//   H_t = exp(dt_t · A_h) H_{t−1} + dt_t x_t B_tᵀ,   y_t = H_t C_t,   H_{−1} = h0 (zeros when null)
//
// with H ∈ R^{head_dim × state}, computed chunk by chunk (intra-chunk products, chunk states, a
// sequential pass over chunk states; layers/ssd.h). Contiguous buffers of one dtype:
// x, y [batch, len, heads, head_dim]; dt [batch, len, heads] (> 0); A [heads] (< 0);
// B, C [batch, len, groups, state]; h0, h_final [batch, heads, head_dim, state].
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace ttt {

struct SSDShape {
  int64_t batch = 0, len = 0, heads = 0, head_dim = 0, groups = 1, state = 0, chunk = 64;
  DType dtype = DType::f32;  // f32, or f64 (CPU only)

  // The chunk length actually used (a chunk longer than the sequence is the sequence) and the chunks.
  int64_t q() const { return chunk < len ? chunk : (len > 0 ? len : 1); }
  int64_t chunks() const { return (len + q() - 1) / q(); }
};

// Why the shape cannot run on device `d` (empty when it can). The CPU reference runs float32 and
// float64 of any shape; CUDA runs float32 within its shared-memory budget.
std::string ssd_unsupported(Device d, const SSDShape& s);

struct SsdForward final : FusedCall {
  SSDShape s;
  const void *x = nullptr, *dt = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;
  const void* h0 = nullptr;  // null: zeros
  void* y = nullptr;
  void* h_final = nullptr;   // null: not wanted
  void* workspace = nullptr; // workspace_bytes(device) bytes, any content

  size_t workspace_bytes(Device d) const;
  const char* name() const override { return "ssd_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Gradients of <y, dy> + <h_final, dh_final> (dy or dh_final null = zero) w.r.t. x, dt, A, B, C and h0;
// every gradient buffer is overwritten (dh0 may be null).
struct SsdBackward final : FusedCall {
  SSDShape s;
  const void *x = nullptr, *dt = nullptr, *A = nullptr, *B = nullptr, *C = nullptr, *h0 = nullptr;
  const void *dy = nullptr, *dh_final = nullptr;
  void *dx = nullptr, *ddt = nullptr, *dA = nullptr, *dB = nullptr, *dC = nullptr, *dh0 = nullptr;
  void* workspace = nullptr;

  size_t workspace_bytes(Device d) const;
  const char* name() const override { return "ssd_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void ssd_forward(SsdForward& c);
void ssd_backward(SsdBackward& c);
}  // namespace cpu_impl

namespace cuda_impl {
// Defined in kernels/cuda/ssd.cu (CUDA builds only).
std::string ssd_unsupported(const SSDShape& s);
size_t ssd_forward_workspace(const SSDShape& s);
size_t ssd_backward_workspace(const SSDShape& s);
void ssd_forward(Backend& be, SsdForward& c);
void ssd_backward(Backend& be, SsdBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
