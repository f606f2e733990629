// autograd/node.h — nodes of the tape and the helper every differentiable op uses to record one.
//
// Note [The tape]
// Every op run while grad mode is on, with some input that requires grad, records one Node:
// edges to the nodes that produced its inputs, the tensors its backward needs (SavedTensor) and
// the backward function. Nodes get an increasing sequence number when recorded, so the order of
// recording is a topological order: backward runs a node once every node that consumed its
// outputs has run, and among the ready ones the most recent first, i.e. the tape in reverse;
// leaf sinks (AccumulateGrad) run as soon as their gradient is complete. Nodes are owned by the
// tensors they produced (grad_fn), so a graph disappears when its tensors do; nothing global
// needs clearing between steps.
//
// Note [Backward is taped too]
// Backward functions are written with the differentiable ops of ops.h. The engine runs them with
// grad mode = create_graph, so with create_graph=true their work is itself recorded and can be
// differentiated again (gradients of gradients: TTT's inner loop, meta-learned W0).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

struct Edge {
  std::shared_ptr<Node> fn;  // null: this input needs no gradient
  uint32_t input_nr = 0;     // which output of fn (= which slot of fn's gradient buffer)
  bool valid() const { return fn != nullptr; }
};

struct TensorMeta {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
};

class Node {
 public:
  explicit Node(const char* name);
  virtual ~Node() = default;
  // Sinks (AccumulateGrad) have no outgoing edges; they take sequence number 0 whenever they
  // were created, which the engine reads as "run as soon as ready" (see engine.cpp).
  struct SinkTag {};
  Node(const char* name, SinkTag) : name_(name), seq_(0) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Gradients w.r.t. this node's outputs -> gradients w.r.t. its inputs (one per next_edge;
  // undefined where next_edges[i] is invalid or the gradient is zero).
  virtual tensor_list apply(tensor_list&& grad_outputs) = 0;
  // What the engine calls: `wanted[i]` says whether this backward pass needs the gradient of
  // input i (its edge leads to a requested gradient: PyTorch's execution mask), so grad() of one
  // input does not compute the others. The default computes every gradient; FunctionNode hands
  // the mask to its backward function (BackwardCtx::needs).
  virtual tensor_list apply_wanted(tensor_list&& grad_outputs, const std::vector<bool>& wanted) {
    (void)wanted;
    return apply(std::move(grad_outputs));
  }
  // Frees saved tensors (after a backward without retain_graph).
  virtual void release_saved() {}

  const char* name() const { return name_; }
  uint64_t seq() const { return seq_; }

  std::vector<Edge> next_edges;
  std::vector<TensorMeta> input_meta;   // to validate the gradients apply() returns
  std::vector<TensorMeta> output_meta;  // to materialize zero gradients for unused outputs

 private:
  const char* name_;
  uint64_t seq_;
};

// The node at the end of a leaf's gradient path: accumulates into leaf.grad and runs hooks.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  tensor_list apply(tensor_list&& grad_outputs) override;
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }
  bool create_graph = false;  // set by the engine for the current pass
 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// A tensor kept for backward. Inputs are held as they are; an output of the node that saves it
// is held without its grad_fn (which would be a reference cycle) and re-attached on unpack.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, bool is_output);
  Tensor unpack(const std::shared_ptr<Node>& owner, const char* op) const;
  void release() { data_ = Tensor(); released_ = true; }
  const Tensor& data() const { return data_; }  // as held (undefined once released); for accounting
 private:
  Tensor data_;
  bool is_output_ = false;
  bool was_defined_ = false;
  bool released_ = false;
  bool requires_grad_ = false;
  uint32_t output_nr_ = 0;
  uint32_t version_ = 0;
};

// Context handed to a backward function: the unpacked saved tensors and which inputs need a
// gradient in this backward pass (recorded as requiring one, and wanted by the pass: grad() asks
// only for its inputs); a backward should compute only those and leave the others undefined.
struct BackwardCtx {
  tensor_list saved;
  std::vector<bool> needs_input_grad;
  const std::vector<Edge>* input_edges = nullptr;  // the node's edges (set by FunctionNode)
  bool needs(size_t i) const { return i < needs_input_grad.size() && needs_input_grad[i]; }
  // `values` standing in for input i in a taped backward: a new handle on the same data whose
  // gradient goes where input i's goes (its edge), so a create_graph backward written with it is
  // differentiable with respect to the input although the input itself was not saved. Ops use
  // it to keep only a low-precision copy of an operand (e.g. autocast's bf16 casts) instead of
  // the float32 original; `values` must have the input's shape and dtype. Without an edge (the
  // input needs no gradient, or a context made by hand) it is `values` detached.
  Tensor input_stand_in(size_t i, const Tensor& values) const;
  // A context for a taped backward that recomputes from the saved inputs (recompute_gradients):
  // saved[i] for i < n as stand-ins of input i (undefined ones stay undefined), the same needs.
  BackwardCtx stand_in_inputs(size_t n) const;
};
using BackwardFn = std::function<tensor_list(BackwardCtx& ctx, const tensor_list& grad_outputs)>;

// The node of an ordinary op: saved tensors plus a backward closure.
class FunctionNode : public Node {
 public:
  FunctionNode(const char* name, BackwardFn fn) : Node(name), fn_(std::move(fn)) {}
  tensor_list apply(tensor_list&& grad_outputs) override;
  tensor_list apply_wanted(tensor_list&& grad_outputs, const std::vector<bool>& wanted) override;
  void release_saved() override;
  std::vector<SavedTensor> saved;
  std::vector<bool> needs_input_grad;  // as recorded: the input's edge is valid
  std::weak_ptr<Node> self_;  // to re-attach saved outputs to this node on unpack
 private:
  tensor_list run(tensor_list&& grad_outputs, const std::vector<bool>* wanted);
  BackwardFn fn_;
};

// True when grad mode is on and some input requires grad: the op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const tensor_list& inputs);

// Records a FunctionNode for an op: edges from `inputs` (undefined inputs allowed), saves
// `saved` (each may be an input, an output or an intermediate), and makes every output
// require grad with this node as grad_fn. Call only when needs_grad(inputs).
std::shared_ptr<FunctionNode> record(const char* name, const tensor_list& inputs,
                                     const tensor_list& outputs, const tensor_list& saved,
                                     BackwardFn backward);

// The edge a gradient for `t` must be sent along: (grad_fn, output_nr) for results of ops, the
// (lazily created) AccumulateGrad for leaves that require grad, an invalid edge otherwise.
Edge gradient_edge(const Tensor& t);

// Attaches `node` as the producer of `t` (output slot `nr`); used by record() and custom nodes.
void set_history(const Tensor& t, const std::shared_ptr<Node>& node, uint32_t nr);

}  // namespace ttt
