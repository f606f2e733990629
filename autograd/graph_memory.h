// autograd/graph_memory.h — what a recorded graph keeps alive for its backward, by op.
//
// Walks the graph behind a root tensor (every node reachable through next_edges) and charges each
// distinct storage held by a FunctionNode's saved tensors to the op that saves it (the first one
// met, breadth-first from the root, when several ops save the same storage). The bytes are the
// storages' whole sizes: a saved view keeps its whole storage alive. Leaves that the graph saves
// (parameters, their autocast copies) are counted like any other storage; the caller can tell them
// apart by op. Used by `ttt bench --saved` to see where a model's activation memory goes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

struct SavedBytes {
  std::string op;       // the node's name (the op's kOp)
  int64_t bytes = 0;    // sum of the distinct storages first charged to this op
  int64_t storages = 0;
  int64_t nodes = 0;    // nodes of this op in the graph
};

// Largest first; ties by op name. Empty when root has no grad_fn.
std::vector<SavedBytes> saved_bytes_by_op(const Tensor& root);

}  // namespace ttt
