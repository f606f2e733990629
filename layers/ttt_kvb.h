// layers/ttt_kvb.h — TTT-KVB, baseline 6 of the E2E paper (Tandon et al. 2025, §2.4 and §3: "TTT-KVB
// + SWA", run with the LaCT code of Zhang et al. 2025, "Test-Time Training Done Right"): a layer
// whose hidden state is a fast-weight SwiGLU MLP per head, trained at test time with the
// key-value-binding loss and read with the query, next to sliding-window attention.
//
//   per head (H = model.kvb.n_heads, head dim f = d_model / H, hidden m = hidden_mult · f):
//     q = l2norm(silu(x θ_Q)),  k = l2norm(silu(x θ_K)),  v = x θ_V          (LaCT's q/k maps)
//     g(x; W) = W1 (silu(W0 x) ⊙ (W2 x))                                    W0, W2 [m, f], W1 [f, m]
//     η_t = softplus(x_t θ_lr + b_lr),  b_lr = softplus⁻¹(model.kvb.base_lr) at init
//   tokens in chunks of b = model.kvb.mini_batch; chunk i is read with the weights of the chunks
//   before it, then trains them ("apply, then update", LaCT):
//     o_t = g(q_t; W_{i−1})                                                  t ∈ chunk i
//     W_i = W_{i−1} − Σ_{t∈i} η_t ∇_W ½‖g(k_t; W_{i−1}) − v_t‖²             (the E2E paper's KVB loss)
//     weight_norm: every row of W_i is rescaled to the norm of that row of W_0 (LaCT)
//   W_0 = (w0, w1, w2) are outer-loop parameters (meta-learned by the ordinary gradient).
//   out = o_proj(silu(x θ_g) ⊙ RMSNorm_f(o)) + SWA(x)                      SWA when model.window > 0
//
// The inner gradient is written out (the chunk's forward through g, then its backward by hand:
// dW1 = Σ η e aᵀ, dW0 = Σ (W1ᵀ η e ⊙ W2 k ⊙ silu′(W0 k)) kᵀ, dW2 likewise), all differentiable ops, so
// the outer gradient flows through every update (tests check it against autograd's gradient of
// the inner loss and against finite differences).
//
// What we chose where the papers leave it open (layers/README.md): the SWA branch is the ordinary
// attention mixer (own q/k/v/o projections, RoPE, window model.window; LaCT shares q/k/v between
// the branches); one learning rate per head and token (LaCT has one per fast-weight matrix); no
// momentum and no Muon (LaCT's options); the loss is the squared error the E2E paper writes
// (LaCT's default is the negative dot product ⟨g(k), v⟩).
//
// step() decodes from an O(1) state: the fast weights, the keys/values/η of the current unfinished
// chunk (< b tokens) and the attention's window cache; it equals forward() (tests).
#pragma once

#include <memory>

#include "layers/mixer.h"
#include "layers/model_config.h"

namespace ttt {

class Linear;
class RMSNorm;
class CausalSelfAttention;

// The fast weights of a batch: w0, w2 [B, H, m, f], w1 [B, H, f, m] (or the [H, …] parameters).
struct FastWeights {
  Tensor w0, w1, w2;
};

class TTTKVBMixer : public SequenceMixer {
 public:
  TTTKVBMixer(const ModelConfig& cfg, Generator& g);
  Tensor forward(const Tensor& x) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  // The pieces (public for tests): g(x; W) for x [B, H, L, f]; one update of W on a chunk of
  // keys k, values v [B, H, L, f] and learning rates eta [B, H, L].
  Tensor apply(const FastWeights& W, const Tensor& x) const;
  FastWeights update(const FastWeights& W, const Tensor& k, const Tensor& v, const Tensor& eta) const;
  // The learned initial weights W_0 as a FastWeights of [H, …] tensors.
  FastWeights initial() const { return {w0, w1, w2}; }

  std::shared_ptr<Linear> q_proj, k_proj, v_proj, lr_proj, gate_proj, o_proj;
  std::shared_ptr<RMSNorm> ttt_norm;
  std::shared_ptr<CausalSelfAttention> attn;  // null when model.window = 0
  Tensor w0, w1, w2;

 private:
  struct Views {
    Tensor q, k, v, eta;  // [B, H, T, f] and [B, H, T]
  };
  Views views(const Tensor& x) const;
  Tensor output(const Tensor& x, const Tensor& o) const;  // o [B, H, T, f] -> [B, T, D] (without SWA)
  Tensor rescale_rows(const Tensor& w, const Tensor& w_init) const;
  int64_t d_model_, heads_, f_, hidden_, mini_batch_;
  bool weight_norm_;
};

}  // namespace ttt
