// layers/ttt_dual.h — the dual form (paper §2.5, App. A): one segment of a mini-batch computed with
// matmuls and a causal mask, without materializing the per-token weights W_i or gradients G_j.
// The fast path for training and prefill. Follows ttt-lm-pytorch ttt.py TTTLinear / TTTMLP
// compute_mini_batch (use_dual_form branch); ttt-official.md §1.5, §1.6.
#pragma once

#include "layers/ttt_inner.h"

namespace ttt {

// A SegmentFn for InnerLinear and InnerMLP (throws for other inner models: use impl = generic).
Tensor dual_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                    const InnerNorm& n);

}  // namespace ttt
