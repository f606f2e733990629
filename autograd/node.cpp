// autograd/node.cpp — Node bookkeeping, saved tensors, op recording, leaf accumulation.
#include "autograd/node.h"

#include <atomic>

#include "autograd/engine.h"
#include "autograd/ops.h"

namespace ttt {

namespace {
std::atomic<uint64_t> g_next_seq{1};

TensorMeta meta_of(const Tensor& t) {
  if (!t.defined()) return {};
  return {t.shape(), t.dtype(), t.device()};
}
}  // namespace

uint64_t next_sequence_number() { return g_next_seq.load(); }

Node::Node(const char* name) : name_(name), seq_(g_next_seq.fetch_add(1)) {}

// --- SavedTensor ---------------------------------------------------------------------------------

SavedTensor::SavedTensor(const Tensor& t, bool is_output) : is_output_(is_output) {
  was_defined_ = t.defined();
  if (!was_defined_) return;
  version_ = t.version();
  if (is_output) {
    // Keep the data without grad_fn (node -> saved -> tensor -> node would be a cycle).
    data_ = t.detach();
    requires_grad_ = t.requires_grad();
    output_nr_ = t.output_nr();
  } else {
    data_ = t;
  }
}

Tensor SavedTensor::unpack(const std::shared_ptr<Node>& owner, const char* op) const {
  if (released_)
    throw std::runtime_error(std::string("backward through ") + op +
                             " a second time: its saved tensors were freed after the first backward "
                             "(pass retain_graph=true to the first backward to keep them)");
  if (!was_defined_) return Tensor();
  if (data_.version() != version_)
    throw std::runtime_error(std::string("a tensor saved by ") + op +
                             " for backward was modified in place afterwards (version " +
                             std::to_string(data_.version()) + ", saved at version " +
                             std::to_string(version_) + ")");
  if (!is_output_ || !requires_grad_) return data_;
  Tensor t = data_.detach();
  set_history(t, owner, output_nr_);
  return t;
}

Tensor BackwardCtx::input_stand_in(size_t i, const Tensor& values) const {
  Tensor t = values.detach();
  if (input_edges && i < input_edges->size() && (*input_edges)[i].valid())
    set_history(t, (*input_edges)[i].fn, (*input_edges)[i].input_nr);
  return t;
}

BackwardCtx BackwardCtx::stand_in_inputs(size_t n) const {
  BackwardCtx r;
  r.needs_input_grad = needs_input_grad;
  for (size_t i = 0; i < n; ++i) r.saved.push_back(saved[i].defined() ? input_stand_in(i, saved[i]) : Tensor());
  return r;
}

// --- FunctionNode ----------------------------------------------------------------------------------

tensor_list FunctionNode::apply(tensor_list&& grad_outputs) { return run(std::move(grad_outputs), nullptr); }

tensor_list FunctionNode::apply_wanted(tensor_list&& grad_outputs, const std::vector<bool>& wanted) {
  return run(std::move(grad_outputs), &wanted);
}

tensor_list FunctionNode::run(tensor_list&& grad_outputs, const std::vector<bool>* wanted) {
  BackwardCtx ctx;  // a released node fails in SavedTensor::unpack, only if it saved something
  ctx.saved.reserve(saved.size());
  std::shared_ptr<Node> self = self_.lock();  // alive: whoever calls apply() holds us
  for (auto& s : saved) ctx.saved.push_back(s.unpack(self, name()));
  ctx.needs_input_grad = needs_input_grad;
  ctx.input_edges = &next_edges;
  if (wanted)
    for (size_t i = 0; i < ctx.needs_input_grad.size(); ++i)
      ctx.needs_input_grad[i] = ctx.needs_input_grad[i] && i < wanted->size() && (*wanted)[i];
  return fn_(ctx, grad_outputs);
}

void FunctionNode::release_saved() {
  for (auto& s : saved) s.release();
}

// --- AccumulateGrad ---------------------------------------------------------------------------------

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
    : Node("AccumulateGrad", SinkTag{}), leaf_(std::move(leaf)) {
  Tensor t(leaf_);
  output_meta.push_back(meta_of(t));
}

namespace {
// The first gradient of a leaf becomes its .grad as it is only when nothing else can see it: no
// other handle, no other view of its memory (add's backward hands one tensor to both inputs;
// sum's is a stride-0 expanded view), dense. Anything else is copied, so .grad never aliases
// another tensor and a later in-place accumulation cannot write into something else or into
// itself. The same rule holds with create_graph (the copy is then a differentiable clone, so
// the gradient keeps its history).
bool exclusive_dense(const Tensor& g) {
  return g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1 && g.is_contiguous() &&
         g.offset() == 0 &&
         g.impl()->storage->nbytes == static_cast<size_t>(g.numel()) * dtype_size(g.dtype());
}
}  // namespace

tensor_list AccumulateGrad::apply(tensor_list&& grad_outputs) {
  Tensor leaf(leaf_);
  Tensor g = std::move(grad_outputs.at(0));
  auto& meta = leaf.ensure_autograd_meta();
  for (auto& h : meta.hooks) {
    Tensor r = h(g);
    if (r.defined()) g = r;
  }
  if (!g.defined()) return {};
  Tensor cur = leaf.grad();
  if (create_graph) {
    // Keep the history of the accumulated gradient (it may be differentiated again).
    if (cur.defined()) meta.grad = add(cur, g).impl_ptr();
    else meta.grad = (exclusive_dense(g) ? g : clone(g)).impl_ptr();
  } else {
    NoGradGuard ng;
    if (!cur.defined()) {
      meta.grad = (exclusive_dense(g) ? g.detach() : clone(g.detach())).impl_ptr();
    } else if (cur.requires_grad()) {
      meta.grad = add(cur.detach(), g.detach()).impl_ptr();
    } else {
      cur.add_(g.detach());
    }
  }
  for (auto& h : meta.post_accumulate_hooks) h(leaf);
  return {};
}

// --- recording ---------------------------------------------------------------------------------------

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const tensor_list& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined()) return {};
  auto* m = t.autograd_meta();
  if (!m) return {};
  if (m->grad_fn) return {m->grad_fn, m->output_nr};
  if (!m->requires_grad) return {};
  auto acc = m->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    m->grad_accumulator = acc;
  }
  return {acc, 0};
}

void set_history(const Tensor& t, const std::shared_ptr<Node>& node, uint32_t nr) {
  auto& m = t.ensure_autograd_meta();
  m.grad_fn = node;
  m.output_nr = nr;
  m.requires_grad = false;  // non-leaf: requires_grad() is implied by grad_fn
}

std::shared_ptr<FunctionNode> record(const char* name, const tensor_list& inputs,
                                     const tensor_list& outputs, const tensor_list& saved,
                                     BackwardFn backward) {
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->self_ = node;
  node->next_edges.reserve(inputs.size());
  node->input_meta.reserve(inputs.size());
  node->needs_input_grad.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge e = gradient_edge(in);
    node->needs_input_grad.push_back(e.valid());
    node->next_edges.push_back(std::move(e));
    node->input_meta.push_back(meta_of(in));
  }
  for (const Tensor& out : outputs) node->output_meta.push_back(meta_of(out));
  // Outputs first, so saved outputs can be recognized by identity.
  for (uint32_t i = 0; i < outputs.size(); ++i)
    if (outputs[i].defined()) set_history(outputs[i], node, i);
  node->saved.reserve(saved.size());
  for (const Tensor& s : saved) {
    bool is_output = false;
    for (const Tensor& out : outputs)
      if (s.defined() && out.defined() && s.is_same(out)) is_output = true;
    node->saved.emplace_back(s, is_output);
  }
  return node;
}

}  // namespace ttt
