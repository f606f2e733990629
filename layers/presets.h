// layers/presets.h — the paper's model sizes (Table 2; official JAX CONFIGS)
// as ModelConfigs, and an analytic parameter count that needs no allocation.
//
//   size   blocks  d_model  heads  d_ff    (vocab 32000, tied embeddings, RoPE theta 1e4)
//   125m   12      768      12     2048
//   350m   24      1024     16     2736
//   760m   24      1536     16     4096
//   1.3b   24      2048     32     5504
//   tiny   2       64       4      176     (vocab 512: CPU tests and the quickstart)
//
// Note [Nominal sizes]: the names come from the Mamba paper's Table 12, whose models use the
// GPT-NeoX tokenizer (vocab 50280). With that vocab the four Transformer++ sizes are within 3% of
// their names; with the Llama-2 vocab of 32000 that the TTT paper trains with, 125M has ~110M
// parameters (−12%) while the others stay within 5% (tests/test_model_sizes.cpp prints both).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layers/model_config.h"

namespace ttt {

// mamba and mamba2 follow their papers' language models (Mamba Table 12; the released Mamba-2
// models 130m..1.3b have the same shapes): twice the blocks, each without MLP (d_ff = 0):
// 24 × 768, 48 × 1024, 48 × 1536, 48 × 2048.
// size: tiny | 125m | 350m | 760m | 1.3b; mixer: attention | linear_attention | ttt_linear |
// ttt_mlp; backbone "" = the paper's default (transformer for attention and linear attention,
// mamba for TTT layers).
ModelConfig preset(const std::string& size, const std::string& mixer = "attention", const std::string& backbone = "");
std::vector<std::string> preset_sizes();          // the four paper sizes, smallest first
int64_t nominal_parameters(const std::string& size);  // 125'000'000 for "125m", ...
double peak_lr(const std::string& size);              // Table 2 peak LR (3e-3 for 125m, ...)

// Parameter count of LanguageModel(cfg), computed from the shapes alone. Must equal
// LanguageModel(cfg).num_parameters() (tests cross-check on the tiny configs and 125M).
int64_t count_parameters(const ModelConfig& cfg);
// The sequence mixer's share per block (attention: 4 d²; TTT layers: the official layout).
int64_t count_mixer_parameters(const ModelConfig& cfg);
// The same for mamba, mamba2, gated_deltanet and ttt_kvb (the reference layers' layouts).
int64_t count_baseline_mixer_parameters(const ModelConfig& cfg);

}  // namespace ttt
