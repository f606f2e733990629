// layers/baseline_config.cpp — see baseline_config.h.
#include "layers/baseline_config.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "layers/model_config.h"

namespace ttt {

namespace {

[[noreturn]] void bad(const std::string& key, const std::string& what) { bad_model_key(key, what); }
void positive(const std::string& key, int64_t v) { require_positive(key, v); }
bool power_of_two(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

const char* const kBaselines[] = {"mamba", "mamba2", "gated_deltanet", "ttt_kvb"};
const char* const kOthers[] = {"attention", "linear_attention", "ttt_linear", "ttt_mlp"};

bool known_block_mixer(const std::string& name) {
  if (name == "swa" || is_baseline_mixer(name)) return true;
  for (const char* n : kOthers)
    if (name == n) return true;
  return false;
}

}  // namespace

void validate_block_mixer(const ModelConfig& c) {
  const int64_t D = c.d_model;
  if (c.mixer == "mamba") {
    const MambaConfig& m = c.mamba;
    positive("mamba.d_state", m.d_state);
    positive("mamba.expand", m.expand);
    positive("mamba.d_conv", m.d_conv);
    if (m.dt_rank <= 0 && m.dt_rank != -1) bad("mamba.dt_rank", "must be > 0, or -1 for ceil(d_model / 16)");
    if (m.scan_chunk < 0) bad("mamba.scan_chunk", "must be >= 0 (0 = keep the state at every step)");
    if (m.kernel != "auto" && m.kernel != "fused" && m.kernel != "composite")
      bad("mamba.kernel", "expected auto, fused or composite, got '" + m.kernel + "'");
  } else if (c.mixer == "mamba2") {
    const Mamba2Config& m = c.mamba2;
    positive("mamba2.d_state", m.d_state);
    positive("mamba2.head_dim", m.head_dim);
    positive("mamba2.expand", m.expand);
    positive("mamba2.n_groups", m.n_groups);
    positive("mamba2.d_conv", m.d_conv);
    positive("mamba2.chunk", m.chunk);
    if (!(m.norm_eps > 0)) bad("mamba2.norm_eps", "must be > 0");
    if (m.kernel != "auto" && m.kernel != "fused" && m.kernel != "composite" && m.kernel != "recurrent" &&
        m.kernel != "delta_chunked" && m.kernel != "delta_chunked_tc")
      bad("mamba2.kernel",
          "expected auto, fused, composite, recurrent, delta_chunked or delta_chunked_tc, got '" + m.kernel + "'");
    const int64_t inner = m.expand * D;
    if (inner % m.head_dim != 0)
      bad("mamba2.head_dim", "d_inner = expand · d_model = " + std::to_string(inner) +
                                 " is not divisible by head_dim = " + std::to_string(m.head_dim));
    const int64_t heads = inner / m.head_dim;
    if (heads % m.n_groups != 0)
      bad("mamba2.n_groups", std::to_string(heads) + " heads do not split into " + std::to_string(m.n_groups) +
                                 " groups");
  } else if (c.mixer == "gated_deltanet") {
    const GatedDeltaNetConfig& m = c.gdn;
    if (m.n_heads <= 0 && m.n_heads != -1) bad("gdn.n_heads", "must be > 0, or -1 for model.n_heads / 2");
    if (m.head_dim <= 0 && m.head_dim != -1) bad("gdn.head_dim", "must be > 0, or -1 for 0.75 · d_model / heads");
    if (m.head_dim == -1 && (3 * D) % (4 * gdn_heads(c)) != 0)
      bad("gdn.head_dim", "-1 needs 0.75 · d_model = " + std::to_string(3 * D / 4.0) + " divisible by " +
                              std::to_string(gdn_heads(c)) + " heads; set model.gdn.head_dim");
    positive("gdn.expand_v", m.expand_v);
    positive("gdn.d_conv", m.d_conv);
    if (!power_of_two(m.chunk)) bad("gdn.chunk", "must be a power of two, got " + std::to_string(m.chunk));
    if (!(m.norm_eps > 0)) bad("gdn.norm_eps", "must be > 0");
    if (m.kernel != "auto" && m.kernel != "fused" && m.kernel != "chunked" && m.kernel != "chunked_tc" &&
        m.kernel != "composite")
      bad("gdn.kernel", "expected auto, fused, chunked, chunked_tc or composite, got '" + m.kernel + "'");
  } else if (c.mixer == "ttt_kvb") {
    const KVBConfig& m = c.kvb;
    if (m.n_heads <= 0 && m.n_heads != -1) bad("kvb.n_heads", "must be > 0, or -1 for model.n_heads");
    if (D % kvb_heads(c) != 0)
      bad("kvb.n_heads", "d_model = " + std::to_string(D) + " is not divisible by " + std::to_string(kvb_heads(c)));
    positive("kvb.hidden_mult", m.hidden_mult);
    positive("kvb.mini_batch", m.mini_batch);
    if (!(m.base_lr > 0)) bad("kvb.base_lr", "must be > 0");
    if (c.window > 0 && c.head_dim() % 2 != 0)
      bad("n_heads", "the sliding-window branch of ttt_kvb rotates pairs (RoPE): head_dim must be even");
  } else if (c.mixer == "attention" && c.head_dim() % 2 != 0) {
    bad("n_heads", "attention rotates pairs of features (RoPE): head_dim = d_model / n_heads = " +
                       std::to_string(c.head_dim()) + " must be even");
  }
}

bool is_baseline_mixer(const std::string& name) {
  for (const char* n : kBaselines)
    if (name == n) return true;
  return false;
}

std::string baseline_mixer_list() {
  std::string s;
  for (const char* n : kBaselines) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

std::vector<std::string> mixer_pattern(const ModelConfig& cfg) {
  std::vector<std::string> out;
  if (cfg.pattern.empty()) return out;
  std::stringstream ss(cfg.pattern);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    out.push_back(b == std::string::npos ? std::string() : item.substr(b, e - b + 1));
  }
  return out;
}

ModelConfig block_config(const ModelConfig& cfg, int64_t block) {
  const std::vector<std::string> p = mixer_pattern(cfg);
  if (p.empty()) return cfg;
  ModelConfig c = cfg;
  const std::string& name = p[static_cast<size_t>(block) % p.size()];
  if (name == "swa") {
    c.mixer = "attention";  // keeps model.window
  } else {
    c.mixer = name;
    if (name == "attention") c.window = 0;  // full attention inside a pattern
  }
  return c;
}

void validate_baselines(const ModelConfig& cfg) {
  const std::vector<std::string> p = mixer_pattern(cfg);
  for (const std::string& name : p) {
    if (!known_block_mixer(name))
      bad("pattern", "unknown mixer '" + name + "' in '" + cfg.pattern +
                         "' (expected comma-separated names of: swa, attention, linear_attention, ttt_linear, "
                         "ttt_mlp, " + baseline_mixer_list() + ")");
    if (name == "swa" && cfg.window <= 0)
      bad("pattern", "'swa' needs the sliding-window size model.window > 0, got " + std::to_string(cfg.window));
  }
  if (p.empty()) {
    validate_block_mixer(cfg);
  } else {
    for (size_t i = 0; i < p.size(); ++i) validate_block_mixer(block_config(cfg, static_cast<int64_t>(i)));
  }
}

int64_t mamba_dt_rank(const ModelConfig& cfg) {
  return cfg.mamba.dt_rank > 0 ? cfg.mamba.dt_rank : (cfg.d_model + 15) / 16;
}

int64_t gdn_heads(const ModelConfig& cfg) {
  return cfg.gdn.n_heads > 0 ? cfg.gdn.n_heads : std::max<int64_t>(1, cfg.n_heads / 2);
}

int64_t gdn_head_dim(const ModelConfig& cfg) {
  return cfg.gdn.head_dim > 0 ? cfg.gdn.head_dim : 3 * cfg.d_model / (4 * gdn_heads(cfg));
}

int64_t kvb_heads(const ModelConfig& cfg) { return cfg.kvb.n_heads > 0 ? cfg.kvb.n_heads : cfg.n_heads; }

}  // namespace ttt
