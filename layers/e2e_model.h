// layers/e2e_model.h — TTT-E2E, end-to-end test-time training for long context (Tandon, Dalal,
// Li, … Sun, arXiv 2512.23675; official JAX code test-time-training/e2e, whose
// MetaModel.loss_for_sequence this follows).
//
// A sliding-window Transformer (layers/e2e_block.h) of L blocks; the last S = model.e2e.suffix_blocks
// (L/4 by default) carry a second MLP, MLP', whose weights W are fast weights:
//   1. the prefix (first L − S blocks) runs once over the whole sequence: H = prefix(embed(x));
//   2. the sequence is cut into chunks of b = model.e2e.chunk tokens; chunk i runs the suffix and
//      the head with W_{i−1} (its attention sees the cached keys/values of the previous w − 1
//      tokens), records its per-token losses, then takes one clipped SGD step on its mean loss:
//      W_i = W_{i−1} − η clip(∇_W ℓ_i) (layers/e2e_inner.h); W_0 = the MLP' parameters;
//   3. the outer loss is the mean over all tokens of those losses, and every parameter, W_0
//      included, gets its exact gradient through the whole scan of inner steps (second order).
// model.e2e.remat recomputes each chunk in the backward (only W_i, the chunk's K/V and the
// prefix output stay alive); model.e2e.remat_prefix recomputes the prefix too.
//
// Switches: chunk = −1 (b = T: no inner step, the model is a plain SWA Transformer with an extra
// MLP'), suffix_blocks = 0 (no MLP': the SWA / full-attention baselines; window 0 = full
// attention), suffix_blocks = n_layers (all layers), fast_heads > 1 (multi-head MLP'),
// train_mode = naive (training loss at W_0, no inner loop while training; the inner loop still
// runs in evaluation: dynamic evaluation), inner_lr (η, ramped from inner_lr_init by the trainer).
//
// Evaluation (token_losses, forward) runs the same inner loop; decoding takes one inner step each
// time a chunk of b tokens is complete (layers/e2e_decode.cpp).
#pragma once

#include <memory>
#include <vector>

#include "layers/e2e_block.h"
#include "layers/e2e_inner.h"
#include "layers/embedding.h"
#include "layers/language_model.h"

namespace ttt {

class E2EModel {
 public:
  // Registers embed, blocks.<i>, final_norm (and lm_head when untied) on `owner`, drawing weights
  // from Generator(cfg.seed) in that order; the tensors stay owned by `owner`.
  E2EModel(const ModelConfig& cfg, Module& owner);

  // Logits [B, T, V]: chunk i predicted with W_{i−1} (the targets of the inner steps are ids
  // shifted by one; the last chunk takes no step).
  Tensor forward(const Tensor& ids);
  // Per-token losses [B, T] of ids -> targets with the inner loop (0 where ignored).
  Tensor token_losses(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100);
  // The outer (training) loss: mean of token_losses over the scored tokens; with train_mode naive
  // and `training`, the plain loss at W_0 instead.
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index, bool training);
  // Logits of every block at W_0 over the whole sequence (no inner loop): the model as SWA sees it.
  Tensor static_logits(const Tensor& ids);

  std::unique_ptr<DecodeState> init_decode(int64_t batch);
  Tensor decode(const Tensor& ids, DecodeState& state);

  // Forward FLOPs per token of the model at fixed weights (2 per multiply-add of every matmul
  // parameter plus attention's QKᵀ and PV over the window); the inner loop is not counted.
  double flops_per_token(int64_t seq_len) const;

  // η of the inner steps (the trainer ramps it over the outer warmup; default model.e2e.inner_lr).
  void set_inner_lr(double lr) { inner_lr_ = lr; }
  double inner_lr() const { return inner_lr_; }
  int64_t suffix_blocks() const { return n_suffix_; }

 private:
  struct Run {
    Tensor losses, logits;
  };
  Run run(const Tensor& ids, const Tensor& targets, int64_t ignore_index, bool want_logits);
  Tensor prefix_hidden(const Tensor& ids) const;
  SuffixWeights suffix_weights() const;
  std::vector<FastWeights> initial_fast() const;
  Tensor head_weight() const;
  int64_t n_matmul_params() const;

  ModelConfig cfg_;
  E2EBlockShape shape_;
  int64_t n_suffix_ = 0, n_prefix_ = 0;
  double inner_lr_ = 1.0;
  std::shared_ptr<Embedding> embed_;
  std::vector<std::shared_ptr<E2EBlock>> blocks_;
  std::shared_ptr<RMSNorm> final_norm_;
  std::shared_ptr<Linear> lm_head_;  // null when tied
  Module* owner_;
};

}  // namespace ttt
