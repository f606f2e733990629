// trainer/launch_env.cpp — see launch_env.h.
#include "trainer/launch_env.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ttt {

namespace {

// The integer value of `name`, or `fallback` when unset. Throws naming the variable otherwise.
int env_int(const EnvLookup& env, const char* name, int fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < 0 || x > (1 << 30))
    throw std::invalid_argument(std::string("environment variable ") + name + "='" + v +
                                "' is not a non-negative integer");
  return static_cast<int>(x);
}

struct Scheme {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;  // may be null: not provided by this launcher
  const char* local_size;
};

// Order matters: explicit RANK/WORLD_SIZE first (the user or torchrun set them on purpose, and
// they win over an MPI launcher's view); then the MPI launchers; Slurm last because OpenMPI or
// MPICH may run inside a Slurm allocation.
constexpr Scheme kSchemes[] = {
    {"env", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
    {"slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", nullptr},
};

}  // namespace

std::string LaunchInfo::describe() const {
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size) + " (local rank " +
         std::to_string(local_rank) + ", launcher " + launcher + ")";
}

LaunchInfo detect_launch(const EnvLookup& env) {
  LaunchInfo info;
  for (const Scheme& s : kSchemes) {
    if (!env(s.rank) || !env(s.size)) continue;
    info.launcher = s.launcher;
    info.rank = env_int(env, s.rank, 0);
    info.world_size = env_int(env, s.size, 1);
    if (info.world_size < 1)
      throw std::invalid_argument(std::string("environment variable ") + s.size + " must be at least 1");
    if (info.rank >= info.world_size)
      throw std::invalid_argument(std::string("environment variable ") + s.rank + "=" + std::to_string(info.rank) +
                                  " is not below " + s.size + "=" + std::to_string(info.world_size));
    // Without a local rank, assume one node: the local rank is the global rank.
    info.local_rank = s.local_rank ? env_int(env, s.local_rank, info.rank) : info.rank;
    info.local_world_size = s.local_size ? env_int(env, s.local_size, -1) : -1;
    break;
  }
  if (const char* addr = env("MASTER_ADDR")) info.master_addr = addr;
  info.master_port = env_int(env, "MASTER_PORT", 29500);
  if (info.master_port < 1 || info.master_port > 65535)
    throw std::invalid_argument("environment variable MASTER_PORT=" + std::to_string(info.master_port) +
                                " is not a TCP port (1..65535)");
  // Recent torchrun (PyTorch 2.x) runs its agent's TCPStore on MASTER_ADDR:MASTER_PORT and tells its
  // workers so with TORCHELASTIC_USE_AGENT_STORE=True: rank 0 could not listen there, and the
  // other ranks would greet a TCPStore. The rendezvous takes the next port instead.
  const char* agent_store = env("TORCHELASTIC_USE_AGENT_STORE");
  if (agent_store && std::string(agent_store) == "True" && info.launcher == "env") {
    if (info.master_port == 65535)
      throw std::invalid_argument("MASTER_PORT=65535 is held by torchrun's agent (TORCHELASTIC_USE_AGENT_STORE=True) "
                                  "and the rendezvous needs the port after it: choose a lower --master-port");
    ++info.master_port;
  }
  return info;
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* name) -> const char* { return std::getenv(name); });
}

Device rank_device(Device configured, const LaunchInfo& info, int cuda_devices) {
  if (!configured.is_cuda() || info.world_size == 1) return configured;
  // A launcher that gives each process its own GPU (Slurm --gpus-per-task=1, or
  // CUDA_VISIBLE_DEVICES set per rank) leaves one visible device: use it.
  if (cuda_devices == 1) return cuda(0);
  if (info.local_rank >= cuda_devices)
    throw std::invalid_argument("local rank " + std::to_string(info.local_rank) + " needs GPU cuda:" +
                                std::to_string(info.local_rank) + " but only " + std::to_string(cuda_devices) +
                                " GPU(s) are visible: start at most one process per GPU on each node");
  return cuda(info.local_rank);
}

}  // namespace ttt
