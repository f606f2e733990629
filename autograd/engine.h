// autograd/engine.h — walks the tape in reverse: backward() and grad().
#pragma once

#include <optional>

#include "autograd/node.h"

namespace ttt {

// Accumulates d(sum_i <outputs[i], grad_outputs[i]>)/d(leaf) into leaf.grad for every leaf that
// requires grad. grad_outputs may be empty for scalar outputs (then 1). retain_graph defaults to
// create_graph; without it the saved tensors are freed and a second backward is an error.
void backward(const tensor_list& outputs, const tensor_list& grad_outputs = {},
              std::optional<bool> retain_graph = std::nullopt, bool create_graph = false);

// Returns d(sum_i <outputs[i], grad_outputs[i]>)/d(inputs[j]) without touching any .grad.
// With create_graph the returned gradients are themselves differentiable. An input that does
// not influence the outputs is an error unless allow_unused (then its gradient is undefined).
tensor_list grad(const tensor_list& outputs, const tensor_list& inputs,
                 const tensor_list& grad_outputs = {}, std::optional<bool> retain_graph = std::nullopt,
                 bool create_graph = false, bool allow_unused = false);

// The sequence number the next recorded node will get (checkpoint() uses it to find the nodes
// recorded during a recomputation).
uint64_t next_sequence_number();

}  // namespace ttt
