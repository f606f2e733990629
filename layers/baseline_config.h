// layers/baseline_config.h — options of the baseline sequence mixers the papers compare against
// (Mamba, Mamba 2, Gated DeltaNet, TTT-KVB) and of hybrid stacks. Part of ModelConfig (the
// `model.mamba.*`, `model.mamba2.*`, `model.gdn.*`, `model.kvb.*` keys and `model.pattern`);
// validate_baselines() checks them. Defaults are the reference implementations' defaults.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ttt {

struct ModelConfig;

// Mamba-1 (Gu & Dao 2023; state-spaces/mamba `mamba_simple.py` Mamba.__init__ defaults).
struct MambaConfig {
  int64_t d_state = 16;    // N
  int64_t expand = 2;      // d_inner = expand · d_model
  int64_t d_conv = 4;      // causal depthwise conv width (with bias)
  int64_t dt_rank = -1;    // -1 = ceil(d_model / 16)
  int64_t scan_chunk = 64; // the composite scan keeps its state every this many steps and
                           // recomputes the steps in between during backward; 0 = keep every step
  std::string kernel = "auto";  // selective scan: fused | composite | auto (fused where the device's kernels run it)
};

// Mamba-2 (Dao & Gu 2024; state-spaces/mamba `mamba2.py` defaults; E2E paper baseline 4).
struct Mamba2Config {
  int64_t d_state = 128;   // N
  int64_t head_dim = 64;   // P
  int64_t expand = 2;      // d_inner = expand · d_model, heads = d_inner / head_dim
  int64_t n_groups = 1;    // B and C are shared by the heads of a group
  int64_t d_conv = 4;      // causal conv over (x, B, C), with bias, then SiLU
  int64_t chunk = 64;      // SSD chunk length Q (the chunked form; any length works)
  double norm_eps = 1e-5;  // the gated RMSNorm before out_proj
  std::string kernel = "auto";  // SSD scan: fused | composite | recurrent (the token-by-token kernels of
                                // kernels/gated_delta.h) | delta_chunked (the same recurrence through the
                                // gated delta rule's chunked WY kernels on CUDA; d_state ≤ 128) |
                                // delta_chunked_tc (the same, products on the tensor cores) | auto (recurrent)
};

// Gated DeltaNet (Yang, Kautz, Hatamizadeh 2025; fla `layers/gated_deltanet.py`, NVlabs/GatedDeltaNet).
struct GatedDeltaNetConfig {
  int64_t n_heads = -1;    // -1 = max(1, model.n_heads / 2)
  int64_t head_dim = -1;   // key head dim; -1 = 0.75 · d_model / n_heads (fla: key_dim = 0.75 · hidden)
  int64_t expand_v = 2;    // value head dim = expand_v · head_dim
  int64_t d_conv = 4;      // short convs on q, k, v (no bias), then SiLU
  int64_t chunk = 64;      // WY/UT chunk length (a power of two); the CPU fused kernels keep the state this often
  double norm_eps = 1e-5;  // the gated RMSNorm of the output
  std::string kernel = "auto";  // the scan: fused (token walk) | chunked (chunked WY kernels on CUDA; d_k ≤ 128) |
                                // chunked_tc (the same, products on the tensor cores in 3xTF32) | composite |
                                // auto (fused where the device's kernels cover it)
};

// TTT-KVB as the E2E paper's baseline 6 (LaCT, Zhang et al. 2025): a SwiGLU fast-weight MLP per
// head trained at test time on ½‖g(θ_K x) − θ_V x‖², read at g(θ_Q x); next to sliding-window
// attention (model.window > 0). See layers/ttt_kvb.h.
struct KVBConfig {
  int64_t n_heads = -1;      // fast-weight heads; -1 = model.n_heads (head dim = d_model / n_heads)
  int64_t hidden_mult = 1;   // fast-weight MLP hidden size = hidden_mult · head dim (LaCT: 1)
  int64_t mini_batch = 1024; // b: the fast weights are updated once per b tokens (E2E: 1024)
  double base_lr = 1e-3;     // per-token lr = softplus(x·θ_lr + inv_softplus(base_lr)) (LaCT)
  bool weight_norm = true;   // after each update, rescale every fast-weight row to its initial norm (LaCT)
};

// mamba | mamba2 | gated_deltanet | ttt_kvb, and that list as text for error messages.
bool is_baseline_mixer(const std::string& name);
std::string baseline_mixer_list();

// Mixer of block i: `pattern` (comma-separated names, repeated cyclically over the blocks) or, when
// it is empty, `mixer`. Names: the mixers of make_mixer, plus "swa" = attention with the sliding
// window model.window (> 0); inside a pattern "attention" means full causal attention (window 0).
std::vector<std::string> mixer_pattern(const ModelConfig& cfg);
// cfg with mixer (and window) set for block i.
ModelConfig block_config(const ModelConfig& cfg, int64_t block);

// Throws std::invalid_argument naming the key; called by validate(ModelConfig).
void validate_baselines(const ModelConfig& cfg);
// The checks of the one mixer cfg.mixer (the mixers' constructors call it).
void validate_block_mixer(const ModelConfig& cfg);

// The derived sizes (after the -1 defaults), used by the layers and the parameter count.
int64_t mamba_dt_rank(const ModelConfig& cfg);
int64_t gdn_heads(const ModelConfig& cfg);
int64_t gdn_head_dim(const ModelConfig& cfg);
int64_t kvb_heads(const ModelConfig& cfg);

}  // namespace ttt
