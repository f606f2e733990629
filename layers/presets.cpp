// layers/presets.cpp — see presets.h.
#include "layers/presets.h"

#include <stdexcept>

#include "layers/e2e_config.h"

namespace ttt {

int64_t count_baseline_mixer_parameters(const ModelConfig& c) {
  const int64_t D = c.d_model;
  if (c.mixer == "mamba") {
    const int64_t in = c.mamba.expand * D, N = c.mamba.d_state, R = mamba_dt_rank(c), k = c.mamba.d_conv;
    return D * 2 * in + (in * k + in) + in * (R + 2 * N) + (R * in + in) + in * N + in + in * D;
    //     in_proj       conv1d (+bias)   x_proj            dt_proj (+bias)  A_log   D    out_proj
  }
  if (c.mixer == "mamba2") {
    const Mamba2Config& m = c.mamba2;
    const int64_t in = m.expand * D, H = in / m.head_dim, GN = m.n_groups * m.d_state, conv = in + 2 * GN;
    return D * (2 * in + 2 * GN + H) + (conv * m.d_conv + conv) + 3 * H + in + in * D;
    //     in_proj                     conv1d (+bias)               dt_bias, A_log, D; norm; out_proj
  }
  if (c.mixer == "gated_deltanet") {
    const int64_t H = gdn_heads(c), dk = gdn_head_dim(c), dv = c.gdn.expand_v * dk, k = c.gdn.d_conv;
    return 2 * D * H * dk + D * H * dv + 2 * D * H + 2 * H + (2 * H * dk + H * dv) * k + D * H * dv + dv +
           H * dv * D;
    //     q, k, v projections             a, b     A_log, dt_bias; convs (no bias); g_proj; o_norm; o_proj
  }
  if (c.mixer == "ttt_kvb") {
    const int64_t H = kvb_heads(c), f = D / H, m = c.kvb.hidden_mult * f;
    return 3 * D * D + (D * H + H) + 3 * H * m * f + f + 2 * D * D + (c.window > 0 ? 4 * D * D : 0);
    //     q, k, v     lr_proj      w0 w1 w2        norm  gate, o_proj   the SWA branch
  }
  throw std::invalid_argument("count_baseline_mixer_parameters: not a baseline mixer: " + c.mixer);
}

namespace {
struct SizeRow {
  const char* name;
  int64_t layers, d_model, heads, d_ff, nominal;
  double lr;
};
// Table 2 of the paper (blocks, embedding dim, heads, peak LR) + the official intermediate sizes.
constexpr SizeRow kSizes[] = {
    {"125m", 12, 768, 12, 2048, 125'000'000, 3e-3},
    {"350m", 24, 1024, 16, 2736, 350'000'000, 1.5e-3},
    {"760m", 24, 1536, 16, 4096, 760'000'000, 1.25e-3},
    {"1.3b", 24, 2048, 32, 5504, 1'300'000'000, 1e-3},
    {"tiny", 2, 64, 4, 176, 0, 3e-3},
};

const SizeRow& row(const std::string& size) {
  for (const auto& r : kSizes)
    if (size == r.name) return r;
  throw std::invalid_argument("unknown model size '" + size + "' (expected tiny, 125m, 350m, 760m or 1.3b)");
}
}  // namespace

std::vector<std::string> preset_sizes() { return {"125m", "350m", "760m", "1.3b"}; }
int64_t nominal_parameters(const std::string& size) { return row(size).nominal; }
double peak_lr(const std::string& size) { return row(size).lr; }

ModelConfig preset(const std::string& size, const std::string& mixer, const std::string& backbone) {
  const SizeRow& r = row(size);
  ModelConfig c;
  c.vocab_size = size == "tiny" ? 512 : 32000;
  c.n_layers = r.layers;
  c.d_model = r.d_model;
  c.n_heads = r.heads;
  c.d_ff = r.d_ff;
  c.mixer = mixer;
  c.backbone = !backbone.empty() ? backbone : (mixer == "ttt_linear" || mixer == "ttt_mlp") ? "mamba" : "transformer";
  if (mixer == "mamba" || mixer == "mamba2") {  // the Mamba papers' LMs: mixer-only blocks, twice as many
    c.n_layers *= 2;
    c.d_ff = 0;
  }
  c.max_seq_len = size == "tiny" ? 128 : 2048;
  validate(c);
  return c;
}

int64_t count_mixer_parameters(const ModelConfig& c) {
  const int64_t D = c.d_model, H = c.n_heads, f = c.head_dim(), k = c.conv_width;
  if (c.arch == "e2e") return 4 * D * D + (c.e2e.qk_norm ? 2 * f : 0);  // wq wk wv wo, q/k norms
  if (c.mixer == "attention" || c.mixer == "linear_attention") return 4 * D * D;  // wq wk wv wo
  if (is_baseline_mixer(c.mixer)) return count_baseline_mixer_parameters(c);
  if (c.mixer != "ttt_linear" && c.mixer != "ttt_mlp") throw std::invalid_argument("unknown mixer " + c.mixer);
  const TTTConfig& t = c.ttt;
  int64_t n = 0;
  if (c.backbone == "mamba")
    n += 4 * D * D + 2 * (D * k + D);  // wq (shared Q/K), wv, wo, wg; conv_q, conv_k with bias
  else
    n += 4 * D * D;  // wq, wk, wv, wo
  if (t.learnable_lr) n += H * D + H;  // theta_lr [H, D] and its bias [H]
  if (t.learnable_token_idx) n += t.mini_batch > 0 ? t.mini_batch : c.max_seq_len;
  if (t.ln_residual) n += 2 * D;  // ttt_norm weight and bias [H, f]
  if (t.learnable_w0) {
    const int64_t bias = t.inner_bias ? 1 : 0;
    if (c.mixer == "ttt_linear") {
      n += H * f * f + bias * H * f;  // W1 [H, f, f], b1 [H, 1, f]
    } else {
      const int64_t e = t.mlp_expansion;
      n += H * f * e * f + bias * H * e * f + H * e * f * f + bias * H * f;  // W1, b1, W2, b2
    }
  }
  if (t.post_norm) n += 2 * D;  // post_norm LayerNorm weight and bias
  return n;
}

int64_t count_parameters(const ModelConfig& c) {
  validate(c);
  if (c.arch == "e2e") return count_e2e_parameters(c);
  const int64_t D = c.d_model, V = c.vocab_size;
  int64_t n = V * D + D;  // embed, final_norm
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const ModelConfig b = block_config(c, i);  // model.pattern picks each block's mixer
    int64_t block = D + count_mixer_parameters(b);                           // seq_norm, mixer
    if (c.d_ff > 0) block += D + 3 * D * c.d_ff;                             // ffn_norm, SwiGLU
    if (c.backbone == "mamba") block += D + D * c.conv_width + D;            // pre_conv_norm, pre_conv (+bias)
    n += block;
  }
  if (!c.tie_embeddings) n += V * D;                                     // lm_head
  return n;
}

}  // namespace ttt
