// layers/ttt_primal.h — the primal form (paper §2.4, App. A.2): token by token, the gradient of
// each token's inner loss at the mini-batch's start weights W is added to an accumulator, and the
// token's output uses W_i = W − tok_i · acc. The scan commits W ← W − tok_{K−1} · acc every K
// tokens. O(1) state per head; this is how decoding works (ttt-lm-pytorch ttt.py primal branch and
// TTTCache).
#pragma once

#include "layers/ttt_inner.h"

namespace ttt {

// A SegmentFn for InnerLinear and InnerMLP (hand-derived per-token gradients, as the dual form).
Tensor primal_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                      const InnerNorm& n);

}  // namespace ttt
