// trainer/launch_env.h — who am I in a multi-process job: rank, world size, local rank, read from
// the environment that the launcher set. One process per device (data parallelism).
//
// Launchers recognised, first match wins (the variables each sets):
//   env       RANK, WORLD_SIZE, LOCAL_RANK [, LOCAL_WORLD_SIZE]      torchrun, or set by hand;
//             MASTER_ADDR / MASTER_PORT (default 29500) name rank 0's rendezvous for NCCL (under
//             recent torchrun, TORCHELASTIC_USE_AGENT_STORE=True: its agent holds MASTER_PORT, so
//             the rendezvous uses MASTER_PORT + 1)
//   openmpi   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
//             OMPI_COMM_WORLD_LOCAL_SIZE                              `mpirun -np N` (OpenMPI)
//   pmi       PMI_RANK, PMI_SIZE [, MPI_LOCALRANKID]                  MPICH / Intel MPI hydra
//   slurm     SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID       `srun` (one task per GPU)
// Slurm is matched on SLURM_STEP_NUM_TASKS (set by srun for the tasks of a step), not on
// SLURM_NTASKS, which a batch script also sees: `ttt train` run directly in an sbatch script with
// --ntasks=4 is then one process, not rank 0 of 4 waiting forever for the others.
// No launcher: rank 0 of 1 (`launcher == "none"`).
//
// A rank's device is cuda:<local rank> when training on CUDA (see rank_device).
#pragma once

#include <functional>
#include <string>

#include "kernels/dtype.h"

namespace ttt {

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // processes on this node (-1: the launcher does not say)
  std::string launcher = "none";  // none | env | openmpi | pmi | slurm
  std::string master_addr;        // MASTER_ADDR ("" if unset)
  int master_port = 29500;        // MASTER_PORT, torchrun's default when unset (+1 under torchrun's agent store)
  bool launched() const { return launcher != "none"; }
  // "rank 1 of 2 (local rank 1, launcher openmpi)"
  std::string describe() const;
};

// Looks up an environment variable; nullptr when unset. Tests pass a map instead of getenv.
using EnvLookup = std::function<const char*(const char*)>;

// Reads the variables above. Throws std::invalid_argument naming the variable when one is not an
// integer or the rank is outside [0, world size).
LaunchInfo detect_launch(const EnvLookup& env);
LaunchInfo detect_launch();  // from the process environment

// The device this rank trains on: for CUDA, cuda:<local rank> whenever a launcher started the
// process (one process per GPU); `configured` otherwise. `cuda_devices` is the number of visible
// GPUs; a local rank beyond it is an error naming both.
Device rank_device(Device configured, const LaunchInfo& info, int cuda_devices);

}  // namespace ttt
