// trainer/export.cpp — see export.h.
#include "trainer/export.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

#include "data/tokenizer.h"
#include "layers/language_model.h"
#include "trainer/checkpoint.h"
#include "trainer/safetensors.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

constexpr const char* kWeights = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";
constexpr const char* kConfig = "config.json";
constexpr const char* kTokenizer = "tokenizer.model";

void write_file_atomic(const fs::path& path, const std::string& bytes) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw std::runtime_error("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// (bos, eos) of a sentencepiece model held in memory; (-1, -1) without one.
std::pair<int, int> special_ids(const std::string& tokenizer_blob, const fs::path& written_to) {
  if (tokenizer_blob.empty()) return {-1, -1};
  Tokenizer tok = Tokenizer::load(written_to.string());
  return {tok.bos_id(), tok.eos_id()};
}

// Every tensor of an export directory: one file, or the shards of an index (HF's sharded layout).
struct TensorFiles {
  std::vector<std::unique_ptr<SafetensorsReader>> files;
  std::map<std::string, const SafetensorsReader*> where;  // tensor name -> its file

  explicit TensorFiles(const fs::path& dir) {
    std::vector<std::string> names;
    if (fs::exists(dir / kWeights)) {
      names.push_back((dir / kWeights).string());
    } else if (fs::exists(dir / kIndex)) {
      nlohmann::json index;
      try {
        index = nlohmann::json::parse(read_file(dir / kIndex));
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error((dir / kIndex).string() + ": not JSON (" + e.what() + ")");
      }
      if (!index.contains("weight_map") || !index["weight_map"].is_object())
        throw std::runtime_error((dir / kIndex).string() + ": no \"weight_map\" object");
      std::set<std::string> shards;
      for (const auto& [t, f] : index["weight_map"].items()) shards.insert(f.get<std::string>());
      for (const auto& f : shards) names.push_back((dir / f).string());
    } else {
      throw std::runtime_error(dir.string() + ": no " + kWeights + " (nor " + kIndex + ")");
    }
    for (const auto& n : names) {
      files.push_back(std::make_unique<SafetensorsReader>(n));
      for (const auto& [t, e] : files.back()->entries())
        if (!where.emplace(t, files.back().get()).second) throw std::runtime_error(n + ": tensor '" + t + "' is in two files");
    }
  }
};

bool equal_bits(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * dtype_size(x.dtype())) == 0;
}

}  // namespace

ExportResult export_safetensors(const std::string& checkpoint, const std::string& out_dir, bool overwrite) {
  const std::string problem = checkpoint_problem(checkpoint);
  if (!problem.empty()) throw std::runtime_error("cannot export: " + problem);
  const CheckpointMeta meta = read_checkpoint_meta(checkpoint);
  const RunConfig cfg = load_config_string(meta.config_yaml, checkpoint + " (stored config)");
  ExportResult res;
  try {
    res.schema = external_schema_for(cfg.model);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("cannot export " + checkpoint + ": its model has " + e.what());
  }
  const fs::path dir(out_dir);
  if (!overwrite)
    for (const char* f : {kWeights, kConfig})
      if (fs::exists(dir / f))
        throw std::invalid_argument("--out " + out_dir + " already holds " + f + " (pass --force to replace it)");
  fs::create_directories(dir);

  LanguageModel model(cfg.model);
  const auto named = model.named_parameters();
  load_checkpoint(checkpoint, named, nullptr);
  std::vector<std::pair<std::string, Tensor>> out;
  const auto ext = external_tensors(res.schema, cfg.model, named);
  for (size_t i = 0; i < ext.size(); ++i) {
    out.emplace_back(ext[i].theirs, to_external(ext[i], named[i].second, cfg.model));
    res.parameters += named[i].second.numel();
  }
  res.tensors = static_cast<int64_t>(out.size());

  std::string tokenizer_blob;
  if (auto it = meta.extras.find(kTokenizer); it != meta.extras.end()) tokenizer_blob = it->second;
  if (!tokenizer_blob.empty()) {
    write_file_atomic(dir / kTokenizer, tokenizer_blob);
    res.files.push_back((dir / kTokenizer).string());
  }
  const auto [bos, eos] = special_ids(tokenizer_blob, dir / kTokenizer);
  nlohmann::json config = external_config_json(res.schema, cfg.model, bos, eos);
  config["ttt_checkpoint"] = {{"step", meta.step}, {"tokens", meta.tokens}, {"config_yaml", meta.config_yaml}};

  write_safetensors((dir / kWeights).string(), out, {{"format", "pt"}});
  res.files.push_back((dir / kWeights).string());
  write_file_atomic(dir / kConfig, config.dump(2) + "\n");
  res.files.push_back((dir / kConfig).string());
  return res;
}

ImportResult import_safetensors(const std::string& dir_arg, const std::string& out_checkpoint, bool overwrite) {
  const fs::path dir(dir_arg);
  if (!fs::is_directory(dir)) throw std::invalid_argument("--input " + dir_arg + " is not a directory");
  if (!overwrite && fs::exists(out_checkpoint))
    throw std::invalid_argument("--out " + out_checkpoint + " already exists (pass --force to replace it)");
  const std::string config_path = (dir / kConfig).string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(config_path + ": not JSON (" + e.what() + ")");
  }

  // Our own export carries our config; the schema's keys must still agree with it (an edited
  // config.json must not be silently overridden).
  ImportResult res;
  CheckpointMeta meta;
  if (j.contains("ttt_checkpoint") && j["ttt_checkpoint"].is_object() && j["ttt_checkpoint"].contains("config_yaml")) {
    const auto& t = j["ttt_checkpoint"];
    res.cfg = load_config_string(t["config_yaml"].get<std::string>(), config_path + " (ttt_checkpoint.config_yaml)");
    RunConfig from_keys = res.cfg;
    from_keys.model = model_config_from_external(j, config_path, res.cfg.model);
    const auto diff = config_differences(res.cfg, from_keys);
    if (!diff.empty())
      throw std::invalid_argument(config_path + ": its keys disagree with ttt_checkpoint.config_yaml (" + diff.front() +
                                  "); fix the key or delete \"ttt_checkpoint\" to import from the keys alone");
    meta.step = t.value("step", int64_t{0});
    meta.tokens = t.value("tokens", int64_t{0});
  } else {
    res.cfg.model = model_config_from_external(j, config_path, ModelConfig{});
    res.cfg.description = "imported from " + dir_arg;
  }
  try {
    res.schema = external_schema_for(res.cfg.model);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(config_path + ": " + e.what());
  }

  // Our names and shapes, in registration order (the model is only needed for them).
  std::vector<ExternalTensor> ext;
  {
    LanguageModel model(res.cfg.model);
    ext = external_tensors(res.schema, res.cfg.model, model.named_parameters());
  }
  TensorFiles files(dir);
  std::set<std::string> unused;
  for (const auto& [name, f] : files.where) unused.insert(name);
  NamedTensors params;
  Tensor embed_theirs;
  for (const auto& e : ext) {
    auto it = files.where.find(e.theirs);
    if (it == files.where.end())
      throw std::invalid_argument(dir_arg + ": tensor '" + e.theirs + "' is missing (our " + e.ours + ", shape " +
                                  e.their_shape.str() + ")");
    const auto& entry = it->second->entries().at(e.theirs);
    if (entry.shape != e.their_shape)
      throw std::invalid_argument(it->second->path() + ": tensor '" + e.theirs + "' has shape " + entry.shape.str() +
                                  ", the config needs " + e.their_shape.str());
    Tensor t = it->second->read(e.theirs);
    if (!is_floating(t.dtype()))
      throw std::invalid_argument(it->second->path() + ": tensor '" + e.theirs + "' is " + entry.dtype + ", not floating point");
    t = t.to(DType::f32);
    if (e.ours == "embed.weight") embed_theirs = t;
    params.emplace_back(e.ours, from_external(e, t, res.cfg.model));
    res.parameters += t.numel();
    unused.erase(e.theirs);
  }
  // Tolerated extras: RoPE tables some transformers versions saved, and a tied head stored twice.
  for (auto it = unused.begin(); it != unused.end();) {
    const bool inv_freq = it->ends_with(".rotary_emb.inv_freq");
    bool tied_copy = false;
    if (*it == "lm_head.weight" && res.cfg.model.tie_embeddings) {
      if (!equal_bits(files.where.at(*it)->read(*it).to(DType::f32), embed_theirs))
        throw std::invalid_argument(dir_arg + ": tie_word_embeddings is true but lm_head.weight differs from "
                                              "model.embed_tokens.weight");
      tied_copy = true;
    }
    it = inv_freq || tied_copy ? unused.erase(it) : std::next(it);
  }
  if (!unused.empty()) {
    std::string list;
    int shown = 0;
    for (const auto& n : unused)
      if (shown++ < 5) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument(dir_arg + ": " + std::to_string(unused.size()) + " tensor(s) the " + schema_name(res.schema) +
                                " model of config.json has no place for: " + list);
  }
  res.tensors = static_cast<int64_t>(params.size());

  meta.config_yaml = dump_config(res.cfg);
  if (fs::exists(dir / kTokenizer)) meta.extras[kTokenizer] = read_file(dir / kTokenizer);
  if (const auto parent = fs::path(out_checkpoint).parent_path(); !parent.empty()) fs::create_directories(parent);
  save_checkpoint(out_checkpoint, params, nullptr, meta);
  return res;
}

}  // namespace ttt
