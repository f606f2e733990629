// layers/ttt_generic.h — the generic (reference) TTT implementation: the inner loss is written with
// autograd ops and its gradient taken with grad(..., create_graph = true), so it works for ANY
// inner model (InnerModel::apply built from differentiable ops) without a hand-derived gradient,
// and the outer loop differentiates through it (gradients of gradients, paper §2.2).
//
// Semantics are exactly those of the dual form (ttt_inner.h): every token's gradient is taken at
// the mini-batch's start weights W, and token i uses W_i = W − tok_i·acc − Σ_{j≤i} eta[i, j] ∇ℓ_j(W).
// Clarity over speed: the per-token weights W_i are materialized.
#pragma once

#include "layers/ttt_inner.h"

namespace ttt {

Tensor generic_segment(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                       const InnerNorm& n);

}  // namespace ttt
