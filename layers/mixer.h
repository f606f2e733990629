// layers/mixer.h — the sequence-mixer interface shared by attention, linear attention and the
// TTT layers. A block calls forward() for whole sequences (training, eval, prefill) and
// init_state()/step() for incremental decoding.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "autograd/ops.h"
#include "layers/module.h"
#include "layers/norm.h"

namespace ttt {

// A sublayer that a block runs on its residual before the mixer: h -> h + fn(h, params), e.g. the
// Mamba backbone's pre-conv conv(norm(h)). params are every tensor fn reads that needs a gradient
// (fn may run inside a checkpoint region).
struct ResidualPrelude {
  std::function<Tensor(const Tensor& h, const tensor_list& params)> fn;
  tensor_list params;
};

// What SequenceMixer::forward_residual returns: the residual after the prelude, the mixer's output.
struct ResidualOutput {
  Tensor h, out;
};

// step() in two halves around the layer's scan, for a wavefront prefill (layers/language_model.cpp,
// Note [Wavefront prefill]): every active layer of a wave begins its step, the wave's scans run as
// one launch (ttt_linear_scan_group), then every layer finishes. With no scan_inputs the step was
// done whole and `output` is its result.
struct SplitStep {
  tensor_list scan_inputs;  // ttt_linear_scan's nine inputs
  TTTScanOptions scan_options;
  std::function<Tensor(const tensor_list& scan_outputs)> finish;  // the rest of the step: its output
  Tensor output;
};

struct MixerState {
  virtual ~MixerState() = default;
  int64_t position = 0;  // tokens consumed so far (absolute position of the next token)

  // Decoding through CUDA graphs (layers/decode_graphs.h). A state that says graphable() promises
  // that its mixer's step() of one token computes in the same way — the same shapes, kernels and
  // host values — for any two states whose tensors have equal shapes and dtypes and whose
  // graph_key() is equal: a step recorded once replays for every later such state, on the values
  // its tensors then hold. The default: not graphable (a KV cache that grows every token).
  virtual bool graphable() const { return false; }
  virtual void graph_key(std::vector<int64_t>& key) const {}
  // Every tensor slot of the state, defined or not, in a fixed order (the count may vary only with
  // what graph_key() says).
  virtual void for_each_tensor(const std::function<void(Tensor&)>& f) {}
  // The tensors a step updates in place (a KV cache), which a recording therefore keeps as its
  // buffers; a subset of for_each_tensor's.
  virtual void for_each_in_place_tensor(const std::function<void(Tensor&)>& f) {}
  // A copy holding the same tensors (shallow); null when not graphable.
  virtual std::unique_ptr<MixerState> clone() const { return nullptr; }
  // After a replay this state (a clone of the recording's state after its step) takes the counters
  // of `now` (the state the replay ran for) moved as the recording's step moved them from `pre`:
  // the tensors are the recording's, the host-side counters the replayed state's own.
  virtual void rebase(const MixerState& now, const MixerState& pre) { position = now.position + (position - pre.position); }
};

class SequenceMixer : public Module {
 public:
  // x [B, T, D] (already normalized by the block) -> [B, T, D]; positions 0..T-1; causal.
  virtual Tensor forward(const Tensor& x) = 0;
  // forward(norm(h')) from the block's residual h (the sum, already settled) and its norm, for a
  // mixer that recomputes the norm and what it cheaply derives from it in the backward instead of
  // storing them (remats_input_norm(); the block asks for this with model.remat_io while training).
  // h' = h + pre->fn(h, pre->params) when the block has a sublayer before the mixer (the Mamba
  // backbone's pre-conv; the mixer recomputes it too, so that h' is stored by no one), else h.
  // Returns h' (the residual the block continues from) and the mixer's output.
  virtual bool remats_input_norm() const { return false; }
  virtual ResidualOutput forward_residual(const Tensor& h, const RMSNorm& norm, const ResidualPrelude* pre = nullptr) {
    const Tensor h1 = pre ? add(h, pre->fn(h, pre->params)) : h;
    return {h1, forward(norm.forward(h1))};
  }
  virtual std::unique_ptr<MixerState> init_state(int64_t batch) = 0;
  // x [B, T, D] continuing after state.position; updates the state. Must equal the matching
  // slice of forward() on the concatenated sequence (tests check this).
  virtual Tensor step(const Tensor& x, MixerState& state) = 0;
  // Whether a prompt's step() may be cut into segments that run as a wavefront over the layers
  // (LanguageModel::set_prefill_segment) at no loss: a later segment's step costs what the same
  // tokens cost in one call (a fused scan resuming from the state), and one layer's step alone
  // leaves most of a GPU idle (one serial walk per head), so layers side by side gain.
  virtual bool prefill_in_segments() const { return false; }
  // step() as a SplitStep (above); by default the whole step at once.
  virtual SplitStep step_begin(const Tensor& x, MixerState& state) { return {{}, {}, nullptr, step(x, state)}; }
  // Forward FLOPs per token (2 per multiply-add) beyond the matmuls with this mixer's own
  // parameters (which the language model counts from the parameter count): e.g. attention's
  // QK^T and PV, averaged over the positions of a causal sequence of length seq_len.
  virtual double extra_flops_per_token(int64_t seq_len) const { return 0.0; }
};

}  // namespace ttt
