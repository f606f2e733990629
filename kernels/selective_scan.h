// kernels/selective_scan.h — Mamba-1's selective scan (Gu & Dao 2023, Alg. 2) as one fused forward
// and one fused backward call (kernels/fused_call.h). CPU reference: kernels/cpu/selective_scan.cpp
// (double arithmetic, the backward written out in its header); CUDA: kernels/cuda/selective_scan.cu
// (float32, the block bodies in selective_scan.cuh). Per batch b, channel d and state index n:
//
//   Δ_t[d]    = softplus(δ_t[d] + bias[d])
//   h_t[d, n] = exp(Δ_t[d] A[d, n]) h_{t−1}[d, n] + Δ_t[d] B_t[n] u_t[d],   h_{−1} = h0 (or 0)
//   y_t[d]    = Σ_n C_t[n] h_t[d, n] + D[d] u_t[d]
//
// i.e. the composite layers/selective_scan.h with the layer's softplus(dt_proj(·)) bias and D skip
// folded in (state-spaces/mamba `selective_scan_fn` with delta_bias, delta_softplus and D; the
// SiLU gate stays outside). Contiguous buffers of one dtype: u, δ, y [batch, len, channels];
// A [channels, state]; B, C [batch, len, state]; D, bias [channels]; h0, h_final [batch, channels, state].
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"

namespace ttt {

struct SelectiveScanShape {
  int64_t batch = 0, len = 0, channels = 0, state = 0;
  DType dtype = DType::f32;  // f32, or f64 (CPU only)
};

// Why the shape cannot run on device `d` (empty when it can). The CPU reference runs float32 and
// float64 of any shape; CUDA runs float32 with state 16 and channels a multiple of 16.
std::string selective_scan_unsupported(Device d, const SelectiveScanShape& s);

// Forward. `states`, when not null, receives what the backward needs besides the inputs
// (states_bytes(device) bytes: on CUDA the state at every chunk start; nothing on the CPU) and must
// be handed to the backward unchanged. h0 and h_final (decoding, prefill) are forward-only: the
// backward assumes h0 = 0 and no gradient on h_final.
struct SelectiveScanForward final : FusedCall {
  SelectiveScanShape s;
  const void *u = nullptr, *delta = nullptr, *A = nullptr, *B = nullptr, *C = nullptr, *D = nullptr,
             *bias = nullptr;
  const void* h0 = nullptr;   // null: zeros
  void* y = nullptr;
  void* states = nullptr;
  void* h_final = nullptr;    // null: not wanted

  size_t states_bytes(Device d) const;
  const char* name() const override { return "selective_scan_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Gradients of <y, dy> w.r.t. u, δ, A, B, C, D and bias; every gradient buffer is overwritten.
// `states` is the forward's (unused on the CPU).
struct SelectiveScanBackward final : FusedCall {
  SelectiveScanShape s;
  const void *u = nullptr, *delta = nullptr, *A = nullptr, *B = nullptr, *C = nullptr, *D = nullptr,
             *bias = nullptr, *dy = nullptr, *states = nullptr;
  void *du = nullptr, *ddelta = nullptr, *dA = nullptr, *dB = nullptr, *dC = nullptr, *dD = nullptr,
       *dbias = nullptr;
  void* workspace = nullptr;  // workspace_bytes(device) bytes, any content

  size_t workspace_bytes(Device d) const;
  const char* name() const override { return "selective_scan_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void selective_scan_forward(SelectiveScanForward& c);
void selective_scan_backward(SelectiveScanBackward& c);
}  // namespace cpu_impl

namespace cuda_impl {
// Defined in kernels/cuda/selective_scan.cu (CUDA builds only).
std::string selective_scan_unsupported(const SelectiveScanShape& s);
size_t selective_scan_states_bytes(const SelectiveScanShape& s);
size_t selective_scan_workspace_bytes(const SelectiveScanShape& s);
void selective_scan_forward(Backend& be, SelectiveScanForward& c);
void selective_scan_backward(Backend& be, SelectiveScanBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
