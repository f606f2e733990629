// layers/model_config.cpp — validate(ModelConfig): one clear message per bad key.
#include "layers/model_config.h"

#include <stdexcept>

namespace ttt {

[[noreturn]] void bad_model_key(const std::string& key, const std::string& what) {
  throw std::invalid_argument("model." + key + ": " + what);
}
void require_positive(const std::string& key, int64_t v) {
  if (v <= 0) bad_model_key(key, "must be > 0, got " + std::to_string(v));
}

namespace {
[[noreturn]] void bad(const std::string& key, const std::string& what) { bad_model_key(key, what); }
void positive(const std::string& key, int64_t v) { require_positive(key, v); }
}  // namespace

void validate(const ModelConfig& c) {
  positive("vocab_size", c.vocab_size);
  positive("d_model", c.d_model);
  positive("n_layers", c.n_layers);
  positive("n_heads", c.n_heads);
  if (c.d_ff < 0) bad("d_ff", "must be >= 0 (0 = blocks without MLP), got " + std::to_string(c.d_ff));
  positive("conv_width", c.conv_width);
  positive("max_seq_len", c.max_seq_len);
  if (c.d_model % c.n_heads != 0)
    bad("n_heads", "model.d_model = " + std::to_string(c.d_model) + " is not divisible by n_heads = " +
                       std::to_string(c.n_heads));
  if (c.mixer != "attention" && c.mixer != "linear_attention" && c.mixer != "ttt_linear" && c.mixer != "ttt_mlp" &&
      !is_baseline_mixer(c.mixer))
    bad("mixer", "expected one of attention, linear_attention, ttt_linear, ttt_mlp, " + baseline_mixer_list() +
                     "; got '" + c.mixer + "'");
  if (c.backbone != "transformer" && c.backbone != "mamba")
    bad("backbone", "expected transformer or mamba, got '" + c.backbone + "'");
  if (c.mixer == "attention" && c.head_dim() % 2 != 0)
    bad("n_heads", "attention rotates pairs of features (RoPE): head_dim = d_model / n_heads = " +
                       std::to_string(c.head_dim()) + " must be even");
  if (c.window < 0) bad("window", "must be >= 0 (0 = full causal attention), got " + std::to_string(c.window));
  if (!(c.rope_theta > 0)) bad("rope_theta", "must be > 0");
  if (!(c.norm_eps > 0)) bad("norm_eps", "must be > 0");
  if (!(c.init_std >= 0)) bad("init_std", "must be >= 0");
  const TTTConfig& t = c.ttt;
  if (t.mini_batch <= 0 && t.mini_batch != -1)
    bad("ttt.mini_batch", "must be > 0, or -1 for the whole sequence; got " + std::to_string(t.mini_batch));
  if (t.impl != "auto" && t.impl != "fused" && t.impl != "dual" && t.impl != "primal" && t.impl != "generic")
    bad("ttt.impl", "expected auto, fused, dual, primal or generic, got '" + t.impl + "'");
  positive("ttt.mlp_expansion", t.mlp_expansion);
  if (t.checkpoint_group < 0) bad("ttt.checkpoint_group", "must be >= 0 (0 = off)");
  if (!(t.ln_eps > 0)) bad("ttt.ln_eps", "must be > 0");
  const LinearAttentionConfig& la = c.linear_attention;
  if (la.feature_map != "identity" && la.feature_map != "elu_plus_one")
    bad("linear_attention.feature_map", "expected identity or elu_plus_one, got '" + la.feature_map + "'");
  if (!(la.eps > 0)) bad("linear_attention.eps", "must be > 0");
  if (c.arch != "standard" && c.arch != "e2e") bad("arch", "expected standard or e2e, got '" + c.arch + "'");
  if (c.arch == "e2e") validate_e2e(c);
  validate_baselines(c);
}

}  // namespace ttt
