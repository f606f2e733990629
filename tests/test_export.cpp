// tests/test_export.cpp — `ttt export` / `ttt import` (trainer/export.h): the exported names and
// shapes are exactly those of the official ttt-lm-pytorch model (written out here from ttt.py) and
// of HF Llama; values keep their layout (conv [D, 1, k], the eta gate [nh, 1, D], Llama q/k rows
// permuted to rotate-half order, checked element by element); export -> import is bit-exact and
// export -> import -> export gives the same bytes; a model neither schema expresses, and a broken
// or foreign export directory, are refused naming the key or tensor; the CLI commands work.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/data_test_util.h"
#include "tests/export_test_util.h"
#include "tests/train_test_util.h"
#include "tests/trainer_test_util.h"
#include "layers/ttt_layer.h"
#include "trainer/export.h"
#include "trainer/safetensors.h"

using namespace ttt;
using namespace ttt::testing;
namespace fs = std::filesystem;

namespace {

using NameShapes = std::set<std::pair<std::string, std::vector<int64_t>>>;

NameShapes exported_names(const std::string& dir) {
  NameShapes out;
  SafetensorsReader r(dir + "/model.safetensors");
  for (const auto& [n, e] : r.entries()) out.insert({n, e.shape.vec()});
  return out;
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(std::ifstream(path)); }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Exports `cfg` (perturbed weights) from a fresh checkpoint; returns the export directory.
std::string export_tiny(const RunConfig& cfg, const std::string& name, std::unique_ptr<LanguageModel>* model = nullptr,
                        std::map<std::string, std::string> extras = {}) {
  const std::string base = tmp_path("export_" + name);
  fs::remove_all(base);
  auto m = write_tiny_checkpoint(cfg, base + "/ckpt.h5", std::move(extras));
  export_safetensors(base + "/ckpt.h5", base + "/out", false);
  if (model) *model = std::move(m);
  return base;
}

}  // namespace

TEST_CASE("TTT-Linear, Mamba backbone: the names and shapes of ttt.py's TTTForCausalLM") {
  const auto cfg = tiny_export_config("ttt_linear", "mamba", {"model.n_layers=1"});
  const std::string base = export_tiny(cfg, "names_linear");
  // TTTModel.embed_tokens / layers.0.{conv (Conv: norm, conv), seq_norm, seq_modeling_block (TTTLinear), ffn_norm,
  // mlp (SwiGluMLP)} / norm; tied head not stored. D 16, nh 2, f 8, K 4, k 4, ff 24.
  const std::string L = "model.layers.0.", S = L + "seq_modeling_block.";
  const NameShapes expected = {
      {"model.embed_tokens.weight", {40, 16}}, {"model.norm.weight", {16}},
      {L + "conv.norm.weight", {16}},          {L + "conv.conv.weight", {16, 1, 4}}, {L + "conv.conv.bias", {16}},
      {L + "seq_norm.weight", {16}},           {L + "ffn_norm.weight", {16}},
      {L + "mlp.gate_proj.weight", {24, 16}},  {L + "mlp.up_proj.weight", {24, 16}}, {L + "mlp.down_proj.weight", {16, 24}},
      {S + "q_proj.weight", {16, 16}},         {S + "v_proj.weight", {16, 16}},      {S + "o_proj.weight", {16, 16}},
      {S + "g_proj.weight", {16, 16}},         {S + "conv_q.weight", {16, 1, 4}},    {S + "conv_q.bias", {16}},
      {S + "conv_k.weight", {16, 1, 4}},       {S + "conv_k.bias", {16}},
      {S + "learnable_ttt_lr_weight", {2, 1, 16}}, {S + "learnable_ttt_lr_bias", {2, 1}},
      {S + "learnable_token_idx", {4}},        {S + "ttt_norm_weight", {2, 8}},      {S + "ttt_norm_bias", {2, 8}},
      {S + "post_norm.weight", {16}},          {S + "post_norm.bias", {16}},
      {S + "W1", {2, 8, 8}},                   {S + "b1", {2, 1, 8}}};
  CHECK(exported_names(base + "/out") == expected);

  const auto j = read_json(base + "/out/config.json");
  CHECK(j["model_type"] == "ttt");
  CHECK(j["architectures"].dump() == R"(["TTTForCausalLM"])");
  CHECK(j["ttt_layer_type"] == "linear");
  CHECK(j["hidden_size"] == 16);
  CHECK(j["intermediate_size"] == 24);
  CHECK(j["num_hidden_layers"] == 1);
  CHECK(j["num_attention_heads"] == 2);
  CHECK(j["mini_batch_size"] == 4);
  CHECK(j["ttt_base_lr"] == 1.0);
  CHECK(j["pre_conv"] == true);
  CHECK(j["share_qk"] == true);
  CHECK(j["use_gate"] == true);
  CHECK(j["conv_kernel"] == 4);
  CHECK(j["tie_word_embeddings"] == true);
  CHECK(j["max_position_embeddings"] == 32);
  CHECK(j["bos_token_id"].is_null());  // no tokenizer in this checkpoint
  CHECK(j["ttt_checkpoint"]["step"] == 7);
  CHECK(j["ttt_checkpoint"]["config_yaml"] == dump_config(cfg));
  CHECK(SafetensorsReader(base + "/out/model.safetensors").metadata().at("format") == "pt");
  CHECK_FALSE(fs::exists(base + "/out/tokenizer.model"));
  fs::remove_all(base);
}

TEST_CASE("TTT-MLP, Transformer backbone: separate q/k projections, no convs or gate, two inner layers") {
  const auto cfg = tiny_export_config("ttt_mlp", "transformer", {"model.n_layers=1", "model.tie_embeddings=false"});
  const std::string base = export_tiny(cfg, "names_mlp");
  const std::string L = "model.layers.0.", S = L + "seq_modeling_block.";
  const NameShapes expected = {
      {"model.embed_tokens.weight", {40, 16}}, {"model.norm.weight", {16}},             {"lm_head.weight", {40, 16}},
      {L + "seq_norm.weight", {16}},           {L + "ffn_norm.weight", {16}},
      {L + "mlp.gate_proj.weight", {24, 16}},  {L + "mlp.up_proj.weight", {24, 16}},    {L + "mlp.down_proj.weight", {16, 24}},
      {S + "q_proj.weight", {16, 16}},         {S + "k_proj.weight", {16, 16}},         {S + "v_proj.weight", {16, 16}},
      {S + "o_proj.weight", {16, 16}},
      {S + "learnable_ttt_lr_weight", {2, 1, 16}}, {S + "learnable_ttt_lr_bias", {2, 1}},
      {S + "learnable_token_idx", {4}},        {S + "ttt_norm_weight", {2, 8}},         {S + "ttt_norm_bias", {2, 8}},
      {S + "post_norm.weight", {16}},          {S + "post_norm.bias", {16}},
      {S + "W1", {2, 8, 32}},                  {S + "b1", {2, 1, 32}},                  {S + "W2", {2, 32, 8}},
      {S + "b2", {2, 1, 8}}};
  CHECK(exported_names(base + "/out") == expected);
  const auto j = read_json(base + "/out/config.json");
  CHECK(j["ttt_layer_type"] == "mlp");
  CHECK(j["ttt_base_lr"] == 0.1);  // our default for TTT-MLP, written out (TTTConfig's default is 1.0)
  CHECK(j["pre_conv"] == false);
  CHECK(j["share_qk"] == false);
  CHECK(j["use_gate"] == false);
  CHECK(j["tie_word_embeddings"] == false);
  fs::remove_all(base);
}

TEST_CASE("values keep their layout: convs [D, 1, k], the eta gate [nh, 1, D], inner weights as they are") {
  const auto cfg = tiny_export_config("ttt_mlp", "mamba");
  std::unique_ptr<LanguageModel> m;
  const std::string base = export_tiny(cfg, "layout", &m);
  SafetensorsReader r(base + "/out/model.safetensors");
  std::map<std::string, Tensor> ours;
  for (const auto& [n, t] : m->named_parameters()) ours[n] = t.detach();
  auto at = [&](const std::string& name) { return r.read(name); };
  const std::string S = "model.layers.1.seq_modeling_block.";
  Tensor conv = at(S + "conv_k.weight"), mine = ours["blocks.1.mixer.conv_k.weight"];
  for (int64_t c : {0, 7, 15})
    for (int64_t j = 0; j < 4; ++j) CHECK(conv.data<float>()[c * 4 + j] == mine.data<float>()[c * 4 + j]);
  CHECK(same_bits(at(S + "learnable_ttt_lr_weight").reshape({2, 16}), ours["blocks.1.mixer.learnable_ttt_lr_weight"]));
  CHECK(same_bits(at(S + "learnable_ttt_lr_bias").reshape({2}), ours["blocks.1.mixer.learnable_ttt_lr_bias"]));
  CHECK(same_bits(at(S + "W2"), ours["blocks.1.mixer.inner.W2"]));
  CHECK(same_bits(at("model.layers.0.conv.conv.weight").reshape({16, 4}), ours["blocks.0.pre_conv.weight"]));
  CHECK(same_bits(at("model.layers.0.mlp.gate_proj.weight"), ours["blocks.0.mlp.w1.weight"]));
  CHECK(same_bits(at("model.layers.0.mlp.up_proj.weight"), ours["blocks.0.mlp.w3.weight"]));
  CHECK(same_bits(at("model.layers.0.mlp.down_proj.weight"), ours["blocks.0.mlp.w2.weight"]));
  fs::remove_all(base);
}

TEST_CASE("Transformer++ exports as HF Llama: names, config, and q/k rows in rotate-half order per head") {
  const auto cfg = tiny_export_config("attention", "transformer", {"model.n_layers=1", "model.rope_theta=500000"});
  std::unique_ptr<LanguageModel> m;
  const std::string base = export_tiny(cfg, "llama", &m);
  const std::string L = "model.layers.0.";
  const NameShapes expected = {
      {"model.embed_tokens.weight", {40, 16}}, {"model.norm.weight", {16}},
      {L + "input_layernorm.weight", {16}},    {L + "post_attention_layernorm.weight", {16}},
      {L + "self_attn.q_proj.weight", {16, 16}}, {L + "self_attn.k_proj.weight", {16, 16}},
      {L + "self_attn.v_proj.weight", {16, 16}}, {L + "self_attn.o_proj.weight", {16, 16}},
      {L + "mlp.gate_proj.weight", {24, 16}},  {L + "mlp.up_proj.weight", {24, 16}},    {L + "mlp.down_proj.weight", {16, 24}}};
  CHECK(exported_names(base + "/out") == expected);
  const auto j = read_json(base + "/out/config.json");
  CHECK(j["model_type"] == "llama");
  CHECK(j["architectures"].dump() == R"(["LlamaForCausalLM"])");
  CHECK(j["num_key_value_heads"] == 2);
  CHECK(j["head_dim"] == 8);
  CHECK(j["rope_theta"] == 500000.0);
  CHECK(j["attention_bias"] == false);
  CHECK(j["hidden_act"] == "silu");

  // Head h, pair i, element j: our row h*8 + 2i + j is their row h*8 + j*4 + i; v is not permuted.
  SafetensorsReader r(base + "/out/model.safetensors");
  std::map<std::string, Tensor> ours;
  for (const auto& [n, t] : m->named_parameters()) ours[n] = t.detach();
  for (const char* which : {"q", "k"}) {
    Tensor theirs = r.read(L + "self_attn." + which + "_proj.weight");
    Tensor mine = ours[std::string("blocks.0.mixer.w") + which + ".weight"];
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 4; ++i)
        for (int jj = 0; jj < 2; ++jj)
          for (int col : {0, 5, 15})
            CHECK(theirs.data<float>()[(h * 8 + jj * 4 + i) * 16 + col] == mine.data<float>()[(h * 8 + 2 * i + jj) * 16 + col]);
  }
  CHECK(same_bits(r.read(L + "self_attn.v_proj.weight"), ours["blocks.0.mixer.wv.weight"]));
  CHECK(same_bits(r.read(L + "input_layernorm.weight"), ours["blocks.0.seq_norm.weight"]));
  fs::remove_all(base);
}

TEST_CASE("export -> import is bit-exact (parameters, config, tokenizer, step), and export again gives the same bytes") {
  TempDir tok_dir;
  const std::string tokenizer = read_file(train_tiny_tokenizer(tok_dir));
  struct Case {
    std::string name, mixer, backbone;
    std::vector<std::string> extra;
  };
  const std::vector<Case> cases = {
      {"linear_mamba", "ttt_linear", "mamba", {"model.ttt.base_lr=0.7", "train.lr=3e-3", "name=my run"}},
      {"mlp_transformer", "ttt_mlp", "transformer", {"model.tie_embeddings=false", "model.ttt.mini_batch=8"}},
      {"llama_tied", "attention", "transformer", {}},
      {"llama_untied", "attention", "transformer", {"model.tie_embeddings=false", "model.rope_theta=500000"}}};
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto cfg = tiny_export_config(c.mixer, c.backbone, c.extra);
    std::unique_ptr<LanguageModel> m;
    const std::string base = export_tiny(cfg, "rt_" + c.name, &m, {{"tokenizer.model", tokenizer}});
    CHECK(read_bytes(base + "/out/tokenizer.model") == tokenizer);
    const auto j = read_json(base + "/out/config.json");
    CHECK(j["bos_token_id"] == 1);
    CHECK(j["eos_token_id"] == 2);

    const ImportResult imp = import_safetensors(base + "/out", base + "/imported.h5", false);
    CHECK(imp.tensors == static_cast<int64_t>(m->named_parameters().size()));
    CHECK(imp.parameters == m->num_parameters());
    const CheckpointMeta meta = read_checkpoint_meta(base + "/imported.h5");
    CHECK(meta.config_yaml == dump_config(cfg));
    CHECK(meta.step == 7);
    CHECK(meta.tokens == 7 * 128);
    CHECK(meta.extras.at("tokenizer.model") == tokenizer);
    LanguageModel back(cfg.model);
    load_checkpoint(base + "/imported.h5", back.named_parameters(), nullptr);
    const auto a = m->named_parameters(), b = back.named_parameters();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(a[i].first);
      CHECK(same_bits(a[i].second, b[i].second));
    }
    export_safetensors(base + "/imported.h5", base + "/again", false);
    for (const char* f : {"model.safetensors", "config.json", "tokenizer.model"})
      CHECK_MESSAGE(read_bytes(base + "/again/" + f) == read_bytes(base + "/out/" + f), f);
    fs::remove_all(base);
  }
}

TEST_CASE("a model neither schema expresses is refused, naming the key") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"model.mixer=linear_attention"}, "model.mixer=linear_attention"},
      {{"model.mixer=attention", "model.backbone=mamba"}, "model.backbone=mamba"},
      {{"model.mixer=attention", "model.backbone=transformer", "model.window=8"}, "model.window=8"},
      {{"model.ttt.mini_batch=-1"}, "model.ttt.mini_batch=-1"},
      {{"model.ttt.ln_residual=false"}, "model.ttt.ln_residual=false"},
      {{"model.ttt.learnable_w0=false"}, "model.ttt.learnable_w0=false"},
      {{"model.ttt.learnable_lr=false"}, "model.ttt.learnable_lr=false"},
      {{"model.ttt.learnable_token_idx=false"}, "model.ttt.learnable_token_idx=false"},
      {{"model.ttt.token_idx_mean=false"}, "model.ttt.token_idx_mean=false"},
      {{"model.ttt.rope=false"}, "model.ttt.rope=false"},
      {{"model.ttt.inner_bias=false"}, "model.ttt.inner_bias=false"},
      {{"model.mixer=ttt_mlp", "model.ttt.mlp_expansion=2"}, "model.ttt.mlp_expansion=2"},
      {{"model.ttt.ln_eps=1e-5"}, "model.ttt.ln_eps=1e-05"},
      {{"model.norm_eps=1e-5"}, "model.norm_eps=1e-05"}};
  for (const auto& [sets, key] : cases) {
    CAPTURE(key);
    RunConfig cfg = load_config("", sets);
    CHECK(error_message([&] { external_schema_for(cfg.model); }).find(key) != std::string::npos);
  }
  // A Transformer++ with another norm eps is still a Llama (rms_norm_eps): only the TTT post_norm pins 1e-6.
  CHECK(external_schema_for(load_config("", {"model.mixer=attention", "model.backbone=transformer", "model.norm_eps=1e-5"}).model) ==
        ExternalSchema::hf_llama);

  // Through export: the checkpoint named, nothing written.
  const auto cfg = tiny_export_config("linear_attention", "mamba");
  const std::string base = tmp_path("export_refused");
  fs::remove_all(base);
  write_tiny_checkpoint(cfg, base + "/ckpt.h5");
  const std::string err = error_message([&] { export_safetensors(base + "/ckpt.h5", base + "/out", false); });
  CHECK(err.find("cannot export " + base + "/ckpt.h5") != std::string::npos);
  CHECK(err.find("linear attention") != std::string::npos);
  CHECK_FALSE(fs::exists(base + "/out"));
  fs::remove_all(base);
}

TEST_CASE("export and import refuse to replace files unless forced") {
  const auto cfg = tiny_export_config("ttt_linear", "transformer", {"model.n_layers=1"});
  const std::string base = export_tiny(cfg, "force");
  CHECK(error_message([&] { export_safetensors(base + "/ckpt.h5", base + "/out", false); }).find("already holds model.safetensors") !=
        std::string::npos);
  CHECK_NOTHROW(export_safetensors(base + "/ckpt.h5", base + "/out", true));
  CHECK(error_message([&] { import_safetensors(base + "/out", base + "/ckpt.h5", false); }).find("already exists") !=
        std::string::npos);
  CHECK_NOTHROW(import_safetensors(base + "/out", base + "/ckpt.h5", true));
  fs::remove_all(base);
}

TEST_CASE("import: config.json of the schema alone (another tool's export), bf16 weights, sharded files") {
  // The official keys only; TTTConfig defaults for what is missing (tie true, mini_batch 16 ...).
  const auto cfg = tiny_export_config("ttt_linear", "mamba", {"model.ttt.mini_batch=16"});
  std::unique_ptr<LanguageModel> m;
  const std::string base = export_tiny(cfg, "foreign", &m);
  nlohmann::json j = read_json(base + "/out/config.json");
  j.erase("ttt_checkpoint");
  j.erase("mini_batch_size");
  j.erase("tie_word_embeddings");
  std::ofstream(base + "/out/config.json") << j.dump();
  // Weights in bfloat16, split over two shards with an index.
  SafetensorsReader r(base + "/out/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> first, second;
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [n, e] : r.entries()) {
    const bool in_first = n.find("layers.1.") == std::string::npos;
    (in_first ? first : second).emplace_back(n, r.read(n).to(DType::bf16));
    index["weight_map"][n] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  fs::remove(base + "/out/model.safetensors");
  write_safetensors(base + "/out/model-00001-of-00002.safetensors", first);
  write_safetensors(base + "/out/model-00002-of-00002.safetensors", second);
  std::ofstream(base + "/out/model.safetensors.index.json") << index.dump();

  const ImportResult imp = import_safetensors(base + "/out", base + "/imported.h5", false);
  CHECK(imp.cfg.model.mixer == "ttt_linear");
  CHECK(imp.cfg.model.backbone == "mamba");
  CHECK(imp.cfg.model.ttt.mini_batch == 16);
  CHECK(imp.cfg.model.tie_embeddings == true);
  CHECK(imp.cfg.model.d_model == 16);
  CHECK(ttt_base_lr(imp.cfg.model) == 1.0);
  LanguageModel back(imp.cfg.model);
  load_checkpoint(base + "/imported.h5", back.named_parameters(), nullptr);
  const auto a = m->named_parameters(), b = back.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(same_bits(a[i].second.to(DType::bf16).to(DType::f32), b[i].second));
  }
  fs::remove_all(base);
}

TEST_CASE("import refuses a broken or foreign export, naming the tensor or key") {
  const auto cfg = tiny_export_config("ttt_linear", "mamba", {"model.n_layers=1"});
  const std::string base = export_tiny(cfg, "import_errors");
  const std::string dir = base + "/out", st = dir + "/model.safetensors";
  const std::string original_config = read_bytes(dir + "/config.json"), original_st = read_bytes(st);
  auto restore = [&] {
    std::ofstream(dir + "/config.json", std::ios::binary) << original_config;
    std::ofstream(st, std::ios::binary) << original_st;
  };
  auto rewrite_tensors = [&](const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
    SafetensorsReader r(st);
    std::vector<std::pair<std::string, Tensor>> all;
    for (const auto& [n, e] : r.entries()) all.emplace_back(n, r.read(n));
    edit(all);
    write_safetensors(st, all);
  };
  auto import_error = [&] { return error_message([&] { import_safetensors(dir, base + "/x.h5", true); }); };
  auto edit_config = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(original_config);
    edit(j);
    std::ofstream(dir + "/config.json") << j.dump();
  };
  const std::string W1 = "model.layers.0.seq_modeling_block.W1";

  rewrite_tensors([&](auto& all) { std::erase_if(all, [&](const auto& p) { return p.first == W1; }); });
  CHECK(import_error().find("tensor '" + W1 + "' is missing (our blocks.0.mixer.inner.W1") != std::string::npos);
  restore();
  rewrite_tensors([&](auto& all) {
    for (auto& p : all)
      if (p.first == W1) p.second = zeros({2, 8, 9});
  });
  CHECK(import_error().find("'" + W1 + "' has shape [2, 8, 9], the config needs [2, 8, 8]") != std::string::npos);
  restore();
  rewrite_tensors([&](auto& all) { all.emplace_back("model.layers.0.seq_modeling_block.W2", zeros({2})); });
  CHECK(import_error().find("has no place for: model.layers.0.seq_modeling_block.W2") != std::string::npos);
  restore();
  rewrite_tensors([&](auto& all) { all.emplace_back("lm_head.weight", zeros({40, 16})); });
  CHECK(import_error().find("lm_head.weight differs from model.embed_tokens.weight") != std::string::npos);
  restore();
  rewrite_tensors([&](auto& all) {  // old transformers versions saved RoPE tables: ignored
    all.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", zeros({4}));
  });
  CHECK(import_error().empty());
  fs::remove(base + "/x.h5");
  restore();

  edit_config([](auto& j) { j["hidden_size"] = 32; });
  CHECK(import_error().find("disagree with ttt_checkpoint.config_yaml (model.d_model: 16 -> 32)") != std::string::npos);
  edit_config([](auto& j) {
    j.erase("ttt_checkpoint");
    j["use_gate"] = false;
  });
  CHECK(import_error().find("pre_conv, share_qk and use_gate must be all true") != std::string::npos);
  edit_config([](auto& j) { j["model_type"] = "mamba"; });
  CHECK(import_error().find("model_type 'mamba'") != std::string::npos);
  edit_config([](auto& j) {
    j.erase("ttt_checkpoint");
    j["hidden_act"] = "gelu";
  });
  CHECK(import_error().find("hidden_act = \"gelu\"") != std::string::npos);
  edit_config([](auto& j) {
    j.erase("ttt_checkpoint");
    j.erase("num_hidden_layers");
  });
  CHECK(import_error().find("key 'num_hidden_layers' is missing") != std::string::npos);
  edit_config([](auto& j) {
    j = {{"model_type", "llama"}, {"vocab_size", 40},        {"hidden_size", 16},       {"intermediate_size", 24},
         {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 1}};
  });
  CHECK(import_error().find("num_key_value_heads = 1: grouped-query attention is not supported") != std::string::npos);
  edit_config([](auto& j) {
    j = {{"model_type", "llama"}, {"vocab_size", 40}, {"hidden_size", 16}, {"intermediate_size", 24},
         {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}};
  });
  CHECK(import_error().find("rope_scaling") != std::string::npos);
  std::ofstream(dir + "/config.json") << "{ not json";
  CHECK(import_error().find("config.json: not JSON") != std::string::npos);
  restore();
  fs::remove(st);
  CHECK(import_error().find("no model.safetensors") != std::string::npos);
  CHECK_FALSE(fs::exists(base + "/x.h5"));
  fs::remove_all(base);
}

TEST_CASE("the CLI: ttt export, ttt import, and their errors") {
  const auto cfg = tiny_export_config("ttt_mlp", "mamba", {"model.n_layers=1"});
  const std::string base = tmp_path("export_cli");
  fs::remove_all(base);
  write_tiny_checkpoint(cfg, base + "/ckpt.h5");
  auto ex = run_ttt("export --checkpoint " + base + "/ckpt.h5 --format safetensors --out " + base + "/out");
  REQUIRE_MESSAGE(ex.code == 0, ex.output);
  CHECK(ex.output.find("in the ttt-pytorch schema") != std::string::npos);
  CHECK(fs::exists(base + "/out/model.safetensors"));
  auto again = run_ttt("export --checkpoint " + base + "/ckpt.h5 --out " + base + "/out");
  CHECK(again.code == 1);
  CHECK(again.output.find("error: --out " + base + "/out already holds model.safetensors (pass --force") != std::string::npos);
  auto im = run_ttt("import --input " + base + "/out --out " + base + "/back.h5");
  REQUIRE_MESSAGE(im.code == 0, im.output);
  CHECK(im.output.find("ttt_mlp, mamba backbone") != std::string::npos);
  CHECK(run_ttt("export --checkpoint " + base + "/ckpt.h5 --format gguf --out " + base + "/x").code != 0);
  CHECK(run_ttt("import --input " + base + "/nowhere --out " + base + "/x.h5").code != 0);
  CHECK(run_ttt("export --help").output.find("--checkpoint") != std::string::npos);
  fs::remove_all(base);
}
