// data/cli_data.cpp — `ttt tokenizer train`, `ttt data prepare`, `ttt data info` (to come).
#include <CLI/CLI.hpp>

namespace ttt {

void add_data_commands(CLI::App& app) { (void)app; }

}  // namespace ttt
