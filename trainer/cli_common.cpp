// trainer/cli_common.cpp — see cli_common.h.
#include "trainer/cli_common.h"

#include <filesystem>

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

Tokenizer tokenizer_for_checkpoint(const LoadedModel& m, const std::string& checkpoint,
                                   const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path)) throw std::invalid_argument("--tokenizer: '" + explicit_path + "' does not exist");
    return Tokenizer::load(explicit_path);
  }
  auto it = m.meta.extras.find("tokenizer.model");
  if (it != m.meta.extras.end()) return Tokenizer::from_bytes(it->second, checkpoint + " (stored tokenizer)");
  if (!m.cfg.data.tokenizer.empty() && fs::exists(m.cfg.data.tokenizer)) return Tokenizer::load(m.cfg.data.tokenizer);
  fs::path in_data = fs::path(m.cfg.data.dir) / "tokenizer.model";
  if (!m.cfg.data.dir.empty() && fs::exists(in_data)) return Tokenizer::load(in_data.string());
  throw std::invalid_argument("checkpoint '" + checkpoint +
                              "' holds no tokenizer and its data directory has none; pass --tokenizer FILE.model");
}

}  // namespace ttt
