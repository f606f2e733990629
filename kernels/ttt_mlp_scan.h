// kernels/ttt_mlp_scan.h — the whole mini-batch scan of a TTT-MLP layer (dual form) as one forward
// and one backward call. CPU reference: kernels/cpu/ttt_mlp_scan.cpp; CUDA: kernels/cuda/ttt_mlp_scan.cu
// (ttt_mlp_scan_unsupported() names what it does not cover; the layer then keeps its composite dual
// form). The composite dual form (layers/ttt_dual.cpp) is the oracle.
//
// Per batch element and head (f = head_dim, h = hidden (4f), K = mini-batch, chunk c = tokens
// [cK, cK + n), n = K except a shorter last chunk), state (W1 [f, h], b1 [h], W2 [h, f], b2 [f])
// entering the chunk, ln = ln_residual, β = 1 with the inner biases else 0, gelu = tanh GELU:
//   Z1 = XK W1 + b1,  X2 = gelu(Z1),  Z2 = X2 W2 + b2
//   G2 = ∂ℓ/∂Z2 (ℓ = ½‖LN(Z2) − (XV − XK)‖², or ½‖Z2 − XV‖² without ln)
//   G1 = (G2 W2ᵀ) ⊙ gelu'(Z1),   Gp1 = diag(lr) G1,  Gp2 = diag(lr) G2
//   Z̄1 = XQ W1 + b1 − diag(tok) tril(XQ XKᵀ + β) Gp1,     X̄2 = gelu(Z̄1)
//   Z̄2 = X̄2 W2 + b2 − diag(tok) tril(X̄2 X2ᵀ + β) Gp2,     out = XQ + LN(Z̄2) (ln) or Z̄2
//   n = K (commit): W1 −= τ XKᵀ Gp1, b1 −= τ Σ Gp1, W2 −= τ X2ᵀ Gp2, b2 −= τ Σ Gp2  (τ = tok[K−1])
//   n < K: not committed; the accumulators (XKᵀ Gp1, Σ Gp1, X2ᵀ Gp2, Σ Gp2) are returned instead.
// This is ttt-lm-pytorch's TTTMLP dual form (compute_mini_batch) with eta[i, j] = tok[i] · lr[j];
// see layers/ttt_dual.cpp for the composite twin.
//
// Backward: gradients for XQ, XK, XV, lr, tok, W1, b1, W2, b2 and the LN weight/bias, given d out;
// the final state and accumulators are not differentiable outputs. Parameter-gradient partials per
// (batch, head) are reduced in a fixed order (no float atomics): a run reproduces itself bit for bit.
//
// Checkpointing through time: the forward stores the state entering every checkpoint_group-th chunk;
// the backward replays each group from it, so memory is O(T / (K·G) · f·h) per (batch, head).

#pragma once

#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/ttt_linear_scan.h"  // BHTView

namespace ttt {

struct TTTMLPScanShape {
  int64_t batch = 0, heads = 0, len = 0, head_dim = 0, hidden = 0, mini_batch = 16;
  int64_t checkpoint_group = 1;  // >= 1: the state entering every G-th chunk is stored
  double eps = 1e-6;
  bool ln_residual = true;
  bool bias = true;  // b1 and b2 (the official model has both, or neither with inner_bias off)
  // As TTTLinearScanShape: bf16 products (autocast) for a CUDA kernel; the CPU reference computes
  // exactly (in double) and takes float32/float64 storage only.
  bool low_precision = false;
  DType dtype = DType::f32;
  // XQ, XK, XV, out, dout and the gradients of XQ, XK, XV stored as bf16 (with dtype f32 and
  // low_precision; CUDA only: an autocast model's bf16 projections go in without a cast). The
  // state, every sum and all elementwise math stay float32.
  bool bf16_io = false;
  DType io_dtype() const { return bf16_io ? DType::bf16 : dtype; }
  // CUDA, bf16 products: the thread blocks of a cluster (sm_90) that share a head's hidden units in
  // the forward and the backward, 1 (one block a head), 2 or 4 (kernels/cuda/ttt_mlp_fwd_cluster.cuh,
  // ttt_mlp_bwd_cluster.cuh), or 0 (auto): 2 where batch · heads · 2 blocks fit the device's SMs at
  // once, else 1. Float32 products run one block a head. The CPU reference ignores it.
  int64_t cluster = 1;
  // CUDA: the backward split in two: every chunk's test path at once (a block per (b, h, chunk)) and a
  // reverse walk carrying only the state's gradient (one block a head), with the replay in one grid
  // where the walks leave SMs free, else three launches (kernels/cuda/ttt_mlp_bwd_split.cuh,
  // ttt_mlp_bwd_chain.cuh, ttt_mlp_bwd_split_grid.cuh). Its workspace holds a record and a flag per
  // (b, h) and chunk (split_record_bytes()). The CPU reference computes in that split anyway.
  bool split_walk = false;

  int64_t chunks() const { return (len + mini_batch - 1) / mini_batch; }
  int64_t groups() const { return (chunks() + checkpoint_group - 1) / checkpoint_group; }
  // Elements of one state: W1, b1, W2, b2 in that order (row-major).
  int64_t state_size() const { return 2 * head_dim * hidden + hidden + head_dim; }
  // Elements of the stored states: [B, H, groups, state_size()].
  int64_t state_elems() const { return batch * heads * groups() * state_size(); }
  // Bytes of one replay snapshot: the state entering a chunk inside a checkpoint group, which the
  // CUDA backward's replay writes for its reverse walk. W1 and W2 come first as the walk's product
  // operands (bf16 with low_precision: the walk reads them only as operands, so storing them rounded
  // changes nothing and halves the bulk of the backward's memory), then b1 and b2 as float32.
  int64_t replay_snapshot_bytes() const {
    return 2 * head_dim * hidden * (low_precision ? 2 : 4) + (hidden + head_dim) * 4;
  }
  // Bytes of one chunk's record in the split backward (kernels/cuda/ttt_mlp_bwd_split.cuh, Rec): five
  // operand tiles (three [16, f], two [16, hidden], rows padded as the kernels' shared memory pads
  // them), four float32 [16, f + 4] tiles, two float32 [16, hidden] tiles, column sums of hidden and
  // f, 2f LN partials and 16 dtok parts.
  int64_t split_record_bytes() const {
    const int64_t op = low_precision ? 2 : 4, pad = low_precision ? 8 : 4;
    const int64_t bytes = 3 * 16 * (head_dim + pad) * op + 2 * 16 * (hidden + pad) * op + 4 * 16 * (head_dim + 4) * 4 +
                          2 * 16 * hidden * 4 + 4 * hidden + 12 * head_dim + 4 * 16;
    return (bytes + 15) / 16 * 16;
  }
};

// Why the shape cannot run on device `d` (empty when it can). The CPU reference runs every
// float32/float64 shape; CUDA: kernels/cuda/ttt_mlp_scan.cu.
std::string ttt_mlp_scan_unsupported(Device d, const TTTMLPScanShape& s);

struct TTTMLPScanForward final : FusedCall {
  TTTMLPScanShape s;
  // inputs
  BHTView xq, xk, xv;        // [B, H, T, f]
  BHTView lr;                // [B, H, T]: base_lr · gate / f (eta's column factor)
  const void* tok = nullptr; // [K]
  const void* w1 = nullptr;  // [H, f, h]
  const void* b1 = nullptr;  // [H, h] (null without bias)
  const void* w2 = nullptr;  // [H, h, f]
  const void* b2 = nullptr;  // [H, f] (null without bias)
  const void* ln_w = nullptr;  // [H, f] (null without ln_residual)
  const void* ln_b = nullptr;  // [H, f]
  // outputs
  BHTView out;                 // [B, H, T, f]
  void* states = nullptr;      // [B, H, groups, state_size]
  void* final_state = nullptr; // [B, H, state_size] after the last committed chunk (optional)
  void* acc = nullptr;         // [B, H, state_size] accumulators of a partial last chunk, else 0 (optional)

  const char* name() const override { return "ttt_mlp_scan_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

struct TTTMLPScanBackward final : FusedCall {
  TTTMLPScanShape s;
  // the forward's inputs and stored states
  BHTView xq, xk, xv, lr;
  const void *tok = nullptr, *w1 = nullptr, *b1 = nullptr, *w2 = nullptr, *b2 = nullptr;
  const void *ln_w = nullptr, *ln_b = nullptr;
  const void* states = nullptr;
  BHTView dout;  // [B, H, T, f]
  // gradients (overwritten)
  BHTView dxq, dxk, dxv;  // [B, H, T, f]
  BHTView dlr;            // [B, H, T]
  void* dtok = nullptr;   // [K]
  void *dw1 = nullptr, *db1 = nullptr, *dw2 = nullptr, *db2 = nullptr;  // as W1, b1, W2, b2 (b null without bias)
  void *dln_w = nullptr, *dln_b = nullptr;                              // [H, f] (null without ln_residual)
  void* workspace = nullptr;  // workspace_bytes() bytes, any content (checkpoint_group > 1: the CUDA
                              // replay's snapshots, 65 KiB per (b, h) and chunk at f = 64 with bf16
                              // products)

  size_t workspace_bytes() const;
  const char* name() const override { return "ttt_mlp_scan_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

namespace cpu_impl {
void ttt_mlp_scan_forward(TTTMLPScanForward& c);
void ttt_mlp_scan_backward(TTTMLPScanBackward& c);
}  // namespace cpu_impl

namespace cuda_impl {
// Defined in kernels/cuda/ttt_mlp_scan.cu (CUDA builds only).
std::string ttt_mlp_scan_unsupported(const TTTMLPScanShape& s);
void ttt_mlp_scan_forward(Backend& be, TTTMLPScanForward& c);
void ttt_mlp_scan_backward(Backend& be, TTTMLPScanBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
