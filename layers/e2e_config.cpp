// layers/e2e_config.cpp — see e2e_config.h.
#include "layers/e2e_config.h"

#include <algorithm>
#include <stdexcept>

namespace ttt {

namespace {

[[noreturn]] void bad(const std::string& key, const std::string& what) {
  throw std::invalid_argument("model." + key + ": " + what);
}

struct E2ESize {
  const char* name;
  int64_t layers, d_model, heads, d_ff_full, d_ff_e2e, suffix;
};
constexpr E2ESize kE2ESizes[] = {
    {"125m", 12, 768, 12, 2048, 1664, 3},
    {"350m", 24, 1024, 16, 2816, 2304, 6},
    {"760m", 24, 1536, 16, 4096, 3328, 6},
    {"tiny", 4, 64, 4, 192, 160, 1},
};

}  // namespace

void validate_e2e(const ModelConfig& c) {
  const E2EConfig& e = c.e2e;
  if (c.mixer != "attention")
    bad("mixer", "arch e2e is a sliding-window Transformer: set model.mixer: attention (got '" + c.mixer + "')");
  if (c.backbone != "transformer")
    bad("backbone", "arch e2e uses its own block: set model.backbone: transformer (got '" + c.backbone + "')");
  if (c.head_dim() % 2 != 0) bad("n_heads", "head_dim = d_model / n_heads must be even (RoPE rotates pairs)");
  if (e.suffix_blocks < -1 || e.suffix_blocks > c.n_layers)
    bad("e2e.suffix_blocks", "must be -1 (n_layers / 4) or in [0, n_layers = " + std::to_string(c.n_layers) +
                                 "], got " + std::to_string(e.suffix_blocks));
  if (e.chunk <= 0 && e.chunk != -1)
    bad("e2e.chunk", "must be > 0, or -1 for the whole sequence; got " + std::to_string(e.chunk));
  if (!(e.inner_lr >= 0)) bad("e2e.inner_lr", "must be >= 0");
  if (!(e.inner_lr_init >= 0)) bad("e2e.inner_lr_init", "must be >= 0");
  if (!(e.inner_clip >= 0)) bad("e2e.inner_clip", "must be >= 0 (0 = off)");
  if (e.train_mode != "meta" && e.train_mode != "naive")
    bad("e2e.train_mode", "expected meta or naive, got '" + e.train_mode + "'");
  if (e.second_order != "float32" && e.second_order != "autocast")
    bad("e2e.second_order", "expected float32 or autocast, got '" + e.second_order + "'");
  if (e.fast_heads <= 0 || c.d_model % e.fast_heads != 0 || c.d_ff % e.fast_heads != 0)
    bad("e2e.fast_heads", "must be > 0 and divide model.d_model (" + std::to_string(c.d_model) + ") and model.d_ff (" +
                              std::to_string(c.d_ff) + "), got " + std::to_string(e.fast_heads));
}

int64_t e2e_suffix_blocks(const ModelConfig& c) {
  return c.e2e.suffix_blocks >= 0 ? c.e2e.suffix_blocks : c.n_layers / 4;
}

int64_t e2e_chunk(const ModelConfig& c, int64_t T) { return c.e2e.chunk > 0 ? std::min(c.e2e.chunk, T) : T; }

double e2e_inner_lr(const ModelConfig& c, int64_t step, int64_t warmup_steps) {
  const E2EConfig& e = c.e2e;
  if (warmup_steps <= 0) return e.inner_lr;
  const double progress = std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup_steps));
  return e.inner_lr_init + (e.inner_lr - e.inner_lr_init) * progress;
}

ModelConfig e2e_preset(const std::string& size, bool full_attention_baseline) {
  const E2ESize* r = nullptr;
  for (const auto& s : kE2ESizes)
    if (size == s.name) r = &s;
  if (!r) throw std::invalid_argument("unknown E2E model size '" + size + "' (expected tiny, 125m, 350m or 760m)");
  const bool tiny = size == "tiny";
  ModelConfig c;
  c.arch = "e2e";
  c.mixer = "attention";
  c.backbone = "transformer";
  c.vocab_size = tiny ? 512 : 32000;
  c.n_layers = r->layers;
  c.d_model = r->d_model;
  c.n_heads = r->heads;
  c.rope_theta = 5e5;
  c.max_seq_len = tiny ? 128 : 8192;
  c.window = tiny ? 32 : 8192;
  c.e2e.chunk = tiny ? 16 : 1024;
  if (full_attention_baseline) {
    c.d_ff = r->d_ff_full;
    c.window = 0;
    c.e2e.suffix_blocks = 0;
  } else {
    c.d_ff = r->d_ff_e2e;
    c.e2e.suffix_blocks = r->suffix;
  }
  validate(c);
  return c;
}

int64_t count_e2e_fast_parameters(const ModelConfig& c) {
  return e2e_suffix_blocks(c) * 3 * c.d_model * c.d_ff / c.e2e.fast_heads;
}

int64_t count_e2e_parameters(const ModelConfig& c) {
  validate(c);
  const int64_t D = c.d_model, norms_per_sublayer = c.e2e.post_norm ? 2 : 1;
  const int64_t attn = 4 * D * D + (c.e2e.qk_norm ? 2 * c.head_dim() : 0);
  const int64_t block = attn + 3 * D * c.d_ff + 2 * norms_per_sublayer * D;  // attention, MLP, their norms
  const int64_t prime_norms = e2e_suffix_blocks(c) * norms_per_sublayer * D;
  int64_t n = c.vocab_size * D + c.n_layers * block + prime_norms + count_e2e_fast_parameters(c) + D;
  if (!c.tie_embeddings) n += c.vocab_size * D;
  return n;
}

}  // namespace ttt
