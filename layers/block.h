// layers/block.h — the residual block (paper Fig. 9 left; official JAX `Block`, PyTorch `Block`):
//
//   transformer backbone:  h += mixer(seq_norm(h));                      h += mlp(ffn_norm(h))
//   mamba backbone:        h += pre_conv(pre_conv_norm(h));  then the same two residual steps
//
// Each residual add runs fused with the norm that reads the sum next (`Residual`, add_rms_norm):
// forward returns the last sublayer's output still pending, and the next block's first norm, or
// the model's final norm, adds it. The values are those of the separate adds and norms.
//
// With cfg.remat_io, a training forward (grad mode on) stores less for the backward. A mixer that
// offers it (remats_input_norm: the TTT layers) gets the residual h, its norm and the pre-conv
// sublayer as a function (ResidualPrelude), and recomputes h + conv(norm(h)), its norm and its own
// input side in one checkpoint region that keeps only h (ttt_layer.h Note [Remat]). With another
// mixer the pre-conv alone is such a region. The values are the same; the residual adds are then
// plain adds instead of add_rms_norm for those sublayers.
//
// All norms are RMSNorm (eps cfg.norm_eps), mlp is SwiGLU(d_model, d_ff) (none when d_ff = 0: the
// Mamba papers' blocks are `h += mixer(norm(h))` only), pre_conv a depthwise
// causal conv of width cfg.conv_width with bias and no activation. The Mamba backbone's other
// parts (shared Q/K projection + conv_q/conv_k, output gate) live inside the TTT mixer. With
// backbone = mamba, attention and linear attention get the pre-conv too (the paper only pairs
// the Mamba backbone with TTT layers; we keep the block uniform so "(M)" means the same block
// for every mixer).
#pragma once

#include <memory>

#include "layers/causal_conv.h"
#include "layers/mixer.h"
#include "layers/model_config.h"
#include "layers/norm.h"
#include "layers/swiglu.h"

namespace ttt {

// The residual stream between sublayers and blocks: its value is h + pending, where pending (if
// defined) is the last sublayer's output, not yet added so that the add runs fused with the norm
// that reads the sum next (add_rms_norm: one kernel instead of two forward and three backward).
struct Residual {
  explicit Residual(Tensor h0) : h(std::move(h0)) {}
  Tensor h, pending;
  // norm(h + pending); afterwards h is the sum and nothing is pending.
  Tensor normalized(const RMSNorm& norm);
  // h + pending (a plain add: the sublayer that reads it normalizes it itself); afterwards h is
  // the sum and nothing is pending.
  Tensor settled();
};

// Decoding state of one block: the pre-conv's last k−1 inputs (mamba) and the mixer's state.
struct BlockState {
  Tensor conv_tail;
  std::unique_ptr<MixerState> mixer;
};

class Block : public Module {
 public:
  Block(const ModelConfig& cfg, Generator& g);
  // [B, T, D] -> [B, T, D]; the last sublayer's output is left pending for the next norm.
  Residual forward(Residual r);
  BlockState init_state(int64_t batch);
  Residual step(Residual r, BlockState& state);  // continues after the tokens in state
  // step() in two halves around the mixer's scan (SplitStep, layers/mixer.h): begin() settles r up
  // to the mixer's input; end() continues from the scan's outputs (ignored when it has none).
  SplitStep step_begin(Residual& r, BlockState& state);
  Residual step_end(Residual r, SplitStep& split, const tensor_list& scan_outputs);
  double extra_flops_per_token(int64_t seq_len) const { return mixer->extra_flops_per_token(seq_len); }

  std::shared_ptr<RMSNorm> pre_conv_norm;     // mamba only
  std::shared_ptr<CausalConv1d> pre_conv;     // mamba only
  std::shared_ptr<RMSNorm> seq_norm;
  std::shared_ptr<SequenceMixer> mixer;
  std::shared_ptr<RMSNorm> ffn_norm;          // null when cfg.d_ff = 0
  std::shared_ptr<SwiGLU> mlp;                // null when cfg.d_ff = 0

 private:
  Residual after_mixer(Residual r);  // the MLP sublayer of a step
  ResidualPrelude pre_conv_prelude() const;
  Tensor pre_conv_remat(const Tensor& h) const;
  bool remat_io_;
};

}  // namespace ttt
