// layers/e2e_inner.h — one chunk of the TTT-E2E inner loop (official test-time-training/e2e
// ttt/model/transformer.py MetaModel.inner_loop_step; paper §2, arXiv 2512.23675).
//
// For chunk i (tokens [s, s + n) of every sequence) with the fast weights W = W_{i−1}:
//   z = suffix(H_i; W, past K/V) → final norm → head,  ℓ_t = CE(z_t, target_t)   (t in the chunk)
//   ℓ_i(b) = mean over the chunk's scored tokens of sequence b             (the chunk's loss, recorded
//                                                                            before its own update)
//   g(b) = ∂ℓ_i(b)/∂W(b)    through the suffix blocks and the head only: the prefix output H_i and
//                            the past keys/values are inputs (they do not depend on W_{i−1})
//   ‖g(b)‖ = global norm over all fast tensors of sequence b;  c(b) = clip / max(‖g(b)‖, clip)
//   W_i(b) = W(b) − η c(b) g(b)                                          (plain SGD, one step)
// Each sequence has its own fast weights ([B, h, ...]; the official code vmaps the loop over the
// batch), so the gradient is taken of Σ_b ℓ_i(b). c(b) = min(1, clip/‖g‖) as optax's
// clip_by_global_norm; clip = 0 turns it off.
//
// Second order (Note [Two branches]): when the outer loop records (grad mode on and an input
// requires grad) g comes from grad(create_graph = true), so W_i stays a differentiable function of
// W, H_i, the past K/V and every suffix weight — the outer gradient is exact through the update,
// the clip included. Otherwise (evaluation, decoding, the untaped first pass of a checkpoint) the
// inner gradient is taken on detached copies, and only values come out.
//
// e2e_chunk_remat runs the same step as one autograd/checkpoint node: the forward keeps only its
// inputs (W_{i−1}, H_i, the past K/V pieces, the suffix weights) and its outputs (W_i, the losses,
// this chunk's K/V); the outer backward recomputes the chunk, second-order graph included.
#pragma once

#include <vector>

#include "layers/e2e_block.h"

namespace ttt {

// Everything of the suffix and the head a chunk reads.
struct SuffixWeights {
  std::vector<E2EBlockWeights> blocks;
  Tensor final_norm, head;  // head: [V, D] (the tied embedding, or the untied LM head)
  tensor_list list() const;
  SuffixWeights with(const tensor_list& xs, size_t& at) const;
};

struct ChunkSpec {
  E2EBlockShape shape;
  double inner_lr = 1.0, inner_clip = 1.0;
  int64_t start = 0;           // absolute position of the chunk's first token
  int64_t ignore_index = -100; // targets scored 0 (their weight must be 0 too)
  bool update = true;          // take the inner step (the last chunk of a sequence does not need it)
  bool want_logits = false;    // also return the logits
  bool second_order_at_autocast = false;  // model.e2e.second_order = autocast (autograd/autocast.h AutocastCreateGraph)
  explicit ChunkSpec(const E2EBlockShape& s) : shape(s) {}
};

// What flows from chunk to chunk.
struct ChunkCarry {
  std::vector<FastWeights> W;             // per suffix block: [B, h, ...], or the shared W0 [h, ...]
  std::vector<std::vector<KV>> past;      // per suffix block: K/V pieces of the preceding tokens, oldest first
};

struct ChunkResult {
  std::vector<FastWeights> W;  // after the step (W unchanged when !update)
  Tensor losses;               // [B, n] per-token losses (0 where the target is ignored)
  Tensor logits;               // [B, n, V] when asked
  std::vector<KV> own;         // this chunk's keys and values, per suffix block
};

// h [B, n, D]: the prefix output of the chunk. targets int64 [B, n]. weights [B, n]: each
// token's weight in its sequence's chunk loss (1/scored tokens, 0 where ignored), h's dtype.
ChunkResult e2e_chunk(const ChunkSpec& spec, const SuffixWeights& P, const ChunkCarry& carry, const Tensor& h,
                      const Tensor& targets, const Tensor& weights);
// The same through autograd/checkpoint (recomputed in the outer backward).
ChunkResult e2e_chunk_remat(const ChunkSpec& spec, const SuffixWeights& P, const ChunkCarry& carry, const Tensor& h,
                            const Tensor& targets, const Tensor& weights);

// The suffix on h at absolute position start.. with fast weights W and past K/V: logits [B, n, V].
// `own` (optional) receives each suffix block's keys and values.
Tensor e2e_suffix_logits(const E2EBlockShape& s, const SuffixWeights& P, const std::vector<FastWeights>& W,
                         const std::vector<KV>& past, const Tensor& h, int64_t start, std::vector<KV>* own);
// The pieces of past keys/values concatenated, cut to the last window − 1 tokens (all for window 0).
KV e2e_window_of(const std::vector<KV>& pieces, int64_t window);

}  // namespace ttt
