// trainer/cli_config.cpp — `ttt config show` (the resolved config of a file + overrides, as
// `ttt train` would use it) and `ttt config defaults` (every key, documented).
#include <cstdio>

#include "trainer/commands.h"
#include "trainer/config.h"

namespace ttt {

void add_config_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("config", "Show a resolved config or the documented defaults");
  cmd->require_subcommand(1);

  auto* show = cmd->add_subcommand("show", "Print the resolved config (file + --set overrides)");
  static std::string path;
  static std::vector<std::string> sets;
  show->add_option("--config,-c", path, "YAML config file")->check(CLI::ExistingFile);
  show->add_option("--set", sets, "Override a key: --set section.key=value (repeatable)");
  show->callback([]() { std::fputs(dump_config(load_config(path, sets)).c_str(), stdout); });

  auto* defaults = cmd->add_subcommand("defaults", "Print every key with its default and meaning "
                                                   "(the content of configs/defaults.yaml)");
  defaults->callback([]() { std::fputs(defaults_yaml_with_docs().c_str(), stdout); });
}

}  // namespace ttt
