// trainer/main.cpp — the `ttt` command. Subcommands are registered by their own files
// (trainer/commands.h); any error they throw is printed as one line and exits non-zero.
#include <cstdio>
#include <exception>

#include "trainer/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ttt — train and evaluate Test-Time-Training language models (TTT-Linear, TTT-MLP) and baselines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ttt 0.1");
  ttt::add_info_command(app);
  ttt::add_config_command(app);
  ttt::add_data_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
