// layers/ttt_scan.h — the scan over mini-batches: cuts a sequence into segments at mini-batch
// boundaries, runs a SegmentFn on each, commits the fast weights at the end of every mini-batch,
// and optionally checkpoints through time (paper App. C).
//
// Note [Gradient checkpointing through time]
// Taping every mini-batch keeps its start weights W and all of its intermediates until backward:
// O(T/K · |W|) plus O(T) activations per layer. With checkpoint_group = G > 0, each run of G
// consecutive mini-batches is one autograd checkpoint (autograd/checkpoint.h): its forward runs
// untaped and keeps only its inputs — the state (W, acc) entering the group and views of the
// group's XQ/XK/XV/lr — and backward recomputes the group taped. G is the number of mini-batches
// per group, as the official JAX code's remat_mini_batch_group_size (default 4; the PyTorch code's
// checkpoint_group is a number of segments instead). Gradients are unchanged
// (tests/test_ttt_checkpoint.cpp).
#pragma once

#include "layers/ttt_inner.h"

namespace ttt {

// Per-head inputs of the inner loop for T consecutive tokens.
struct ScanInputs {
  Tensor XQ, XK, XV;  // [B, nh, T, f]
  Tensor lr;          // [B, nh, T]
  Tensor gate;        // [B, T, width]: the TTT layer's gate projection when made with the others, else undefined
};

// The inner loop's carried state: the weights at the current mini-batch's start, the accumulators
// of the tokens of this mini-batch already consumed (empty or undefined = zero), and the
// in-mini-batch index of the next token.
struct ScanState {
  tensor_list W, acc;
  int64_t index = 0;
  // Fused decoding (TTT-Linear, layers/ttt_layer.cpp decode_scan): the inputs of this mini-batch's
  // `index` tokens so far (the first `index` along the time axis: decoding keeps buffers of K), which
  // the next call scans again from W together with its own tokens. Undefined at a boundary, and
  // after a composite step (whose accumulators carry the mini-batch).
  ScanInputs pending;
};

struct ScanOptions {
  int64_t mini_batch = 16;      // K; -1: one mini-batch that never ends (batch GD)
  int64_t checkpoint_group = 0; // G mini-batches per checkpoint, 0 = off
  SegmentFn full = nullptr;     // runs whole mini-batches
  SegmentFn partial = nullptr;  // runs segments that start or end inside a mini-batch (decode)
};

// Runs the inner loop over `in` from state `st` (updated in place). tok holds eta's row factors
// for in-mini-batch indices tok_base, tok_base + 1, ... (K entries with tok_base = 0 when K > 0).
// Returns the outputs [B, nh, T, f].
Tensor ttt_scan(const InnerModel& m, ScanState& st, const ScanInputs& in, const Tensor& tok, int64_t tok_base,
                const InnerNorm& n, const ScanOptions& o);

}  // namespace ttt
