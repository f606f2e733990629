// kernels/ttt_linear_scan.h — the whole mini-batch scan of a TTT-Linear layer (dual form) as one
// forward and one backward call. CPU reference: kernels/cpu/ttt_linear_scan.cpp; CUDA:
// kernels/cuda/ttt_linear_scan.cu. The composite dual form (layers/ttt_dual.cpp) is the oracle.
//
// Per batch element and head (f = head_dim, K = mini-batch, chunk c = tokens [cK, cK + n),
// n = K except a shorter last chunk), state (W [f, f], b [f]) entering the chunk, ln = ln_residual:
//   Z1  = XK W + b                          G  = ∂ℓ/∂Z1, ℓ = ½‖LN(Z1) − (XV − XK)‖²  (ln)
//                                                        ℓ = ½‖Z1 − XV‖²          (!ln)
//   Gp  = diag(lr) G                         M  = tril(XQ XKᵀ + β)   (β = 1 with bias, else 0)
//   Z̄   = XQ W + b − diag(tok) M Gp          out = XQ + LN(Z̄)  (ln)  or  Z̄  (!ln)
//   n = K (commit):  W ← W − tok[K−1] XKᵀ Gp,  b ← b − tok[K−1] Σ_rows Gp
//   n < K (the last, partial chunk): the state is not committed; its accumulators
//        accW = XKᵀ Gp, accb = Σ_rows Gp are returned instead (decode resumes from them).
// LN is the per-head LayerNorm (weight, bias [H, f], eps, biased variance) used in both places;
// the LN-L2 gradient is ttt.py's ln_fused_l2_bwd. This is ttt-lm-pytorch's TTTLinear dual form
// with eta[i, j] = tok[i] · lr[j] (see layers/ttt_inner.h, layers/ttt_dual.cpp).
//
// Backward: gradients for XQ, XK, XV, lr, tok, W0, b0 and the LN weight/bias, given d out. The
// final state and accumulators are not differentiable outputs. The per-(batch, head) partial sums
// of the parameter gradients are reduced in a fixed order (no float atomics): a run reproduces
// itself bit for bit.
//
// Decoding: with per_sequence_init the scan starts from a per-sequence state (W, b) at a mini-batch
// boundary, e.g. the second chunk of a chunked prefill; forward only.
//
// Checkpointing through time: the forward stores the state (W, b) entering every
// checkpoint_group-th chunk (float32/64 as the data); the backward replays each group from its
// stored state, so memory is O(T / (K·G) · f²) per (batch, head).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace ttt {

// A [B, H, T, f] tensor (f contiguous) or a [B, H, T] one (f = 1): element (b, h, t, c) is at
// data + b·sb + h·sh + t·st + c (in elements). The CUDA kernels need every [.., f] row 16-byte
// aligned (data and sb, sh, st multiples of 16 bytes); the CPU reference takes any strides.
struct BHTView {
  void* data = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
};

struct TTTLinearScanShape {
  int64_t batch = 0, heads = 0, len = 0, head_dim = 0, mini_batch = 16;
  int64_t checkpoint_group = 1;  // >= 1: the state entering every G-th chunk is stored
  double eps = 1e-6;
  bool ln_residual = true;
  bool bias = true;
  // Products with bf16 operands and float32 accumulation (autocast) instead of exact float32.
  // The state, every accumulation and all elementwise math stay float32 either way.
  bool low_precision = false;
  DType dtype = DType::f32;  // every tensor of the call but the [B, H, T, f] ones: f32 or f64 (CPU only)
  // XQ, XK, XV, out, dout and the gradients of XQ, XK, XV stored as bf16 (with dtype f32 and
  // low_precision; CUDA only: an autocast model's bf16 projections go in without a cast).
  bool bf16_io = false;
  DType io_dtype() const { return bf16_io ? DType::bf16 : dtype; }
  // W0 [B, H, f, f] and b0 [B, H, f]: one initial state per sequence (a decode state resumed at
  // a mini-batch boundary) instead of the shared [H, f, f], [H, f]. Forward only: the backward
  // refuses it (the parameter gradients of a shared W0 would have no meaning).
  bool per_sequence_init = false;

  int64_t chunks() const { return (len + mini_batch - 1) / mini_batch; }
  int64_t groups() const { return (chunks() + checkpoint_group - 1) / checkpoint_group; }
  // Elements of the stored states: [B, H, groups, f·f + f].
  int64_t state_elems() const { return batch * heads * groups() * (head_dim * head_dim + head_dim); }
};

// How the CUDA kernels are organised for a shape (kernels/cuda/README.md):
//  - walk: one block per (batch, head) walks every chunk, forward (the state in registers, the
//    output on the way) and backward (version 5: in reverse, carrying the state gradient and
//    computing each chunk's token gradients on the way);
//  - chunk-parallel: the serial walks carry only the state (forward) or its gradient (backward,
//    version 6), and the per-chunk work runs side by side in `ranges` blocks per (batch, head) of
//    `per_range` chunks each (forward: the outputs, in ranges of per_range / 4; backward: the state
//    gradient each chunk adds directly, then the token gradients).
// Chunk-parallel pays for itself when B·H blocks leave most of the GPU idle (long sequences at a
// small batch): it is chosen for B·H < 64 and at least 16 chunks. Its backward passes overlap by
// default: one grid runs the serial walks beside the direct and tokens blocks, which signal each
// other per range through flags in the workspace (`overlap`); chunks-serial runs them as three
// kernels one after another. TTT_LINEAR_SCAN_PLAN=walk|chunks|chunks-serial forces one, with :N for N
// chunks per range (benchmarks, tests).
struct TTTLinearScanPlan {
  bool chunk_parallel = false;
  bool overlap = false;  // chunk-parallel backward as one grid (ttt_linear_chain.cuh bwd_overlap_block)
  int64_t ranges = 1, per_range = 0;  // the backward's
  int64_t fwd_per_range = 0;           // chunks per output block of the chunk-parallel forward
};
TTTLinearScanPlan ttt_linear_scan_plan(const TTTLinearScanShape& s);

// Why the shape cannot run on device `d` (empty when it can). The CPU reference runs every shape.
std::string ttt_linear_scan_unsupported(Device d, const TTTLinearScanShape& s);

struct TTTLinearScanForward final : FusedCall {
  TTTLinearScanShape s;
  // inputs
  BHTView xq, xk, xv;  // [B, H, T, f]
  BHTView lr;          // [B, H, T]: base_lr · gate / f (eta's column factor)
  const void* tok = nullptr;   // [K]: eta's row factor for in-chunk index 0..K−1
  const void* w0 = nullptr;    // [H, f, f] ([B, H, f, f] with per_sequence_init)
  const void* b0 = nullptr;    // [H, f] ([B, H, f] with per_sequence_init; null without bias)
  const void* ln_w = nullptr;  // [H, f] (null without ln_residual)
  const void* ln_b = nullptr;  // [H, f]
  // outputs
  BHTView out;                   // [B, H, T, f]
  void* states = nullptr;        // [B, H, groups, f·f + f]: W (row-major) then b, per group start
  void* w_final = nullptr;       // [B, H, f, f] after the last committed chunk (optional)
  void* b_final = nullptr;       // [B, H, f] (optional)
  void* acc_w = nullptr;         // [B, H, f, f] accumulators of a partial last chunk, else 0 (optional)
  void* acc_b = nullptr;         // [B, H, f] (optional)
  void* probe = nullptr;         // CUDA profiling hook: int64 cycle counters per phase of block 0 (bench only)

  const char* name() const override { return "ttt_linear_scan_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

struct TTTLinearScanBackward final : FusedCall {
  TTTLinearScanShape s;
  // the forward's inputs and stored states
  BHTView xq, xk, xv, lr;
  const void *tok = nullptr, *w0 = nullptr, *b0 = nullptr, *ln_w = nullptr, *ln_b = nullptr;
  const void* states = nullptr;
  BHTView dout;  // [B, H, T, f]
  // gradients (overwritten)
  BHTView dxq, dxk, dxv;  // [B, H, T, f]
  BHTView dlr;            // [B, H, T]
  void* dtok = nullptr;   // [K]
  void* dw0 = nullptr;    // [H, f, f]
  void* db0 = nullptr;    // [H, f] (null without bias)
  void* dln_w = nullptr;  // [H, f] (null without ln_residual)
  void* dln_b = nullptr;
  void* workspace = nullptr;  // workspace_bytes(device) bytes, any content (none on the CPU)
  void* probe = nullptr;      // CUDA profiling hook, as the forward's

  size_t workspace_bytes(Device d) const;
  const char* name() const override { return "ttt_linear_scan_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Several forward calls run as one: on a GPU their blocks side by side in one launch per pass
// (the serial walks of B·H blocks each leave most SMs idle at a small batch; a wavefront prefill
// runs the scans of its active layers this way, layers/language_model.cpp), on the CPU one after
// another. The calls must not write what another reads. CUDA groups calls of one kernel
// configuration (head_dim, precision, storage), one B·H and one plan, at most kMaxCalls to a
// launch; the rest run in further launches.
struct TTTLinearScanForwardGroup final : FusedCall {
  static constexpr int kMaxCalls = 16;
  std::vector<TTTLinearScanForward*> calls;

  const char* name() const override { return "ttt_linear_scan_fwd_group"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void ttt_linear_scan_forward(TTTLinearScanForward& c);
void ttt_linear_scan_backward(TTTLinearScanBackward& c);
}  // namespace cpu_impl

namespace cuda_impl {
// Defined in kernels/cuda/ttt_linear_scan.cu (or throwing stubs without CUDA).
std::string ttt_linear_scan_unsupported(const TTTLinearScanShape& s);
void ttt_linear_scan_forward(Backend& be, TTTLinearScanForward& c);
void ttt_linear_scan_forward_group(Backend& be, TTTLinearScanForwardGroup& g);
void ttt_linear_scan_backward(Backend& be, TTTLinearScanBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
