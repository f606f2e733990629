// layers/mixer.h — the sequence-mixer interface shared by attention, linear attention and the
// TTT layers. A block calls forward() for whole sequences (training, eval, prefill) and
// init_state()/step() for incremental decoding.
#pragma once

#include <memory>

#include "layers/module.h"
#include "layers/norm.h"

namespace ttt {

struct MixerState {
  virtual ~MixerState() = default;
  int64_t position = 0;  // tokens consumed so far (absolute position of the next token)
};

class SequenceMixer : public Module {
 public:
  // x [B, T, D] (already normalized by the block) -> [B, T, D]; positions 0..T-1; causal.
  virtual Tensor forward(const Tensor& x) = 0;
  // forward(norm(h)) from the block's residual h (the sum, already settled) and its norm, for a
  // mixer that recomputes the norm and what it cheaply derives from it in the backward instead of
  // storing them (remats_input_norm(); the block asks for this with model.remat_io while training).
  virtual bool remats_input_norm() const { return false; }
  virtual Tensor forward_residual(const Tensor& h, const RMSNorm& norm) { return forward(norm.forward(h)); }
  virtual std::unique_ptr<MixerState> init_state(int64_t batch) = 0;
  // x [B, T, D] continuing after state.position; updates the state. Must equal the matching
  // slice of forward() on the concatenated sequence (tests check this).
  virtual Tensor step(const Tensor& x, MixerState& state) = 0;
  // Forward FLOPs per token (2 per multiply-add) beyond the matmuls with this mixer's own
  // parameters (which the language model counts from the parameter count): e.g. attention's
  // QK^T and PV, averaged over the positions of a causal sequence of length seq_len.
  virtual double extra_flops_per_token(int64_t seq_len) const { return 0.0; }
};

}  // namespace ttt
