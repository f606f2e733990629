// trainer/main.cpp — the `ttt` command. Subcommands are registered by their own files
// (trainer/commands.h); any error they throw is printed as one line and exits non-zero.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "trainer/commands.h"

int main(int argc, char** argv) {
  // Under a file-size limit (ulimit -f) the kernel kills a process whose write crosses it; ignored,
  // the write fails with EFBIG instead and is reported like a full disk (file, reason, nothing
  // half-written left behind).
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"ttt — train and evaluate Test-Time-Training language models (TTT-Linear, TTT-MLP) and baselines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ttt 0.1");
  ttt::add_data_commands(app);
  ttt::add_train_command(app);
  ttt::add_eval_command(app);
  ttt::add_generate_command(app);
  ttt::add_bench_command(app);
  ttt::add_info_command(app);
  ttt::add_config_command(app);
  ttt::add_export_commands(app);
  // CLI11 reports an unknown first word as "A subcommand is required"; name it instead.
  std::string known;
  bool found = false;
  for (const auto* sub : app.get_subcommands({})) {
    known += (known.empty() ? "" : ", ") + sub->get_name();
    found |= argc > 1 && sub->get_name() == argv[1];
  }
  if (argc > 1 && argv[1][0] != '-' && !found) {
    std::fprintf(stderr, "error: unknown command '%s' (commands: %s; see ttt --help)\n", argv[1], known.c_str());
    return 1;
  }
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
