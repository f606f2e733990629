// autograd/engine.cpp — the reverse walk over the tape.
//
// Algorithm (see Note [The tape] in node.h):
//  1. Collect the nodes reachable from the outputs' gradient edges.
//  2. grad(): mark the nodes that must run — those from which some requested input is
//     reachable; capture the gradient arriving at each requested input's slot. backward(): every
//     reachable node runs, AccumulateGrad nodes included. Each node is told which of its inputs
//     the pass wants (the execution mask: the edge leads to a capture or to a node that runs), so
//     grad(loss, {W}) of x @ W computes dW and not dx.
//  3. Count each node's dependencies: the edges into it from nodes that run. A node is ready once
//     all of them have delivered (as in PyTorch's engine), so every gradient contribution to it
//     has arrived. Ready nodes run in decreasing sequence number, which is the tape reversed,
//     except AccumulateGrad sinks, which run first: a leaf's .grad and its post-accumulate hooks
//     (the data-parallel all-reduce, trainer/ddp.h) happen as soon as its gradient is complete,
//     while the backward of earlier layers is still to come. Gradients arriving at the same slot
//     are summed in the order they arrive; missing output gradients are materialized as zeros.
//     Each node runs with grad mode = create_graph. Without retain_graph a node frees its saved
//     tensors after running.
#include "autograd/engine.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/ops.h"
#include "kernels/profiler.h"

namespace ttt {

namespace {

// Ready nodes: AccumulateGrad sinks (sequence number 0, see Node) first, then the most recently
// recorded. Among the other nodes this is exactly decreasing sequence number: a node's
// dependencies (its consumers) were all recorded after it, so a node that is not ready yet has an
// unfinished ancestor, with a larger number, that is ready.
struct ReadyOrder {
  static uint64_t priority(const Node* n) { return n->seq() == 0 ? UINT64_MAX : n->seq(); }
  bool operator()(const Node* a, const Node* b) const { return priority(a) < priority(b); }
};

Tensor accumulate(const Tensor& cur, const Tensor& g) {
  if (!cur.defined()) return g;
  if (!g.defined()) return cur;
  return add(cur, g);
}

void validate(const Node& node, const tensor_list& grads) {
  if (grads.size() != node.next_edges.size())
    throw std::logic_error(std::string("backward of ") + node.name() + " returned " +
                           std::to_string(grads.size()) + " gradients, expected " +
                           std::to_string(node.next_edges.size()));
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined() || !node.next_edges[i].valid()) continue;
    const TensorMeta& m = node.input_meta[i];
    if (grads[i].shape() != m.shape)
      throw std::logic_error(std::string("backward of ") + node.name() + " returned a gradient of shape " +
                             grads[i].shape().str() + " for input " + std::to_string(i) + " of shape " +
                             m.shape.str());
    if (grads[i].dtype() != m.dtype)
      throw std::logic_error(std::string("backward of ") + node.name() + " returned a " +
                             dtype_name(grads[i].dtype()) + " gradient for " + dtype_name(m.dtype) +
                             " input " + std::to_string(i));
    if (grads[i].device() != m.device)
      throw std::logic_error(std::string("backward of ") + node.name() + " returned a gradient on " +
                             grads[i].device().str() + " for input " + std::to_string(i) + " on " +
                             m.device.str());
  }
}

struct SlotKey {
  const Node* node;
  uint32_t nr;
  bool operator<(const SlotKey& o) const { return node != o.node ? node < o.node : nr < o.nr; }
};

// One backward pass. `captures` maps requested-input slots to result indices (grad() mode).
tensor_list run_engine(const tensor_list& outputs, const tensor_list& grad_outputs,
                       const tensor_list* inputs, bool retain_graph, bool create_graph,
                       bool allow_unused) {
  if (!grad_outputs.empty() && grad_outputs.size() != outputs.size())
    throw std::invalid_argument("backward: got " + std::to_string(grad_outputs.size()) +
                                " grad_outputs for " + std::to_string(outputs.size()) + " outputs");
  // Root gradients.
  std::vector<std::pair<Edge, Tensor>> roots;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    check_defined("backward", out, "output");
    if (!out.requires_grad())
      throw std::invalid_argument("backward: output " + std::to_string(i) + " (" + out.str() +
                                  ") does not require grad and has no grad_fn");
    Tensor go = grad_outputs.empty() ? Tensor() : grad_outputs[i];
    if (!go.defined()) {
      if (out.numel() != 1)
        throw std::invalid_argument("backward: grad can be implicitly created only for scalar outputs; "
                                    "output " + std::to_string(i) + " has shape " + out.shape().str() +
                                    " (pass grad_outputs)");
      go = ones_like(out.detach());
    } else if (go.shape() != out.shape() || go.dtype() != out.dtype() || go.device() != out.device()) {
      throw std::invalid_argument("backward: grad_output " + go.str() + " does not match output " + out.str());
    }
    roots.emplace_back(gradient_edge(out), go);
  }

  // 1. Reachable nodes.
  std::vector<Node*> nodes;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& r : roots)
    if (seen.insert(r.first.fn.get()).second) stack.push_back(r.first.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    nodes.push_back(n);
    for (auto& e : n->next_edges)
      if (e.valid() && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }

  // 2. Captures and the set of nodes to run.
  std::map<SlotKey, size_t> captures;
  std::unordered_set<const Node*> run;
  tensor_list results;
  if (inputs) {
    results.resize(inputs->size());
    for (size_t i = 0; i < inputs->size(); ++i) {
      const Tensor& in = (*inputs)[i];
      check_defined("grad", in, "input");
      if (!in.requires_grad())
        throw std::invalid_argument("grad: input " + std::to_string(i) + " (" + in.str() +
                                    ") does not require grad");
      Edge e = gradient_edge(in);
      captures.emplace(SlotKey{e.fn.get(), e.input_nr}, i);
    }
    // needed(n) = some edge of n leads to a captured slot or to a needed node. Children have
    // smaller sequence numbers, so evaluating in increasing order sees them first.
    std::sort(nodes.begin(), nodes.end(), [](Node* a, Node* b) { return a->seq() < b->seq(); });
    std::unordered_set<const Node*> target_nodes;
    for (auto& c : captures) target_nodes.insert(c.first.node);
    for (Node* n : nodes) {
      for (auto& e : n->next_edges) {
        if (!e.valid()) continue;
        if (captures.count({e.fn.get(), e.input_nr}) || run.count(e.fn.get())) {
          run.insert(n);
          break;
        }
      }
    }
  } else {
    for (Node* n : nodes) run.insert(n);
  }

  // 3. Dependencies: edges into each node from the nodes that run.
  std::unordered_map<const Node*, size_t> deps;
  for (Node* n : nodes)
    if (run.count(n))
      for (auto& e : n->next_edges)
        if (e.valid()) ++deps[e.fn.get()];

  std::unordered_map<const Node*, tensor_list> buffers;
  std::priority_queue<Node*, std::vector<Node*>, ReadyOrder> ready;
  std::unordered_map<const Node*, std::shared_ptr<Node>> holders;  // keep nodes alive while queued
  auto deliver = [&](const Edge& e, const Tensor& g) {
    auto it = buffers.find(e.fn.get());
    if (it == buffers.end())
      it = buffers.emplace(e.fn.get(), tensor_list(std::max<size_t>(1, e.fn->output_meta.size()))).first;
    if (e.input_nr >= it->second.size()) it->second.resize(e.input_nr + 1);
    it->second[e.input_nr] = accumulate(it->second[e.input_nr], g);
  };
  auto make_ready = [&](const std::shared_ptr<Node>& n) {
    holders.emplace(n.get(), n);
    ready.push(n.get());
  };
  {
    GradModeGuard gm(create_graph);
    for (auto& r : roots) deliver(r.first, r.second);
  }
  // Roots that no other root's graph leads into start; the others wait for their dependencies.
  for (auto& r : roots)
    if (!deps.count(r.first.fn.get()) && !holders.count(r.first.fn.get())) make_ready(r.first.fn);

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    auto buf = buffers.find(n);
    const bool got = buf != buffers.end();  // some gradient arrived (else its producers sent none)
    tensor_list grads;
    if (got) {
      grads = std::move(buf->second);
      buffers.erase(buf);
    }
    // Captures at this node's slots.
    if (inputs && got) {
      for (uint32_t s = 0; s < grads.size(); ++s) {
        auto c = captures.find({n, s});
        if (c != captures.end()) results[c->second] = grads[s];
      }
    }
    const bool runs = run.count(n) > 0;
    if (runs && got) {
      auto* acc = dynamic_cast<AccumulateGrad*>(n);
      if (acc) acc->create_graph = create_graph;
      // Materialize zeros for unused outputs of multi-output nodes.
      ProfileScope node_scope(n->name());  // `ttt bench --profile`: backend calls by node
      for (size_t s = 0; s < n->output_meta.size() && s < grads.size(); ++s) {
        if (!grads[s].defined()) {
          const TensorMeta& m = n->output_meta[s];
          grads[s] = zeros(m.shape, opts(m.dtype, m.device));
        }
      }
      std::vector<bool> wanted(n->next_edges.size());
      for (size_t i = 0; i < wanted.size(); ++i) {
        const Edge& e = n->next_edges[i];
        wanted[i] = e.valid() && (!inputs || run.count(e.fn.get()) || captures.count({e.fn.get(), e.input_nr}));
      }
      tensor_list in_grads;
      {
        GradModeGuard gm(create_graph);
        in_grads = n->apply_wanted(std::move(grads), wanted);
        if (!acc) {
          validate(*n, in_grads);
          ProfileScope accumulation("gradient accumulation");
          for (size_t i = 0; i < in_grads.size(); ++i)
            if (in_grads[i].defined() && wanted[i]) deliver(n->next_edges[i], in_grads[i]);
        }
      }
      if (!retain_graph) n->release_saved();
    }
    // This node's contributions are all delivered (possibly none): its inputs may now be ready.
    if (runs)
      for (auto& e : n->next_edges)
        if (e.valid() && --deps[e.fn.get()] == 0) make_ready(e.fn);
    holders.erase(n);
  }

  if (inputs) {
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i].defined() && !allow_unused)
        throw std::invalid_argument("grad: input " + std::to_string(i) + " (" + (*inputs)[i].str() +
                                    ") was not used to compute the outputs (pass allow_unused=true)");
    }
  }
  return results;
}

}  // namespace

void backward(const tensor_list& outputs, const tensor_list& grad_outputs,
              std::optional<bool> retain_graph, bool create_graph) {
  run_engine(outputs, grad_outputs, nullptr, retain_graph.value_or(create_graph), create_graph, false);
}

tensor_list grad(const tensor_list& outputs, const tensor_list& inputs, const tensor_list& grad_outputs,
                 std::optional<bool> retain_graph, bool create_graph, bool allow_unused) {
  return run_engine(outputs, grad_outputs, &inputs, retain_graph.value_or(create_graph), create_graph,
                    allow_unused);
}

}  // namespace ttt
