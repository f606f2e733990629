// layers/language_model.h — the interface the trainer uses: embedding -> blocks -> final norm ->
// LM head, plus incremental decoding (TTT layers in primal form with O(1) state, attention with a
// KV cache). Implemented in layers/language_model.cpp.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "layers/model_config.h"
#include "layers/module.h"

namespace ttt {

class DecodeGraphs;
class E2EModel;

// Per-sequence decoding state of the whole model (one per layer inside).
struct DecodeState {
  DecodeState() = default;
  DecodeState(const DecodeState& o) : position(o.position) {}  // a copy is another state: its own liveness
  DecodeState& operator=(const DecodeState&) = delete;
  virtual ~DecodeState() = default;
  int64_t position = 0;  // tokens consumed so far

  // Decoding through CUDA graphs (layers/decode_graphs.h; MixerState says what the methods mean).
  virtual bool graphable() const { return false; }
  virtual void graph_key(std::vector<int64_t>& key) const {}
  virtual void for_each_tensor(const std::function<void(Tensor&)>& f) {}
  virtual void for_each_in_place_tensor(const std::function<void(Tensor&)>& f) {}
  virtual std::unique_ptr<DecodeState> clone() const { return nullptr; }
  // Makes this state s (shallow): its tensors and counters, its layers' too.
  virtual void assign(const DecodeState& s) {}
  // After a replay of the recording (pre -> post): this state becomes post (shallow), with its
  // own counters and its layers' moved as the recording moved pre's (MixerState::rebase).
  virtual void advance(const DecodeState& post, const DecodeState& pre) {}
  // Expires with this state (not with its clones): how decode graphs notice it is gone.
  std::weak_ptr<int> liveness() const { return alive_; }

 private:
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

class LanguageModel : public Module {
 public:
  explicit LanguageModel(const ModelConfig& cfg);
  const ModelConfig& config() const { return cfg_; }

  // ids [B, T] int64 -> logits [B, T, V] (float32; or bf16 if the model is in bf16).
  Tensor forward(const Tensor& ids);
  // Mean next-token cross-entropy of ids[:, t] -> targets[:, t] over targets != ignore_index.
  // The LM head and the loss are one op (linear_cross_entropy, chunks of rows): no [B·T, V] logits.
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100);
  // Per-token losses [B, T] (no reduction) for evaluation by position.
  Tensor token_losses(const Tensor& ids, const Tensor& targets);

  std::unique_ptr<DecodeState> init_decode(int64_t batch);
  // Consumes ids [B, T] (T >= 1) after the tokens already in `state`; returns logits [B, T, V], or
  // only the last position's [B, 1, V] with last_only (a prompt's prefill: the head and the
  // [B, T, V] logits of the other positions are not computed). TTT-Linear layers run a prompt
  // given to a fresh state through the fused scan (layers/ttt_layer.h) when grad mode is off.
  Tensor decode(const Tensor& ids, DecodeState& state, bool last_only = false);
  // One-token decode calls on a GPU run as CUDA graphs (layers/decode_graphs.h) when every layer's
  // state allows it (the TTT layers with mini-batches); on by default. Off: every call eager.
  void set_decode_graphs(bool on);
  const DecodeGraphs& decode_graphs() const;
  // A prompt whose layers all allow it (SequenceMixer::prefill_in_segments: TTT-Linear's fused
  // scan) may run as a wavefront (Note [Wavefront prefill] in language_model.cpp): cut into
  // segments, layer l on segment s in the same wave as layer l + 1 on segment s − 1, the wave's
  // scans in one launch. tokens > 0: segments of that many tokens, on any device (the CPU runs them
  // in order; the results equal one pass's up to rounding); 0: automatic (on a GPU, four segments
  // for prompts of at least 8,192 tokens at batch × heads < 64); < 0: never. Until this is called,
  // TTT_PREFILL_SEGMENT in the environment decides (a token count, "auto" or "off"); unset: automatic.
  void set_prefill_segment(int64_t tokens);
  // The setting in effect: set_prefill_segment's, else the environment's (< 0 never, 0 automatic).
  int64_t prefill_segment() const;
  // Changes whenever a parameter's data does.
  uint64_t weights_stamp() const;

  // Forward FLOPs per token (matmuls, 2 per multiply-add) for MFU; training ~ 3x this.
  double flops_per_token(int64_t seq_len) const;

  // The TTT-E2E model behind every call when model.arch is "e2e" (layers/e2e_model.h), else null.
  E2EModel* e2e() const;

 private:
  ModelConfig cfg_;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ttt
