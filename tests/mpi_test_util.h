// tests/mpi_test_util.h — running programs under mpirun from tests (test_ddp_mpi*.cpp).
//
// When mpirun (or the MPI backend) is missing, mpi_ready() says so and returns false, and the
// tests pass without running, unless TTT_REQUIRE_MPI=1 (CI sets it: scripts/setup.sh installs
// openmpi-bin and libopenmpi-dev): then it fails. As root, OpenMPI needs
// OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1, which mpi_ready() sets.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "trainer/comm.h"

namespace ttt::testing {

struct Run {
  int code = -1;
  std::string output;
  double seconds = 0;
};

inline Run run(const std::string& cmd) {
  Run r;
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// True when MPI runs can be tested here; otherwise reports why (and fails if TTT_REQUIRE_MPI=1).
inline bool mpi_ready() {
  static int ready = -1;
  if (ready < 0) {
    std::string why;
    if (!ttt::mpi_built()) why = "ttt was built without MPI";
    else if (run("command -v mpirun").code != 0) why = "mpirun is not on PATH";
    ready = why.empty();
    if (!ready) {
      const char* req = std::getenv("TTT_REQUIRE_MPI");
      if (req && std::string(req) == "1") FAIL("TTT_REQUIRE_MPI=1 but " << why);
      MESSAGE("skipping the MPI tests: " << why << " (install openmpi-bin and libopenmpi-dev)");
    }
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);  // CI runs as root
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    // Containers often forbid the cross-memory-attach syscalls of the shared-memory transport.
    ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    // Nothing of the test's own environment may look like a launcher to the single-process runs.
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK",
                          "PMI_SIZE", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"})
      ::unsetenv(v);
  }
  return ready == 1;
}

// `timeout` keeps a hang from blocking CI: a hung job fails the test in 120 s instead.
inline std::string mpirun(int np) {
  return "timeout 120 mpirun -np " + std::to_string(np) + " --oversubscribe --bind-to none ";
}

}  // namespace ttt::testing
