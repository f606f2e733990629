// layers/ttt_layer.h — the TTT sequence mixers (TTT-Linear, TTT-MLP; paper §2, Fig. 9).
//
//   x [B, T, D] (already normed by the block)
//   Mamba backbone:        xqk = x Wq;  XQ = conv_q(xqk), XK = conv_k(xqk)  (causal, width 4);  XV = x Wv
//   Transformer backbone:  XQ = x Wq, XK = x Wk, XV = x Wv
//   split heads (head_dim f = D / nh), RoPE on XQ, XK with positions t mod K (interleaved pairs)
//   lr_j = base_lr · mult · σ(θ_lr,h · x_j + b_h) / f;  tok_i = max(0, 1/(i+1) + θ_tok[i])
//   inner loop over mini-batches of K tokens (ttt_scan.h, ttt_inner.h), per head: XQ + LN(Z̄)
//   Z = post_norm(concat heads) (LayerNorm(D); none with model.ttt.post_norm = false)
//   Mamba: Z = gelu_tanh(x Wg) ⊙ Z;  out = Z Wo
// following ttt-lm-pytorch ttt.py TTTBase.forward / get_eta and ttt-lm-jax ttt_layer.py.
// The inner loop runs in float32 (float64 when the layer is float64) even
// for bf16 activations, as the official kernels keep W in fp32.
//
// Implementations (model.ttt.impl): "fused" (the whole scan as one op over the kernels of
// kernels/ttt_linear_scan.h or kernels/ttt_mlp_scan.h, TTT-Linear / TTT-MLP with mini_batch > 0),
// "dual" (ttt_dual.h, the composite matmul form, the
// fused ops' oracle and their create_graph twin), "primal" (ttt_primal.h, token by token) and
// "generic" (ttt_generic.h, inner gradient by autograd; any InnerModel); "auto" (the default) is
// fused where the device has a kernel for the call, else dual. They give the same outputs and
// gradients (tests/test_ttt_forms.cpp, tests/test_ttt_linear_scan.cpp, tests/test_ttt_mlp_scan.cpp).
// step() (decoding) in the composite forms: primal for tokens inside a mini-batch, dual for whole
// ones. Without grad mode a TTT-Linear step() runs the fused scan where forward() would, for any
// number of tokens: from W0 or from the state's W, b per sequence, scanning the current
// mini-batch's earlier tokens (kept in the state) again with the new ones, and takes the next
// state (W, b, the partial mini-batch's inputs and accumulators) from the scan's outputs. TTT-MLP
// decodes in the composite forms (its fused scan takes no per-sequence initial state yet).
//
// Note [Remat]: with model.remat_io (off in ModelConfig, set by the TTT configs: it trades speed
// for memory) a training forward keeps for the backward only the block's residual h (before the
// Mamba backbone's pre-conv), the scan's inputs (bf16 under autocast with model.ttt.bf16_io), its
// output and the gate x Wg: the input side (the pre-conv h' = h + conv(norm(h)), the norm of h',
// the projections with the gate's, the convs, RoPE, the lr gate) and the output side (the gated
// post-norm and o_proj) are two checkpoint regions recomputed in the backward (forward_residual;
// block.h). In float32 that is 5 activations of [B, T, d_model] per block fewer
// (tests/test_remat_io.cpp counts them): neither h' nor the norms' outputs nor o_proj's input are
// stored, for the recomputed projections' GEMMs (q, v, g, o) and the elementwise passes around them.
#pragma once

#include <memory>
#include <string>

#include "layers/mixer.h"
#include "layers/model_config.h"
#include "layers/ttt_scan.h"

namespace ttt {

class Linear;
class LayerNorm;
class CausalConv1d;
struct TTTState;

class TTTMixer : public SequenceMixer {
 public:
  // cfg.mixer "ttt_linear" | "ttt_mlp" picks the inner model unless `inner` is given (a custom
  // InnerModel, e.g. a deeper MLP: then only impl = generic applies). Draws weights from g.
  TTTMixer(const ModelConfig& cfg, Generator& g, std::shared_ptr<InnerModel> inner = nullptr);

  Tensor forward(const Tensor& x) override;
  bool remats_input_norm() const override { return true; }
  ResidualOutput forward_residual(const Tensor& h, const RMSNorm& norm, const ResidualPrelude* pre = nullptr) override;
  std::unique_ptr<MixerState> init_state(int64_t batch) override;
  Tensor step(const Tensor& x, MixerState& state) override;
  // TTT-Linear with the fused scan (decode_scan resumes it from a later segment's state).
  bool prefill_in_segments() const override;
  SplitStep step_begin(const Tensor& x, MixerState& state) override;
  double extra_flops_per_token(int64_t seq_len) const override;

  // The inner learning rate is base_lr · multiplier. TTT-MLP warms base_lr up over the outer
  // warmup (paper App. C): the trainer sets the multiplier every step from
  // ttt_base_lr_multiplier() below. Default 1.
  void set_base_lr_multiplier(double m) { lr_mult_ = m; }
  double base_lr_multiplier() const { return lr_mult_; }
  double base_lr() const { return base_lr_; }
  void set_impl(const std::string& impl);  // dual | primal | generic
  void set_checkpoint_group(int64_t g);

  // The pieces, for tests and tools: the per-head inner-loop inputs of a whole sequence from
  // position 0, and the inner loop's outputs [B, nh, T, f] (before post-norm, gate and Wo).
  ScanInputs inner_inputs(const Tensor& x);
  Tensor inner_outputs(const ScanInputs& in);
  const InnerModel& inner() const { return *inner_; }
  int64_t heads() const { return nh_; }
  int64_t head_dim() const { return f_; }

 private:
  // The output gate's weights and output dtype, for a caller that has the input side make the gate
  // with its other products of x (forward_residual).
  struct GateProduct {
    Tensor w, b;
    bool low;
  };
  // x's products that the input side reads (ttt_input.cpp): q is the shared Q/K on the Mamba
  // backbone; k is undefined there; gate and lr_logits where asked for / configured.
  struct InputProducts {
    Tensor q, k, v, gate, lr_logits;
  };
  ScanInputs prepare(const Tensor& x, int64_t pos0, Tensor* q_tail, Tensor* k_tail);
  ScanInputs prepare(const Tensor& x, int64_t pos0, Tensor* q_tail, Tensor* k_tail, const tensor_list& params,
                     bool low, const GateProduct* gate = nullptr);
  InputProducts input_products(const Tensor& x, const tensor_list& params, bool low, const GateProduct* gate);
  // Whether a forward on x keeps the scan's inputs and output in bf16 (Note [bf16 activations]).
  bool low_precision_io(const Tensor& x) const;
  tensor_list input_params() const;
  tensor_list output_params() const;
  bool low_gate(DType x_dtype, const Tensor& heads_out) const;
  Tensor gate_output(const Tensor& gate, const Tensor& heads_out, DType x_dtype, const tensor_list& params) const;
  Tensor token_scale(int64_t first, int64_t len, DType dt) const;
  Tensor make_token_scale(int64_t first, int64_t len, DType dt) const;
  InnerNorm norm(DType dt) const;
  tensor_list initial_state(int64_t batch, DType dt) const;
  Tensor run(ScanState& st, const ScanInputs& in, int64_t pos0, bool decode);
  Tensor finish(const Tensor& x, const Tensor& heads_out, const Tensor& gate = Tensor());
  tensor_list prompt_projections(const Tensor& x);
  tensor_list fused_inputs(const ScanInputs& in) const;
  std::string fused_unsupported(const ScanInputs& in) const;
  bool use_fused(const ScanInputs& in) const;
  tensor_list fused_scan(const tensor_list& x, int64_t checkpoint_group);
  Tensor fused_outputs(const ScanInputs& in);
  Tensor prefill_fused(const ScanInputs& in, ScanState& st, bool from_w0);
  tensor_list prefill_inputs(const ScanInputs& in, const ScanState& st, bool from_w0) const;
  Tensor prefill_commit(const ScanInputs& in, ScanState& st, const tensor_list& scan_outputs);
  bool fused_chunk(const ScanInputs& in) const;
  TTTState& state_of(MixerState& state) const;
  ScanInputs step_inputs(const Tensor& x, TTTState& st);
  Tensor decode_scan(ScanState& st, const ScanInputs& in, int64_t pos0);
  bool decode_step_applies(const ScanInputs& in) const;
  Tensor decode_step(ScanState& st, const ScanInputs& in);
  static ScanInputs pending_buffers(const ScanInputs& p, int64_t K);
  DType inner_dtype(DType x) const;

  TTTConfig c_;
  int64_t width_, nh_, f_, max_seq_len_ = 0;
  bool mamba_;
  double rope_theta_;
  double base_lr_ = 1.0, lr_mult_ = 1.0;
  std::string impl_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_, g_proj_;
  std::shared_ptr<CausalConv1d> conv_q_, conv_k_;
  struct ConcatWeights {
    Tensor w, b;
    uint64_t stamp = 0;
  } prompt_proj_;  // prompt_projections' [Wqk; Wv; Wg] (bf16) and biases, for the weights of `stamp`
  std::shared_ptr<LayerNorm> post_norm_;
  std::shared_ptr<InnerModel> inner_;
  Tensor lr_weight_, lr_bias_;  // [nh, D], [nh]        (learnable_lr)
  Tensor token_idx_;            // [K]                  (learnable_token_idx)
  Tensor norm_w_, norm_b_;      // [nh, f] each         (ln_residual)
  // token_scale() results made with grad mode off, while θ_tok (storage, version) is unchanged.
  struct TokenScale {
    int64_t first, len;
    DType dtype;
    uint32_t version;
    const void* storage;
    Tensor value;
  };
  mutable std::vector<TokenScale> token_scales_;
};

// The decoding state of one TTT layer: the inner loop's state and the conv tails (Mamba backbone),
// the official TTTCache per layer (ttt-lm-pytorch ttt.py).
struct TTTState : MixerState {
  ScanState scan;
  Tensor q_tail, k_tail;
  int64_t mini_batch = 0;  // K of the layer (0: none, a never-ending mini-batch)

  // A step depends on the position only through t mod K (RoPE inside the mini-batch, the
  // mini-batch's index) and on whether the first mini-batch is still open (it scans from W0, the
  // layer's parameters): with mini-batches, 2K keys cover every step.
  bool graphable() const override { return mini_batch > 0; }
  void graph_key(std::vector<int64_t>& key) const override;
  void for_each_tensor(const std::function<void(Tensor&)>& f) override;
  std::unique_ptr<MixerState> clone() const override { return std::make_unique<TTTState>(*this); }
};

// cfg.mixer is "ttt_linear" or "ttt_mlp"; cfg.backbone selects the Mamba-backbone extras inside the
// layer (shared Q/K projection + causal convs, output gate). Draws its initial weights from g.
std::shared_ptr<SequenceMixer> make_ttt_mixer(const ModelConfig& cfg, Generator& g);

// The resolved eta_base: ttt.base_lr, or 1.0 for ttt_linear / 0.1 for ttt_mlp when -1 (App. C).
double ttt_base_lr(const ModelConfig& cfg);
// The multiplier of the inner learning rate at outer step `step` (1-based) of a run with
// `warmup_steps` warmup steps: (init + min(1, (step−1)/warmup) · (peak − init)) / peak, with
// init = ttt.base_lr_init (-1: 0.01 for ttt_mlp as in the paper, no warmup for ttt_linear) —
// ttt-lm-jax train.py make_get_ttt_lr_mult (computed in double here, bf16 there).
double ttt_base_lr_multiplier(const ModelConfig& cfg, int64_t step, int64_t warmup_steps);

}  // namespace ttt
