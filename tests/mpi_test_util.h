// tests/mpi_test_util.h — running programs under mpirun from tests (test_ddp_mpi*.cpp).
//
// When mpirun (or the MPI backend) is missing, mpi_ready() says so and returns false, and the
// tests pass without running, unless TTT_REQUIRE_MPI=1 (CI sets it: scripts/setup.sh installs
// openmpi-bin and libopenmpi-dev): then it fails. As root, OpenMPI needs
// OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1, which mpi_ready() sets.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "tests/trainer_test_util.h"
#include "trainer/comm.h"

namespace ttt::testing {

// True when MPI runs can be tested here; otherwise reports why (and fails if TTT_REQUIRE_MPI=1).
inline bool mpi_ready() {
  static int ready = -1;
  if (ready < 0) {
    std::string why;
    if (!ttt::mpi_built()) why = "ttt was built without MPI";
    else if (run_command("command -v mpirun").code != 0) why = "mpirun is not on PATH";
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
