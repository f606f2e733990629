// kernels/gated_delta.h — the gated delta rule of Gated DeltaNet (Yang, Kautz, Hatamizadeh, ICLR
// 2025) as one fused forward and one fused backward call (kernels/fused_call.h). CPU reference:
// kernels/cpu/gated_delta.cpp (double arithmetic, the backward's formulas in its header); CUDA:
// kernels/cuda/gated_delta.cu (float32). Per batch b and head h, with the state kept as
// M = Sᵀ ∈ R^{d_k×d_v} and a_t = e^{g_t}:
//
//   p_t = M_{t−1}ᵀ k_t,   u_t = β_t (v_t − a_t p_t),   M_t = a_t M_{t−1} + k_t u_tᵀ,   o_t = M_tᵀ q_t
//
// which is S_t = a_t S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ, o_t = S_t q_t; M_{−1} = M0 (zeros when
// null). Without the erase term (`erase` false) the same kernels run the gated linear recurrence
//   M_t = a_t M_{t−1} + β_t k_t v_tᵀ,   o_t = M_tᵀ q_t
// which is Mamba 2's SSD (k = B, q = C, v = x, β = Δ, g = ΔA; the state is Hᵀ). The kernels walk the
// tokens in order (the recurrent form) and keep the state entering every `chunk`-th token for the
// backward, which recomputes the states in between.
// Contiguous buffers of one dtype: q, k [batch, len, qk_heads, dk]; v, o [batch, len, heads, dv];
// g, beta [batch, len, heads]; M0, M_final [batch, heads, dk, dv]. Head h reads q, k head
// h / (heads / qk_heads) (groups of heads share them, as Mamba 2's B and C); dq, dk sum over the group.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/fused_call.h"

namespace ttt {

struct GatedDeltaShape {
  int64_t batch = 0, len = 0, heads = 0, dk = 0, dv = 0;
  int64_t chunk = 64;        // tokens between the states the backward keeps (the CPU reference)
  DType dtype = DType::f32;  // f32, or f64 (CPU only)
  bool erase = true;         // the delta rule's −a β k kᵀ M term (false: the gated linear recurrence)
  int64_t qk_heads = 0;      // heads of q and k (dividing heads); 0 = heads
  // CUDA: the chunked WY / UT kernels (kernels/cuda/gated_delta_chunk*.cuh: chunks of 32 tokens,
  // key head dims up to 128) instead of the token-by-token walk. The CPU reference computes the
  // same values either way.
  bool chunked = false;
  // With chunked: the chunked kernels' block products on the tensor cores in 3xTF32 (float32-level
  // accuracy, kernels/cuda/block_mm.cuh) instead of the CUDA cores.
  bool tensor_cores = false;

  int64_t chunks() const { return (len + chunk - 1) / chunk; }
  int64_t groups() const { return qk_heads > 0 ? qk_heads : heads; }
  int64_t heads_per_group() const { return heads / groups(); }
};

// Why the shape cannot run on device `d` (empty when it can). The CPU reference runs float32 and
// float64 of any shape; CUDA runs float32 with the head dims its kernels cover.
std::string gated_delta_unsupported(Device d, const GatedDeltaShape& s);

struct GatedDeltaForward final : FusedCall {
  GatedDeltaShape s;
  const void *q = nullptr, *k = nullptr, *v = nullptr, *g = nullptr, *beta = nullptr;
  const void* M0 = nullptr;   // null: zeros
  void* o = nullptr;
  void* M_final = nullptr;    // null: not wanted
  void* workspace = nullptr;  // workspace_bytes(device) bytes, any content (0 bytes: may be null)

  size_t workspace_bytes(Device d) const;
  const char* name() const override { return "gated_delta_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Gradients of <o, do> + <M_final, dM_final> (do or dM_final null = zero) w.r.t. q, k, v, g, beta
// and M0; every gradient buffer is overwritten (dM0 may be null).
struct GatedDeltaBackward final : FusedCall {
  GatedDeltaShape s;
  const void *q = nullptr, *k = nullptr, *v = nullptr, *g = nullptr, *beta = nullptr, *M0 = nullptr;
  const void *d_o = nullptr, *dM_final = nullptr;
  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *dg = nullptr, *dbeta = nullptr, *dM0 = nullptr;
  void* workspace = nullptr;  // workspace_bytes(device) bytes, any content

  size_t workspace_bytes(Device d) const;
  const char* name() const override { return "gated_delta_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void gated_delta_forward(GatedDeltaForward& c);
void gated_delta_backward(GatedDeltaBackward& c);
}  // namespace cpu_impl

namespace cuda_impl {
// Defined in kernels/cuda/gated_delta.cu (CUDA builds only).
std::string gated_delta_unsupported(const GatedDeltaShape& s);
size_t gated_delta_forward_workspace(const GatedDeltaShape& s);
size_t gated_delta_backward_workspace(const GatedDeltaShape& s);
void gated_delta_forward(Backend& be, GatedDeltaForward& c);
void gated_delta_backward(Backend& be, GatedDeltaBackward& c);
// The chunked kernels (kernels/cuda/gated_delta_chunk.cu), which the two above call when s.chunked.
std::string gated_delta_chunk_unsupported(const GatedDeltaShape& s);
size_t gated_delta_chunk_workspace(const GatedDeltaShape& s, bool backward);
void gated_delta_chunk_forward(Backend& be, GatedDeltaForward& c);
void gated_delta_chunk_backward(Backend& be, GatedDeltaBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
