// trainer/cli_common.h — pieces shared by the `ttt train|eval|generate|bench|info` commands.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "data/cli_checks.h"

#include "data/tokenizer.h"
#include "layers/language_model.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

namespace ttt {

// `--config FILE` and repeatable `--set section.key=value`.
struct ConfigArgs {
  std::string path;
  std::vector<std::string> sets;
  void add_to(CLI::App* cmd, bool required);
  RunConfig load() const { return load_config(path, sets); }
};

// A model rebuilt from a checkpoint: its stored config, its parameters, on `device`.
struct LoadedModel {
  RunConfig cfg;
  CheckpointMeta meta;
  std::unique_ptr<LanguageModel> model;
};
LoadedModel load_model_from_checkpoint(const std::string& path, Device device);

// The sentencepiece model for a checkpoint: `explicit_path` if given, else the copy stored in the
// checkpoint (parsed from memory), else the run config's data.tokenizer or
// <data.dir>/tokenizer.model. Throws when none exists.
Tokenizer tokenizer_for_checkpoint(const LoadedModel& m, const std::string& checkpoint,
                                   const std::string& explicit_path);

// "cpu" / "cuda" / "cuda:1", or throws naming the option; checks the device is usable.
Device device_from_option(const std::string& s);

}  // namespace ttt
