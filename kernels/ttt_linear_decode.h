// kernels/ttt_linear_decode.h — one decoded token of a TTT-Linear layer in primal form, as one call
// (kernels/fused_call.h). CPU reference: kernels/cpu/ttt_linear_decode.cpp; CUDA:
// kernels/cuda/ttt_linear_decode.cu. The composite primal form (layers/ttt_primal.cpp) is the oracle.
//
// Per batch element and head (f = head_dim, row vectors), with the state (W [f, f], b [f]) of the
// open mini-batch's start and its accumulators (accW, accb; zero at the mini-batch's first token),
// for token i of the mini-batch with inputs xq, xk, xv [f], its lr and token factor tok = tok[i]:
//   Z    = xk W + b                 G = ∂ℓ/∂Z,  ℓ = ½‖LN(Z) − (xv − xk)‖²  (ln)  or ½‖Z − xv‖²  (!ln)
//   accW' = accW + lr xkᵀ G          accb' = accb + lr G
//   W̄    = W − tok accW'             b̄ = b − tok accb'
//   z̄    = xq W̄ + b̄                  out = xq + LN(z̄)  (ln)   or  z̄  (!ln)
//   commit (the mini-batch's last token): the next state is (W̄, b̄) and the accumulators restart at 0;
//   else the state stays (W, b) and the accumulators become (accW', accb').
// LN is the per-head LayerNorm (weight, bias [H, f], eps, biased variance), the same in both places;
// the LN-L2 gradient is ttt.py's ln_fused_l2_bwd (kernels/cpu/ttt_scan_rows.h). These are the
// formulas of kernels/ttt_linear_scan.h for a chunk's tokens one at a time (ttt-lm-pytorch's
// TTTLinear primal form, the official decode path), so prefill + decode equals one forward.
//
// Inference only: there is no backward. Products are exact float32 (a token is ~3 f² multiply-adds).
// Why a kernel: one call replaces the re-scan of the open mini-batch (the scan kernel plus four
// writes of its inputs into the mini-batch buffers) that each decoded token cost before.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/fused_call.h"
#include "kernels/ttt_linear_scan.h"  // BHTView

namespace ttt {

// A [B, H, rows, f] tensor with each head's [rows, f] block contiguous: element (b, h, r, c) at
// data + b·sb + h·sh + r·f + c. sb = 0 broadcasts one block over the batch (W0 before its first commit).
struct HeadBlocks {
  void* data = nullptr;
  int64_t sb = 0, sh = 0;
};

struct TTTLinearDecodeShape {
  int64_t batch = 0, heads = 0, head_dim = 0;
  double eps = 1e-6;
  bool ln_residual = true;
  bool bias = true;
  bool commit = false;       // the mini-batch's last token: write W̄, b̄ instead of the accumulators
  DType dtype = DType::f32;  // every tensor: float32, or float64 (CPU only)
};

struct TTTLinearDecodeStep final : FusedCall {
  TTTLinearDecodeShape s;
  BHTView xq, xk, xv;     // [B, H, 1, f] (the time stride is unused)
  BHTView lr;             // [B, H, 1]
  const void* tok = nullptr;  // one element: the token factor of this position in the mini-batch
  HeadBlocks w, b;            // [B, H, f, f], [B, H, 1, f] (b unused without bias)
  HeadBlocks acc_w, acc_b;    // the accumulators in the same layouts; null data = zero
  const void* ln_w = nullptr;  // [H, f] (ln_residual)
  const void* ln_b = nullptr;
  BHTView out;                 // [B, H, 1, f]
  // Written, contiguous [B, H, f, f] and [B, H, 1, f]: the accumulators (accW', accb') or, with
  // commit, the next state (W̄, b̄). Must not overlap any input.
  void* next_w = nullptr;
  void* next_b = nullptr;  // unused without bias

  const char* name() const override { return "ttt_linear_decode_step"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Why the device's kernel cannot run this shape (empty when it can).
std::string ttt_linear_decode_unsupported(Device device, const TTTLinearDecodeShape& s);

namespace cpu_impl {
void ttt_linear_decode_step(TTTLinearDecodeStep& c);
}  // namespace cpu_impl
namespace cuda_impl {
void ttt_linear_decode_step(Backend& be, TTTLinearDecodeStep& c);
std::string ttt_linear_decode_unsupported(const TTTLinearDecodeShape& s);
}  // namespace cuda_impl

}  // namespace ttt
