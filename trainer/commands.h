// trainer/commands.h — each part of the CLI registers its subcommands on the `ttt` app.
#pragma once

#include <CLI/CLI.hpp>

namespace ttt {

void add_info_command(CLI::App& app);        // trainer/cli_info.cpp:  ttt info
void add_data_commands(CLI::App& app);       // data/cli_data.cpp:     ttt tokenizer train, ttt data prepare|info
void add_train_command(CLI::App& app);       // trainer/cli_train.cpp: ttt train
void add_eval_command(CLI::App& app);        // trainer/cli_eval.cpp:  ttt eval
void add_generate_command(CLI::App& app);    // trainer/cli_generate.cpp: ttt generate
void add_bench_command(CLI::App& app);       // trainer/cli_bench.cpp: ttt bench
void add_config_command(CLI::App& app);      // trainer/cli_config.cpp: ttt config show|defaults
void add_export_commands(CLI::App& app);     // trainer/cli_export.cpp: ttt export, ttt import

}  // namespace ttt
