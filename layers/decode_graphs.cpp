// layers/decode_graphs.cpp — see decode_graphs.h.
#include "layers/decode_graphs.h"

#include <cstdio>
#include <stdexcept>
#include <utility>

#include "autograd/autocast.h"

namespace ttt {

namespace {

std::vector<Tensor> tensors_of(DecodeState& s) {
  std::vector<Tensor> v;
  s.for_each_tensor([&](Tensor& t) { v.push_back(t); });
  return v;
}

std::set<const Storage*> in_place_storage(DecodeState& s) {
  std::set<const Storage*> v;
  s.for_each_in_place_tensor([&](Tensor& t) {
    if (t.defined()) v.insert(t.impl()->storage.get());
  });
  return v;
}

// Whether a and b are the same elements of the same memory.
bool same_view(const Tensor& a, const Tensor& b) {
  const TensorImpl* x = a.impl();
  const TensorImpl* y = b.impl();
  return x->storage == y->storage && x->offset == y->offset && x->shape == y->shape && x->strides == y->strides;
}

}  // namespace

void DecodeGraphs::set_enabled(bool on) {
  enabled_ = on;
  if (!on) clear();
}

void DecodeGraphs::clear() {
  entries_.clear();
  owner_ = nullptr;
  owner_alive_.reset();
}

bool DecodeGraphs::applies(const Tensor& ids, const DecodeState& state, Device device) const {
  return enabled_ && !failed_ && !GradMode::is_enabled() && ids.dim() == 2 && ids.shape()[1] == 1 &&
         state.graphable() && graphs_supported(device);
}

// The step's shapes and control flow: the ids' shape, the autocast mode, the state's key and the
// shape and dtype of every state tensor.
std::vector<int64_t> DecodeGraphs::key(const Tensor& ids, DecodeState& state, Device device) const {
  std::vector<int64_t> k = {ids.shape()[0], device.index, Autocast::enabled() ? 1 : 0,
                            static_cast<int64_t>(Autocast::dtype()), deterministic() ? 1 : 0};
  state.graph_key(k);
  state.for_each_tensor([&](Tensor& t) {
    k.push_back(t.defined() ? static_cast<int64_t>(t.dtype()) : -1);
    if (!t.defined()) return;
    k.push_back(t.dim());
    for (int64_t s : t.shape()) k.push_back(s);
  });
  return k;
}

// The owner is the one state that holds tensors recordings rewrite; a previous owner still alive
// gets its own copies of them before this one's replays begin.
void DecodeGraphs::take_ownership(DecodeState& state) {
  if (owner_ == &state && !owner_alive_.expired()) return;
  if (auto alive = owner_alive_.lock()) {
    // Its in-place tensors (a KV cache) stay as they are: the recordings that write them are
    // dropped before this state's replays (drop_stale_in_place), so no graph touches them again.
    auto* previous = const_cast<DecodeState*>(owner_);
    const std::set<const Storage*> in_place = in_place_storage(*previous);
    previous->for_each_tensor([&](Tensor& t) {
      if (t.defined() && !in_place.count(t.impl()->storage.get())) t = t.clone();
    });
  }
  owner_ = &state;
  owner_alive_ = state.liveness();
}

Tensor DecodeGraphs::step(const Tensor& ids, DecodeState& state, Device device, uint64_t weights_stamp,
                          const StepFn& eager) {
  if (weights_stamp != stamp_) {
    clear();
    stamp_ = weights_stamp;
  }
  take_ownership(state);
  drop_stale_in_place(state);
  if (entries_.size() >= kMaxEntries) clear();
  Entry& e = entries_[key(ids, state, device)];
  if (e.graph) return replay(e, ids, state);
  if (++e.seen < 2) return eager(ids, state);  // the first time: caches (weight casts, tables) fill
  return record(e, ids, state, device, eager);
}

// Recordings whose in-place buffers are not the state's current ones (see the header).
void DecodeGraphs::drop_stale_in_place(DecodeState& state) {
  const std::set<const Storage*> now = in_place_storage(state);
  if (now.empty()) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& e = it->second;
    if (e.graph && e.in_place != now) it = entries_.erase(it);
    else ++it;
  }
}

Tensor DecodeGraphs::record(Entry& e, const Tensor& ids, DecodeState& state, Device device, const StepFn& eager) {
  std::unique_ptr<DecodeState> pre = state.clone();
  if (!pre) throw std::logic_error("DecodeGraphs: a graphable state must clone()");
  e.ids = ids.to(device).clone();
  Tensor logits;
  try {
    e.graph = capture_graph(device, [&] { logits = eager(e.ids, state); });
  } catch (const std::exception& err) {
    // Nothing ran: the state's new tensors were never computed. Back to the state before, then eager.
    state.assign(*pre);
    e.ids = Tensor();
    failed_ = true;
    std::fprintf(stderr, "ttt: decoding without CUDA graphs from here on: %s\n", err.what());
    return eager(ids, state);
  }
  e.pre = std::move(pre);
  e.buffers = tensors_of(*e.pre);
  e.in_place = in_place_storage(*e.pre);
  for (const Tensor& b : e.buffers)
    if (b.defined()) e.buffer_storage.insert(b.impl()->storage.get());
  e.post = state.clone();
  e.logits = logits;
  ++recorded_;
  e.graph->replay();
  return logits.clone();
}

Tensor DecodeGraphs::replay(Entry& e, const Tensor& ids, DecodeState& state) {
  e.ids.copy_(ids);
  // The state's tensors into the buffers the recording read, where they are not those already. A
  // source that is also another slot's destination is copied aside first.
  const std::vector<Tensor> now = tensors_of(state);
  std::vector<std::pair<Tensor, Tensor>> copies;  // (buffer, source)
  for (size_t i = 0; i < now.size(); ++i) {
    if (!now[i].defined() || same_view(now[i], e.buffers[i])) continue;
    const bool aliased = e.buffer_storage.count(now[i].impl()->storage.get()) != 0;
    copies.emplace_back(e.buffers[i], aliased ? now[i].clone() : now[i]);
  }
  for (auto& [buffer, source] : copies) buffer.copy_(source);
  e.graph->replay();
  ++replays_;
  state.advance(*e.post, *e.pre);
  return e.logits.clone();
}

}  // namespace ttt
