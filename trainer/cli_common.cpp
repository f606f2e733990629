// trainer/cli_common.cpp — see cli_common.h.
#include "trainer/cli_common.h"

#include <filesystem>
#include <fstream>
#include <functional>

#include <unistd.h>

namespace fs = std::filesystem;

namespace ttt {

void ConfigArgs::add_to(CLI::App* cmd, bool required) {
  auto* c = cmd->add_option("--config,-c", path, "YAML config file (see configs/defaults.yaml for every key)");
  c->check(CLI::ExistingFile);
  if (required) c->required();
  cmd->add_option("--set", sets, "Override a config key: --set section.key=value (repeatable)");
}

Device device_from_option(const std::string& s) {
  Device d = parse_device(s);
  if (d.is_cuda() && !cuda_available())
    throw std::invalid_argument("--device " + s + ": " + (cuda_built() ? "no GPU is visible" : "this build has no CUDA backend"));
  return d;
}

LoadedModel load_model_from_checkpoint(const std::string& path, Device device) {
  LoadedModel m;
  std::string problem = checkpoint_problem(path);
  if (!problem.empty()) throw std::runtime_error("cannot use checkpoint: " + problem);
  m.meta = read_checkpoint_meta(path);
  m.cfg = load_config_string(m.meta.config_yaml, path + " (stored config)");
  m.model = std::make_unique<LanguageModel>(m.cfg.model);
  load_checkpoint(path, m.model->named_parameters(), nullptr);
  m.model->to(device);
  m.model->train(false);
  return m;
}

std::string tokenizer_for_checkpoint(const LoadedModel& m, const std::string& checkpoint,
                                     const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path)) throw std::invalid_argument("--tokenizer: '" + explicit_path + "' does not exist");
    return explicit_path;
  }
  auto it = m.meta.extras.find("tokenizer.model");
  if (it != m.meta.extras.end()) {
    // sentencepiece loads from a file: materialize the stored copy in the temp directory, named by
    // a hash of its bytes so that concurrent runs share it and never see a partial file.
    const std::string name = "ttt_tokenizer_" + std::to_string(std::hash<std::string>{}(it->second)) + ".model";
    const fs::path p = fs::temp_directory_path() / name;
    if (!fs::exists(p) || fs::file_size(p) != it->second.size()) {
      const fs::path tmp = p.string() + "." + std::to_string(::getpid()) + ".tmp";
      std::ofstream(tmp, std::ios::binary).write(it->second.data(), static_cast<std::streamsize>(it->second.size()));
      fs::rename(tmp, p);
    }
    return p.string();
  }
  if (!m.cfg.data.tokenizer.empty() && fs::exists(m.cfg.data.tokenizer)) return m.cfg.data.tokenizer;
  fs::path in_data = fs::path(m.cfg.data.dir) / "tokenizer.model";
  if (!m.cfg.data.dir.empty() && fs::exists(in_data)) return in_data.string();
  throw std::invalid_argument("checkpoint '" + checkpoint +
                              "' holds no tokenizer and its data directory has none; pass --tokenizer FILE.model");
}

}  // namespace ttt
