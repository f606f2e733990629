// layers/attention.h — multi-head causal self-attention with RoPE (the Transformer++ mixer),
// full or sliding-window, with a KV cache for decoding.
//
//   q, k, v = x Wqᵀ, x Wkᵀ, x Wvᵀ split into H heads of d_h = D/H;  q, k rotated by RoPE at their
//   absolute positions;  out = softmax(q kᵀ / √d_h + M) v  merged back to [B, T, D], then Wo.
//
// Mask M: query at position i sees key at position j iff j <= i and, with window w > 0, i − j < w
// (the query sees itself and the w − 1 tokens before it). M is 0 where allowed, −inf elsewhere.
//
// The attention itself is the fused op scaled_dot_product_attention (autograd/ops/attention.cpp:
// FlashAttention-style kernels, O(T) memory, tested against the composite matmul + mask + softmax).
// Projections bias-free, init N(0, init_std) as in the official Llama-style baseline.
//
// model.bf16_activations (training and forward under bf16 autocast): the projections write q, k, v
// as bf16, RoPE rotates them in bf16, the attention kernels read them as they are and write a bf16
// output, which Wo multiplies as it is: no casts, half the bytes between the ops (the kernels read
// bf16 either way). Decoding keeps float32 (its cache has the weights' dtype).
//
// Decoding: the state keeps the RoPE-rotated keys and the values of past tokens in buffers that
// grow geometrically (with a window, only the last w − 1 tokens are kept). step() is for
// inference: it writes the cache in place, so no gradient flows into past keys/values. A step of
// one token is one call of attention_decode_step after the projections (RoPE, the append and the
// attention split over the cache, reading the position from device memory), so a CUDA graph of
// the model's step replays at every position (layers/decode_graphs.h).
#pragma once

#include <memory>

#include "layers/linear.h"
#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

struct KVCache;  // the decoding state (attention.cpp)

class CausalSelfAttention : public SequenceMixer {
 public:
  CausalSelfAttention(const ModelConfig& cfg, Generator& g);
  Tensor forward(const Tensor& x) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  std::shared_ptr<Linear> wq, wk, wv, wo;

 private:
  // x [B, T, D] at absolute positions start.. -> q, k, v [B, H, T, d_h] (q, k rotated); low: bf16
  // under autocast (model.bf16_activations).
  void project(const Tensor& x, int64_t start, Tensor& q, Tensor& k, Tensor& v, bool low) const;
  // Attention of q (positions q_start..) over k, v (positions k_start..), merged to [B, Tq, D]
  // and projected by Wo.
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, int64_t q_start, int64_t k_start) const;
  // Grows (or, with a window, compacts) the cache so that T more entries fit.
  void make_room(KVCache& st, int64_t T) const;
  // One token through the fused decode call (KVCache::fused).
  Tensor fused_step(const Tensor& x, KVCache& st);

  int64_t d_model_, n_heads_, head_dim_, window_;
  double rope_theta_;
  bool bf16_activations_;
};

// The additive mask [Tq, Tk] (0 allowed, −inf masked) for queries at q_start.. and keys at
// k_start.., causal with an optional window (0 = none): the definition the fused op implements,
// kept for tests and for composite references.
Tensor attention_mask(int64_t Tq, int64_t Tk, int64_t q_start, int64_t k_start, int64_t window, DType dtype,
                      Device device);

}  // namespace ttt
