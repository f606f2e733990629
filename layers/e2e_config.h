// layers/e2e_config.h — TTT-E2E settings resolved from a ModelConfig (arch "e2e"), the sizes of
// the paper / official code, and an analytic parameter count.
//
// Sizes (official test-time-training/e2e configs/model/*.yaml and configs/experiment/*/pretrain/
// *-e2e.yaml): the full-attention baseline's SwiGLU width is shrunk in every block so that the
// extra MLP' of the suffix blocks keeps the parameter count about the same.
//
//   size  blocks  d_model  heads  d_ff (FA / E2E)  suffix  (window 8192, chunk 1024, RoPE θ 5e5)
//   125m  12      768      12     2048 / 1664      3
//   350m  24      1024     16     2816 / 2304      6
//   760m  24      1536     16     4096 / 3328      6
//   tiny  4       64       4      192 / 160        1       (window 32, chunk 16, context 128: CPU tests)
//
// The official models use the Llama-3 vocabulary (128256); like the other presets here these use
// 32000 (the Llama-2 vocabulary the TTT paper trains with), tiny 512.
#pragma once

#include <cstdint>
#include <string>

#include "layers/model_config.h"

namespace ttt {

// Number of blocks with the fast MLP' (the last ones): model.e2e.suffix_blocks, -1 = n_layers / 4.
int64_t e2e_suffix_blocks(const ModelConfig& cfg);
// Tokens per inner step for a sequence of T tokens: model.e2e.chunk, capped at T (-1 = T).
int64_t e2e_chunk(const ModelConfig& cfg, int64_t T);
// The inner learning rate of outer update `step` (1-based) of a run with `warmup_steps` outer
// warmup steps: linear from inner_lr_init to inner_lr, reached at the end of the warmup (official
// MetaModel.get_ilr_multiplier: ilr_init + (lr − ilr_init) · min(1, step / ilr_warmup_steps)).
double e2e_inner_lr(const ModelConfig& cfg, int64_t step, int64_t warmup_steps);

// The E2E model of a size (tiny, 125m, 350m, 760m). full_attention_baseline = true gives the
// paper's baseline of the same size instead: no MLP', the unshrunk d_ff (full attention: window 0).
ModelConfig e2e_preset(const std::string& size, bool full_attention_baseline = false);
// Parameters of LanguageModel(cfg) for arch "e2e", from the shapes alone.
int64_t count_e2e_parameters(const ModelConfig& cfg);
// Parameters of the fast MLP's, the part updated at test time (W0 of the paper).
int64_t count_e2e_fast_parameters(const ModelConfig& cfg);

}  // namespace ttt
