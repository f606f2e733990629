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

}  // namespace ttt
