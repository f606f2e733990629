// layers/decode_graphs.h — one-token decode steps recorded as CUDA graphs and replayed.
//
// At batch 1 a decode step of the 125M TTT-Linear is hundreds of small kernels whose launches, not
// their work, set its time. A step is a function of the state's shapes and of a few integers
// (DecodeState::graph_key: for a TTT layer, the position inside the mini-batch), so the K steps of a
// mini-batch repeat: each is run eagerly the first time its key is seen, recorded
// (autograd/cuda_graph.h) the second time, and replayed from then on.
//
// How a replay stays exact:
//   - inputs: the ids are copied into the graph's own ids buffer, and every state tensor that is not
//     already the buffer the recording read (after the step recorded before it, it is) is copied
//     into that buffer;
//   - outputs: afterwards the state holds the tensors the recording made, which every replay
//     rewrites. So one state at a time — the owner — may hold them: when another state decodes, the
//     previous owner, if still alive, gets its own copies first. The logits are returned as a copy;
//   - the weights: a recording reads the weights (and their bf16 casts) as they were; a step after a
//     weight changed (weights_stamp) drops every graph;
//   - state updated in place (a KV cache): the recording writes into the cache it was recorded with,
//     and keeps it alive. A recording that holds such a cache other than the decoding state's
//     current one (the cache grew, or another state decodes) is dropped rather than fed by copying
//     the whole cache in: it is recorded again in two steps, and the old cache's memory goes back.
// Anything the recording cannot take (a read of device values on the host) ends it: the state is
// put back, the step runs eagerly, and this decoder stops recording (a message on stderr says why).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <vector>

#include "autograd/cuda_graph.h"
#include "layers/language_model.h"

namespace ttt {

class DecodeGraphs {
 public:
  using StepFn = std::function<Tensor(const Tensor& ids, DecodeState& state)>;

  void set_enabled(bool on);
  bool enabled() const { return enabled_; }
  // Whether step() takes this call: enabled, grad mode off, one token per sequence, a state that is
  // graphable, on a device that records graphs (not while profiling).
  bool applies(const Tensor& ids, const DecodeState& state, Device device) const;
  // One decode step (ids [B, 1] on any device) of the model on `device`: eager() itself, or
  // recorded, or replayed (see the file comment). weights_stamp changes whenever a weight does.
  Tensor step(const Tensor& ids, DecodeState& state, Device device, uint64_t weights_stamp, const StepFn& eager);
  void clear();

  int64_t recorded() const { return recorded_; }  // graphs recorded so far
  int64_t replays() const { return replays_; }    // steps replayed so far

 private:
  struct Entry {
    int64_t seen = 0;
    std::unique_ptr<CapturedGraph> graph;
    Tensor ids, logits;                       // the recording's input buffer and output
    std::unique_ptr<DecodeState> pre, post;   // the state it read (its buffers), the state it left
    std::vector<Tensor> buffers;              // pre's tensors, in for_each_tensor order
    std::set<const Storage*> buffer_storage;  // their storage
    std::set<const Storage*> in_place;        // the storage of pre's in-place tensors
  };
  std::vector<int64_t> key(const Tensor& ids, DecodeState& state, Device device) const;
  Tensor record(Entry& e, const Tensor& ids, DecodeState& state, Device device, const StepFn& eager);
  Tensor replay(Entry& e, const Tensor& ids, DecodeState& state);
  void take_ownership(DecodeState& state);
  void drop_stale_in_place(DecodeState& state);

  static constexpr size_t kMaxEntries = 256;  // a runaway of keys (a state that lies) stops growing here
  bool enabled_ = true, failed_ = false;
  std::map<std::vector<int64_t>, Entry> entries_;
  uint64_t stamp_ = 0;
  const DecodeState* owner_ = nullptr;
  std::weak_ptr<int> owner_alive_;
  int64_t recorded_ = 0, replays_ = 0;
};

}  // namespace ttt
