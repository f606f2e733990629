// autograd/checkpoint.cpp — see checkpoint.h.
//
// Backward of the checkpoint node, with g the gradients of its outputs:
//   without create_graph: inputs are re-entered as fresh leaves (detached copies of the handles),
//     fn is re-run taped, and grad(outputs', leaves, g) gives the input gradients;
//   with create_graph: inputs are re-entered through an identity node ("checkpoint_alias")
//     so the recomputed graph hangs off the inputs' own history and the returned gradients can be
//     differentiated again (TTT meta-learning through a checkpointed scan).
#include "autograd/checkpoint.h"

#include "autograd/autocast.h"

#include <unordered_set>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ttt {

namespace {

const char* kAliasName = "checkpoint_alias";

// A differentiable identity that creates a new tensor handle (same storage) with its own node.
Tensor alias(const Tensor& x) {
  Tensor y = make_view(x, x.shape(), x.strides(), x.offset());
  record(kAliasName, {x}, {y}, {}, [](BackwardCtx&, const tensor_list& g) { return tensor_list{g[0]}; });
  return y;
}

// Every node the recomputation reaches must have been recorded during it, or be an entry point
// (an alias in create_graph mode, or a re-entered input leaf otherwise).
void check_closed(const tensor_list& outs, uint64_t start, const std::unordered_set<const TensorImpl*>& leaves) {
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (const Tensor& o : outs)
    if (o.defined() && o.grad_fn() && seen.insert(o.grad_fn().get()).second) stack.push_back(o.grad_fn().get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (std::string(n->name()) == kAliasName && n->seq() >= start) continue;
    if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) {
      if (!leaves.count(acc->leaf().get()))
        throw std::invalid_argument(
            "checkpoint: the function used a tensor that requires grad but is not among the checkpoint inputs "
            "(a leaf" + (Tensor(acc->leaf()).name().empty() ? std::string() : " named '" + Tensor(acc->leaf()).name() + "'") +
            "); pass it in `inputs`");
      continue;
    }
    if (n->seq() < start)
      throw std::invalid_argument(std::string("checkpoint: the function used a tensor computed outside it (by ") +
                                  n->name() + ") that requires grad; pass it in `inputs`");
    for (auto& e : n->next_edges)
      if (e.valid() && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
}

}  // namespace

tensor_list recompute_gradients(const CheckpointFn& fn, const BackwardCtx& c, const tensor_list& g, bool amp,
                                DType amp_dtype) {
  const size_t n_in = c.saved.size();
  const bool create = GradMode::is_enabled();
  const uint64_t start = next_sequence_number();  // aliases and the recomputation come after
  tensor_list local(n_in);
  std::unordered_set<const TensorImpl*> leaves;
  tensor_list diff;
  std::vector<size_t> diff_idx;
  for (size_t i = 0; i < n_in; ++i) {
    const Tensor& in = c.saved[i];
    if (!in.defined()) continue;
    if (!c.needs(i) || !in.requires_grad()) {
      local[i] = in.detach();
    } else if (create) {
      local[i] = alias(in);
    } else {
      local[i] = in.detach().set_requires_grad(true);
      leaves.insert(local[i].impl());
    }
    if (c.needs(i) && in.requires_grad()) {
      diff.push_back(local[i]);
      diff_idx.push_back(i);
    }
  }
  tensor_list re;
  {
    GradModeGuard on(true);
    AutocastGuard same_precision(amp_dtype, amp);
    re = fn(local);
  }
  if (re.size() != g.size())
    throw std::runtime_error("checkpoint: the function returned " + std::to_string(re.size()) +
                             " outputs on recomputation, " + std::to_string(g.size()) + " the first time");
  check_closed(re, start, leaves);
  tensor_list live, gos;
  for (size_t k = 0; k < re.size(); ++k)
    if (re[k].defined() && re[k].requires_grad()) {
      live.push_back(re[k]);
      gos.push_back(g[k]);
    }
  tensor_list result(n_in);
  if (live.empty() || diff.empty()) return result;
  tensor_list gr = grad(live, diff, gos, create, create, /*allow_unused=*/true);
  for (size_t j = 0; j < diff_idx.size(); ++j) result[diff_idx[j]] = gr[j];
  return result;
}

tensor_list checkpoint(const CheckpointFn& fn, const tensor_list& inputs) {
  if (!needs_grad(inputs)) return fn(inputs);
  tensor_list outs;
  {
    NoGradGuard ng;
    outs = fn(inputs);
  }
  // An output that is an input handle must not receive this node's history.
  for (Tensor& o : outs)
    for (const Tensor& in : inputs)
      if (o.defined() && in.defined() && o.is_same(in)) o = o.detach();
  // The recomputation must run in the forward's precision, wherever backward() is called.
  const bool amp = Autocast::enabled();
  const DType amp_dtype = Autocast::dtype();
  record("checkpoint", inputs, outs, inputs, [fn, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
    return recompute_gradients(fn, c, g, amp, amp_dtype);
  });
  return outs;
}

}  // namespace ttt
