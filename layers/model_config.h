// layers/model_config.h — the model's hyper-parameters as a plain struct. layers/ knows nothing
// of YAML: trainer/ maps the `model:` section of a config file onto this struct (same key names).
#pragma once

#include <cstdint>
#include <string>

#include "layers/baseline_config.h"

namespace ttt {

// TTT layer options (paper §2.4–2.7, Table 1; official code: ttt-lm-pytorch ttt.py, ttt-lm-jax).
// Every switch of Table 1 is here, so the ablation ladder is a sweep of `--set model.ttt.X=...`.
struct TTTConfig {
  int64_t mini_batch = 16;        // b; -1 = the whole sequence (batch GD, Theorem 1)
  double base_lr = -1;            // eta_base; -1 = 1.0 for linear, 0.1 for mlp (paper App. C)
  double base_lr_init = -1;       // eta_base warms up from this over the outer warmup; -1 = 0.01
                                  // for ttt_mlp (paper App. C), none for ttt_linear
  bool ln_residual = true;        // f(x) = x + LN(f_res(x)); false: f(x) = f_res(x)
  bool learnable_w0 = true;       // W0 trained by the outer loop; false: W0 = 0, not trained
  bool learnable_lr = true;       // eta(x) = base * sigmoid(theta_lr . x + b); false: eta = base
  bool learnable_token_idx = true;// the learnable offset on 1/(i+1) inside a mini-batch (official)
  bool token_idx_mean = true;     // token i of a mini-batch averages its gradients, scale 1/(i+1)
                                  // (official); false: plain sum (paper Eq. 5, Theorem 1)
  bool rope = true;               // RoPE on XQ/XK with positions t mod b (official)
  bool inner_bias = true;         // f_res has biases (official b1, b2); false: f_res(x) = xW (Theorem 1)
  int64_t mlp_expansion = 4;      // TTT-MLP hidden = expansion * head_dim
  std::string impl = "auto";      // auto | fused | dual | primal | generic (same outputs, see tests)
  bool bf16_io = true;            // under bf16 autocast (fused scan, TTT-Linear / TTT-MLP): the projections,
                                  // convs and RoPE write XQ, XK, XV as bf16, the scan reads them and
                                  // writes its output as bf16, the gate side stays bf16 up to o_proj
                                  // (Note [bf16 activations] in layers/ttt_layer.cpp): less memory
  int64_t checkpoint_group = 16;   // keep W every G mini-batches, recompute the rest in backward; 0 = off
  int64_t mlp_cluster = 0;        // fused TTT-MLP on a GPU, bf16: blocks of a cluster sharing a head (1, 2, 4;
                                  // 0 = auto: 2 where batch x heads x 2 fits the SMs, else 1)
  bool mlp_split_walk = false;    // fused TTT-MLP on a GPU: the split backward (test paths beside a chain)
  double ln_eps = 1e-6;
  bool post_norm = true;          // LayerNorm(d_model) on the inner loop's output (official); false:
                                  // none, so with the Theorem-1 switches the mixer is exactly
                                  // linear attention (Table 1 "TTT equivalence")
};

// Linear attention options (layers/linear_attention.h). The defaults are the form of Theorem 1
// (Table 1 "linear attn. improved"); feature_map = elu_plus_one with normalize = true is
// Katharopoulos et al. (2020) (Table 1 row 1).
struct LinearAttentionConfig {
  std::string feature_map = "identity";  // identity | elu_plus_one: phi applied to q and k
  bool normalize = false;                // divide by sum_s phi(k_s) . phi(q_t) (+ eps)
  double eps = 1e-6;                     // added to that denominator
};

// TTT-E2E (Tandon et al. 2025, arXiv 2512.23675; official JAX code test-time-training/e2e): a
// sliding-window Transformer whose last blocks carry a second MLP, MLP', whose weights are trained
// on the context's own next-token loss while reading it, their initial values meta-learned
// (layers/e2e_model.h). Used when ModelConfig::arch is "e2e".
struct E2EConfig {
  int64_t suffix_blocks = -1;       // blocks with the fast MLP' (the last ones); -1 = n_layers / 4;
                                    // 0 = none: the plain SWA / full-attention baseline of the paper
  int64_t chunk = 1024;             // b: tokens per inner step; -1 = the whole sequence (no update)
  double inner_lr = 1.0;            // eta of the inner SGD step (not learned)
  double inner_lr_init = 0.1;       // eta ramps linearly from this to inner_lr over the outer warmup
  double inner_clip = 1.0;          // global-norm clip of the inner gradient (all fast tensors); 0 = off
  std::string train_mode = "meta";  // meta: outer loss after the inner steps, second-order gradient;
                                    // naive: outer loss at W0 (dynamic evaluation at test time only)
  std::string second_order = "autocast";  // under bf16 autocast, the products of the inner gradient's
                                    // differentiable backward: float32 (exact, on the float32 operands,
                                    // kept for it) or autocast (bf16 operands, float32 accumulation,
                                    // as JAX differentiates a bf16 product; nothing extra kept)
  int64_t fast_heads = 1;           // MLP' as this many independent heads (block-diagonal); 1 = full MLP
  bool remat = true;                // recompute each chunk in the outer backward (keep W and K/V only)
  bool remat_prefix = true;         // recompute the prefix blocks in the outer backward
  bool qk_norm = true;              // per-head RMSNorm on q and k
  bool post_norm = true;            // RMSNorm on each sublayer's output as well as its input
};

struct ModelConfig {
  std::string arch = "standard";    // standard: layers/block.h blocks; e2e: TTT-E2E (E2EConfig)
  int64_t vocab_size = 32000;
  int64_t d_model = 768;
  int64_t n_layers = 12;
  int64_t n_heads = 12;
  int64_t d_ff = 2048;              // SwiGLU intermediate size; 0 = blocks without MLP (Mamba LMs)
  std::string mixer = "ttt_linear"; // attention | ttt_linear | ttt_mlp | linear_attention | mamba |
                                    // mamba2 | gated_deltanet | ttt_kvb
  std::string pattern;              // per-block mixers, e.g. "swa,swa,swa,swa,swa,attention" (baseline_config.h)
  std::string backbone = "mamba";   // transformer | mamba (pre-conv, shared QK + convs, gate)
  int64_t window = 0;               // attention: sliding window size, 0 = full causal
  double rope_theta = 10000.0;
  int64_t conv_width = 4;           // Mamba backbone causal depthwise convolutions
  bool tie_embeddings = true;
  double norm_eps = 1e-6;
  double init_std = 0.02;
  int64_t max_seq_len = 2048;       // training context; eval may go beyond for TTT / RoPE models
  uint64_t seed = 0;                // parameter initialization
  bool remat_io = false;            // training: recompute the pre-conv and a TTT layer's input and
                                    // output sides in the backward instead of storing them (block.h;
                                    // the TTT configs set it): 7.9 instead of 10.4 GB at 125M 8x2048
                                    // on an H200, 10% slower (BENCHMARKS.md)
  bool bf16_activations = true;     // under bf16 autocast the SwiGLU hidden layer and attention's
                                    // q, k, v and output are bf16 (layers/swiglu.h, attention.h)
  TTTConfig ttt;
  LinearAttentionConfig linear_attention;
  E2EConfig e2e;
  MambaConfig mamba;
  Mamba2Config mamba2;
  GatedDeltaNetConfig gdn;
  KVBConfig kvb;

  int64_t head_dim() const { return d_model / n_heads; }
};

// Throws std::invalid_argument naming the key ("model.d_model: ...") when a value is out of range
// or the values do not fit together (d_model not divisible by n_heads, unknown mixer, ...).
// Called by every model constructor; the trainer may call it right after reading a config.
void validate(const ModelConfig& cfg);
// The model.e2e.* part of validate() (layers/e2e_config.cpp), run when arch is "e2e".
void validate_e2e(const ModelConfig& cfg);
// The errors validate() throws, for the other validators of `model.*` keys (baseline_config.cpp):
// "model.<key>: <what>", and "must be > 0" for a non-positive v.
[[noreturn]] void bad_model_key(const std::string& key, const std::string& what);
void require_positive(const std::string& key, int64_t v);

}  // namespace ttt
