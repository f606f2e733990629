// trainer/cli_info.cpp — `ttt info`: the build, the devices, and (later) a config's parameter count.
#include <cstdio>

#include "kernels/backend.h"
#include "trainer/commands.h"

namespace ttt {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build and the visible devices");
  cmd->callback([]() {
    std::printf("ttt 0.1\n");
    std::printf("CUDA backend: %s\n", cuda_built() ? "built" : "not built");
    std::printf("CUDA devices: %d\n", cuda_device_count());
  });
}

}  // namespace ttt
