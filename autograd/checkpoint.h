// autograd/checkpoint.h — gradient checkpointing (Chen et al. 2016): trade compute for memory.
//
// checkpoint(fn, inputs) runs fn without taping and records one node that keeps only `inputs`.
// In backward, the node re-runs fn with taping on and differentiates the recomputed outputs.
// Gradients are identical to running fn directly (fn must be deterministic). TTT uses this
// through time: the scan over mini-batches keeps the hidden state only every G mini-batches.
//
// Contract: every tensor fn uses that needs a gradient must be passed in `inputs` (a parameter
// captured by the closure would silently get no gradient, so this is detected and reported).
// create_graph works through a checkpoint: the recomputation is connected to the inputs' history.
// The recomputation runs under the autocast setting of the forward (backward() may be called
// outside the autocast scope).
#pragma once

#include <functional>

#include "autograd/tensor.h"

namespace ttt {

using CheckpointFn = std::function<tensor_list(const tensor_list&)>;

tensor_list checkpoint(const CheckpointFn& fn, const tensor_list& inputs);

struct BackwardCtx;
// The backward of a node that kept only its inputs (c.saved, in order) and can recompute its
// outputs with fn: re-runs fn taped (under the given autocast setting) and differentiates it
// against the output gradients g (one per output of fn). Without create_graph the inputs are
// re-entered as fresh leaves; with it (grad mode on) through identity nodes, so the gradients are
// themselves differentiable. Used by checkpoint() and by fused ops whose composite twin serves
// for create_graph (e.g. autograd/ops/ttt_linear_scan.cpp).
tensor_list recompute_gradients(const CheckpointFn& fn, const BackwardCtx& c, const tensor_list& g, bool amp,
                                DType amp_dtype);

}  // namespace ttt
