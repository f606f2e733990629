// trainer/export_schema.cpp — see export_schema.h. The official names come from ttt-lm-pytorch
// ttt.py (TTTForCausalLM -> TTTModel.{embed_tokens, layers, norm} -> Block.{conv, seq_norm,
// seq_modeling_block, ffn_norm, mlp}, TTTBase/TTTLinear/TTTMLP parameters, TTTConfig's keys) and
// transformers' modeling_llama.py / configuration_llama.py.
#include "trainer/export_schema.h"

#include <regex>
#include <sstream>
#include <stdexcept>

#include "layers/ttt_layer.h"

namespace ttt {

namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

[[noreturn]] void cannot(const std::string& key, const std::string& value, const std::string& why) {
  throw std::invalid_argument(key + "=" + value + ": " + why);
}

// The TTT switches beyond the official layer (Table 1 ablations, Theorem 1): none has a place in
// TTTConfig, which always builds the full layer.
void check_official_ttt(const ModelConfig& m) {
  const TTTConfig& t = m.ttt;
  const std::string official = "the official TTT layer (ttt-lm-pytorch) always has ";
  if (t.mini_batch <= 0) cannot("model.ttt.mini_batch", std::to_string(t.mini_batch), "the official TTT layer needs a fixed mini-batch size");
  if (!t.ln_residual) cannot("model.ttt.ln_residual", "false", official + "f(x) = x + LN(f_res(x))");
  if (!t.learnable_w0) cannot("model.ttt.learnable_w0", "false", official + "a learnable W0 (W1, b1, ...)");
  if (!t.learnable_lr) cannot("model.ttt.learnable_lr", "false", official + "the learnable eta gate (learnable_ttt_lr_weight)");
  if (!t.learnable_token_idx) cannot("model.ttt.learnable_token_idx", "false", official + "learnable_token_idx");
  if (!t.token_idx_mean) cannot("model.ttt.token_idx_mean", "false", official + "the 1/(i+1) token weights");
  if (!t.rope) cannot("model.ttt.rope", "false", official + "RoPE on XQ/XK");
  if (!t.inner_bias) cannot("model.ttt.inner_bias", "false", official + "inner biases (b1, b2)");
  if (m.mixer == "ttt_mlp" && t.mlp_expansion != 4)
    cannot("model.ttt.mlp_expansion", std::to_string(t.mlp_expansion), "the official TTT-MLP hidden size is 4 x head_dim");
  if (t.ln_eps != 1e-6) cannot("model.ttt.ln_eps", num(t.ln_eps), "the official inner LayerNorm has eps 1e-6 (ttt.py ln_fwd)");
  if (m.norm_eps != 1e-6)
    cannot("model.norm_eps", num(m.norm_eps),
           "the official TTT layer's post_norm has eps 1e-6 whatever rms_norm_eps is, ours uses model.norm_eps");
}

// ours -> theirs for a TTT mixer parameter ("q_proj.weight", "inner.W1", ...).
std::string ttt_mixer_name(const std::string& p) { return p.rfind("inner.", 0) == 0 ? p.substr(6) : p; }

std::string external_name(ExternalSchema s, const std::string& ours) {
  static const std::regex block(R"(blocks\.(\d+)\.(.+))");
  if (ours == "embed.weight") return "model.embed_tokens.weight";
  if (ours == "final_norm.weight") return "model.norm.weight";
  if (ours == "lm_head.weight") return "lm_head.weight";
  std::smatch mt;
  if (!std::regex_match(ours, mt, block)) return "";
  const std::string layer = "model.layers." + mt[1].str() + ".", rest = mt[2].str();
  static const std::vector<std::pair<std::string, std::string>> mlp = {
      {"mlp.w1.weight", "mlp.gate_proj.weight"}, {"mlp.w3.weight", "mlp.up_proj.weight"}, {"mlp.w2.weight", "mlp.down_proj.weight"}};
  for (const auto& [a, b] : mlp)
    if (rest == a) return layer + b;
  if (s == ExternalSchema::ttt_pytorch) {
    static const std::vector<std::pair<std::string, std::string>> fixed = {
        {"seq_norm.weight", "seq_norm.weight"},    {"ffn_norm.weight", "ffn_norm.weight"},
        {"pre_conv_norm.weight", "conv.norm.weight"}, {"pre_conv.weight", "conv.conv.weight"},
        {"pre_conv.bias", "conv.conv.bias"}};
    for (const auto& [a, b] : fixed)
      if (rest == a) return layer + b;
    if (rest.rfind("mixer.", 0) == 0) return layer + "seq_modeling_block." + ttt_mixer_name(rest.substr(6));
  } else {
    static const std::vector<std::pair<std::string, std::string>> fixed = {
        {"seq_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"mixer.wq.weight", "self_attn.q_proj.weight"}, {"mixer.wk.weight", "self_attn.k_proj.weight"},
        {"mixer.wv.weight", "self_attn.v_proj.weight"}, {"mixer.wo.weight", "self_attn.o_proj.weight"}};
    for (const auto& [a, b] : fixed)
      if (rest == a) return layer + b;
  }
  return "";
}

// The external shape: nn.Conv1d weights carry a middle dim of 1, the eta gate is a stack of
// Linear(width, 1) (weight [1, width], bias [1]) per head.
Shape external_shape(const std::string& ours, const Shape& s) {
  auto ends_with = [&](const char* tail) { return ours.ends_with(tail); };
  if (ends_with("pre_conv.weight") || ends_with("conv_q.weight") || ends_with("conv_k.weight")) return {s[0], 1, s[1]};
  if (ends_with("learnable_ttt_lr_weight")) return {s[0], 1, s[1]};
  if (ends_with("learnable_ttt_lr_bias")) return {s[0], 1};
  return s;
}

// q/k rows of one projection: [nh * f, D] with rows (h, i, j) -> (h, j, i), i < f/2, j < 2; `inverse` undoes it.
Tensor permute_rope_rows(const Tensor& w, int64_t nh, bool inverse) {
  const int64_t f = w.size(0) / nh, D = w.size(1);
  Shape in = inverse ? Shape{nh, 2, f / 2, D} : Shape{nh, f / 2, 2, D};
  return w.reshape(in).permute({0, 2, 1, 3}).contiguous().reshape({nh * f, D});
}

}  // namespace

const char* schema_name(ExternalSchema s) { return s == ExternalSchema::ttt_pytorch ? "ttt-pytorch" : "hf-llama"; }

ExternalSchema external_schema_for(const ModelConfig& m) {
  if (m.mixer == "linear_attention")
    cannot("model.mixer", m.mixer, "neither the official TTT model nor HF Llama has linear attention");
  if (m.mixer == "attention") {
    if (m.backbone != "transformer")
      cannot("model.backbone", m.backbone, "HF Llama (the schema of Transformer++) has no pre-convolution; only "
                                           "backbone=transformer attention models export");
    if (m.window > 0)
      cannot("model.window", std::to_string(m.window), "HF Llama attends to the whole causal context (no sliding window)");
    return ExternalSchema::hf_llama;
  }
  if (m.mixer != "ttt_linear" && m.mixer != "ttt_mlp") cannot("model.mixer", m.mixer, "unknown mixer");
  check_official_ttt(m);
  return ExternalSchema::ttt_pytorch;
}

std::vector<ExternalTensor> external_tensors(ExternalSchema s, const ModelConfig& m,
                                             const std::vector<std::pair<std::string, Tensor>>& params) {
  (void)m;
  std::vector<ExternalTensor> out;
  for (const auto& [name, t] : params) {
    ExternalTensor e;
    e.ours = name;
    e.theirs = external_name(s, name);
    if (e.theirs.empty())
      throw std::logic_error(std::string("export: parameter '") + name + "' has no place in the " + schema_name(s) + " schema");
    e.our_shape = t.shape();
    e.their_shape = external_shape(name, t.shape());
    e.rope_permute = s == ExternalSchema::hf_llama &&
                     (e.theirs.find("self_attn.q_proj") != std::string::npos || e.theirs.find("self_attn.k_proj") != std::string::npos);
    out.push_back(std::move(e));
  }
  return out;
}

Tensor to_external(const ExternalTensor& e, const Tensor& ours, const ModelConfig& m) {
  Tensor t = ours.detach().to(cpu()).contiguous();
  if (e.rope_permute) t = permute_rope_rows(t, m.n_heads, /*inverse=*/false);
  return t.reshape(e.their_shape).contiguous();
}

Tensor from_external(const ExternalTensor& e, const Tensor& theirs, const ModelConfig& m) {
  Tensor t = theirs.detach().to(cpu()).contiguous().reshape(e.our_shape);
  if (e.rope_permute) t = permute_rope_rows(t, m.n_heads, /*inverse=*/true);
  return t.contiguous();
}

nlohmann::json external_config_json(ExternalSchema s, const ModelConfig& m, int bos_id, int eos_id) {
  auto id = [](int v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
  nlohmann::json j = {{"vocab_size", m.vocab_size},
                      {"hidden_size", m.d_model},
                      {"intermediate_size", m.d_ff},
                      {"num_hidden_layers", m.n_layers},
                      {"num_attention_heads", m.n_heads},
                      {"hidden_act", "silu"},
                      {"max_position_embeddings", m.max_seq_len},
                      {"initializer_range", m.init_std},
                      {"rms_norm_eps", m.norm_eps},
                      {"pad_token_id", nullptr},
                      {"bos_token_id", id(bos_id)},
                      {"eos_token_id", id(eos_id)},
                      {"pretraining_tp", 1},
                      {"tie_word_embeddings", m.tie_embeddings},
                      {"rope_theta", m.rope_theta},
                      {"torch_dtype", "float32"}};
  if (s == ExternalSchema::hf_llama) {
    j.update({{"architectures", nlohmann::json::array({"LlamaForCausalLM"})},
              {"model_type", "llama"},
              {"num_key_value_heads", m.n_heads},
              {"head_dim", m.head_dim()},
              {"rope_scaling", nullptr},
              {"attention_bias", false},
              {"attention_dropout", 0.0},
              {"mlp_bias", false},
              {"use_cache", true}});
  } else {
    const bool mamba = m.backbone == "mamba";
    j.update({{"architectures", nlohmann::json::array({"TTTForCausalLM"})},
              {"model_type", "ttt"},
              {"use_cache", false},
              {"ttt_layer_type", m.mixer == "ttt_linear" ? "linear" : "mlp"},
              {"ttt_base_lr", ttt_base_lr(m)},
              {"mini_batch_size", m.ttt.mini_batch},
              {"pre_conv", mamba},
              {"share_qk", mamba},
              {"use_gate", mamba},
              {"conv_kernel", m.conv_width},
              // Its meaning differs from ours (a number of segments, not mini-batches per group) and it
              // only saves memory in training: the official default.
              {"scan_checkpoint_group_size", 0}});
  }
  return j;
}

namespace {

// A typed read of config.json key `k` with a default, naming the file and key on a wrong type.
template <class T> T get_or(const nlohmann::json& j, const std::string& k, T def, const std::string& origin) {
  if (!j.contains(k) || j[k].is_null()) return def;
  try {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!j[k].is_number_integer()) throw std::invalid_argument("not an integer");
    } else if constexpr (std::is_same_v<T, double>) {
      if (!j[k].is_number()) throw std::invalid_argument("not a number");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!j[k].is_boolean()) throw std::invalid_argument("not true/false");
    } else {
      if (!j[k].is_string()) throw std::invalid_argument("not a string");
    }
    return j[k].get<T>();
  } catch (const std::exception& e) {
    throw std::invalid_argument(origin + ": key '" + k + "' = " + j[k].dump() + ": " + e.what());
  }
}

int64_t required_int(const nlohmann::json& j, const std::string& k, const std::string& origin) {
  if (!j.contains(k)) throw std::invalid_argument(origin + ": key '" + k + "' is missing");
  return get_or<int64_t>(j, k, 0, origin);
}

}  // namespace

ModelConfig model_config_from_external(const nlohmann::json& j, const std::string& origin, ModelConfig m) {
  if (!j.is_object()) throw std::invalid_argument(origin + ": not a JSON object");
  const std::string type = get_or<std::string>(j, "model_type", "", origin);
  if (type != "ttt" && type != "llama")
    throw std::invalid_argument(origin + ": model_type '" + type + "' (expected \"ttt\", the official TTT model, or \"llama\")");
  const bool llama = type == "llama";
  auto refuse = [&](const std::string& key, const std::string& why) {
    throw std::invalid_argument(origin + ": " + key + " = " + (j.contains(key) ? j[key].dump() : "(default)") + ": " + why);
  };
  m.vocab_size = required_int(j, "vocab_size", origin);
  m.d_model = required_int(j, "hidden_size", origin);
  m.d_ff = required_int(j, "intermediate_size", origin);
  m.n_layers = required_int(j, "num_hidden_layers", origin);
  m.n_heads = required_int(j, "num_attention_heads", origin);
  if (get_or<std::string>(j, "hidden_act", "silu", origin) != "silu") refuse("hidden_act", "our MLP is SwiGLU with silu");
  m.max_seq_len = get_or<int64_t>(j, "max_position_embeddings", 2048, origin);
  m.init_std = get_or<double>(j, "initializer_range", 0.02, origin);
  m.norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, origin);
  m.rope_theta = get_or<double>(j, "rope_theta", 10000.0, origin);
  // TTTConfig ties by default, LlamaConfig does not.
  m.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", !llama, origin);
  if (llama) {
    m.mixer = "attention";
    m.backbone = "transformer";
    m.window = 0;
    if (get_or<int64_t>(j, "num_key_value_heads", m.n_heads, origin) != m.n_heads)
      refuse("num_key_value_heads", "grouped-query attention is not supported (it must equal num_attention_heads)");
    if (m.n_heads <= 0 || m.d_model % m.n_heads != 0) refuse("num_attention_heads", "must divide hidden_size");
    if (get_or<int64_t>(j, "head_dim", m.d_model / m.n_heads, origin) != m.d_model / m.n_heads)
      refuse("head_dim", "must be hidden_size / num_attention_heads");
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) refuse("rope_scaling", "RoPE scaling is not supported");
    if (get_or<bool>(j, "attention_bias", false, origin)) refuse("attention_bias", "our attention has no biases");
    if (get_or<bool>(j, "mlp_bias", false, origin)) refuse("mlp_bias", "our MLP has no biases");
  } else {
    const std::string kind = get_or<std::string>(j, "ttt_layer_type", "linear", origin);
    if (kind != "linear" && kind != "mlp") refuse("ttt_layer_type", "expected \"linear\" or \"mlp\"");
    m.mixer = kind == "linear" ? "ttt_linear" : "ttt_mlp";
    const bool pre_conv = get_or<bool>(j, "pre_conv", false, origin), share_qk = get_or<bool>(j, "share_qk", false, origin),
               gate = get_or<bool>(j, "use_gate", false, origin);
    if (pre_conv != share_qk || share_qk != gate)
      refuse("pre_conv", "pre_conv, share_qk and use_gate must be all true (Mamba backbone) or all false "
                         "(Transformer backbone); got pre_conv " + std::string(pre_conv ? "true" : "false") +
                             ", share_qk " + (share_qk ? "true" : "false") + ", use_gate " + (gate ? "true" : "false"));
    m.backbone = pre_conv ? "mamba" : "transformer";
    m.conv_width = get_or<int64_t>(j, "conv_kernel", 4, origin);
    m.ttt.mini_batch = get_or<int64_t>(j, "mini_batch_size", 16, origin);
    // Keep `base`'s setting when it means the same value (-1 = our default for the mixer).
    const double base_lr = get_or<double>(j, "ttt_base_lr", 1.0, origin);
    if (ttt_base_lr(m) != base_lr) m.ttt.base_lr = base_lr;
    // The official layer (see check_official_ttt); eps 1e-6 is fixed there.
    m.ttt.ln_residual = m.ttt.learnable_w0 = m.ttt.learnable_lr = m.ttt.learnable_token_idx = true;
    m.ttt.token_idx_mean = m.ttt.rope = m.ttt.inner_bias = true;
    m.ttt.mlp_expansion = 4;
    m.ttt.ln_eps = 1e-6;
    if (m.norm_eps != 1e-6)
      refuse("rms_norm_eps", "the official post_norm keeps eps 1e-6 while ours follows rms_norm_eps; only 1e-6 imports");
  }
  try {
    validate(m);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(origin + ": " + e.what());
  }
  return m;
}

}  // namespace ttt
