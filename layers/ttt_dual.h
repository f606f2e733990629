// layers/ttt_dual.h — the dual form (paper §2.5, App. A): one segment of a mini-batch computed with
// matmuls and a causal mask, without materializing the per-token weights W_i or gradients G_j.
// The fast path for training and prefill. Follows ttt-lm-pytorch ttt.py TTTLinear / TTTMLP
// compute_mini_batch (use_dual_form branch).
#pragma once

#include "layers/ttt_inner.h"

namespace ttt {

// A SegmentFn for InnerLinear and InnerMLP (throws for other inner models: use impl = generic).
Tensor dual_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                    const InnerNorm& n);

// The whole TTT-Linear scan from W0 in this dual form, from the fused op's inputs in its order
// (XQ, XK, XV [B, nh, T, f], lr [B, nh, T], tok [K], W0 [nh, f, f], b0 [nh, f] or undefined,
// ln_w, ln_b [nh, f] or undefined = no LN + residual; see autograd/ops.h ttt_linear_scan): the
// fused op's composite twin (its create_graph backward) and its oracle in the tests.
Tensor dual_linear_scan(const tensor_list& x, double eps);

// The same for TTT-MLP from ttt_mlp_scan's inputs in its order (XQ, XK, XV, lr, tok, W1 [nh, f, h],
// b1 [nh, h], W2 [nh, h, f], b2 [nh, f] (biases undefined = none), ln_w, ln_b): its composite twin
// and oracle.
Tensor dual_mlp_scan(const tensor_list& x, double eps);

}  // namespace ttt
