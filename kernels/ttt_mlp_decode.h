// kernels/ttt_mlp_decode.h — one decoded token of a TTT-MLP layer in primal form, as one call
// (kernels/fused_call.h). CPU reference: kernels/cpu/ttt_mlp_decode.cpp; CUDA:
// kernels/cuda/ttt_mlp_decode.cu. The composite primal form (layers/ttt_primal.cpp) is the oracle.
//
// Per batch element and head (f = head_dim, h = hidden, row vectors, gelu = tanh GELU), with the
// state (W1 [f, h], b1 [h], W2 [h, f], b2 [f]) of the open mini-batch's start, its accumulators
// (zero at the mini-batch's first token), and token i's xq, xk, xv [f], lr and tok = tok[i]:
//   Z1 = xk W1 + b1,  X2 = gelu(Z1),  Z2 = X2 W2 + b2
//   G2 = ∂ℓ/∂Z2 (ℓ = ½‖LN(Z2) − (xv − xk)‖², or ½‖Z2 − xv‖² without ln),  G1 = (G2 W2ᵀ) ⊙ gelu'(Z1)
//   acc1' = acc1 + lr (xkᵀ G1, G1),   acc2' = acc2 + lr (X2ᵀ G2, G2)
//   W̄ = W − tok acc'  (each of W1, b1, W2, b2)
//   z̄ = gelu(xq W̄1 + b̄1) W̄2 + b̄2,   out = xq + LN(z̄)  (ln)  or  z̄
//   commit (the mini-batch's last token): the next state is W̄ and the accumulators restart at 0;
//   else the state stays W and the accumulators become acc'.
// These are the formulas of kernels/ttt_mlp_scan.h for a chunk's tokens one at a time
// (ttt-lm-pytorch's TTTMLP primal form), so prefill + decode equals one forward.
//
// Inference only: there is no backward. Products are exact float32.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/fused_call.h"
#include "kernels/ttt_linear_decode.h"  // HeadBlocks
#include "kernels/ttt_linear_scan.h"    // BHTView

namespace ttt {

struct TTTMLPDecodeShape {
  int64_t batch = 0, heads = 0, head_dim = 0, hidden = 0;
  double eps = 1e-6;
  bool ln_residual = true;
  bool bias = true;    // b1 and b2
  bool commit = false;  // the mini-batch's last token: write W̄ instead of the accumulators
  DType dtype = DType::f32;  // every tensor: float32, or float64 (CPU only)
};

struct TTTMLPDecodeStep final : FusedCall {
  TTTMLPDecodeShape s;
  BHTView xq, xk, xv;  // [B, H, 1, f]
  BHTView lr;          // [B, H, 1]
  const void* tok = nullptr;
  // W1 [B, H, f, h], b1 [B, H, 1, h], W2 [B, H, h, f], b2 [B, H, 1, f]; the accumulators in the same
  // layouts (null data = zero; all four or none).
  HeadBlocks w[4], acc[4];
  const void* ln_w = nullptr;  // [H, f] (ln_residual)
  const void* ln_b = nullptr;
  BHTView out;  // [B, H, 1, f]
  // Written, contiguous in the shapes above: the accumulators, or with commit the next state. Must
  // not overlap any input. The biases' are unused without bias.
  void* next[4] = {nullptr, nullptr, nullptr, nullptr};

  const char* name() const override { return "ttt_mlp_decode_step"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Why the device's kernel cannot run this shape (empty when it can).
std::string ttt_mlp_decode_unsupported(Device device, const TTTMLPDecodeShape& s);

namespace cpu_impl {
void ttt_mlp_decode_step(TTTMLPDecodeStep& c);
}  // namespace cpu_impl
namespace cuda_impl {
void ttt_mlp_decode_step(Backend& be, TTTMLPDecodeStep& c);
std::string ttt_mlp_decode_unsupported(const TTTMLPDecodeShape& s);
}  // namespace cuda_impl

}  // namespace ttt
