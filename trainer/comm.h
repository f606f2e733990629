// trainer/comm.h — collective communication between the ranks of a data-parallel job.
//
// Backends (chosen by make_communicator, or forced with `dist.backend`):
//   local  world size 1 without a launcher: every collective is the identity, nothing to link;
//   mpi    CPU ranks over MPI (Debian's OpenMPI), so data-parallel training runs and is tested
//          on the CPU (trainer/comm_mpi.cpp);
//   nccl   CUDA ranks over NCCL (trainer/comm_nccl.cpp). The unique id is exchanged through MPI
//          when an MPI launcher started the job, else through a TCP rendezvous on
//          MASTER_ADDR:MASTER_PORT served by rank 0 (trainer/rendezvous.h).
// A backend that was not compiled in (no MPI or NCCL found by CMake) says so when asked for.
//
// Failure handling: every wait is bounded by `timeout_s`, and the NCCL backend also polls
// ncclCommGetAsyncError and a watchdog on the rendezvous sockets, so a rank that throws, runs out
// of memory or is killed makes the others fail with a CommError naming the rank, instead of
// hanging. abort() is what a rank calls on its own error: it tells the peers, tears the
// communicator down (ncclCommAbort / MPI_Abort) and exits non-zero.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "autograd/tensor.h"
#include "trainer/launch_env.h"

namespace ttt {

// A collective failed or timed out, or a peer rank failed. The message names the ranks involved.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class CommReduce : uint8_t { sum, mean };

struct CommOptions {
  std::string backend = "auto";  // auto | local | mpi | nccl
  double timeout_s = 600;        // longest wait for any collective or for the rendezvous
};

// A point in time on this rank, for timelines (DataParallel's per-bucket overlap measurement).
// seconds() reads it on a clock shared by every stamp of the process (CPU stamps) or of the
// communicator (CUDA stamps): CPU backends stamp the host clock when the stamp is made; the NCCL
// backend records a CUDA event, so its stamps say when the GPU got there, and seconds() waits
// until it has.
class CommStamp {
 public:
  virtual ~CommStamp() = default;
  virtual double seconds() = 0;
};
// The host clock now (steady_clock, seconds since the first host stamp of the process).
std::shared_ptr<CommStamp> host_stamp();

// A collective in flight. The tensor it works on must not be touched until wait() returns.
class CommWork {
 public:
  virtual ~CommWork() = default;
  // Blocks until done (then the result is visible to later work on the tensor's device).
  // Throws CommError on failure or timeout.
  virtual void wait() = 0;
  // Non-blocking check; also lets backends without a progress thread (MPI) move the work on.
  virtual bool poll() { return false; }
  // With Communicator::set_timing(true), when the collective started and ended on this rank
  // (null otherwise). MPI: the host clock at MPI_Iallreduce and when a poll() or wait() first
  // saw it complete (MPI moves only inside MPI calls, so the end is an upper bound); NCCL: CUDA
  // events on the collective's stream just before and after it.
  std::shared_ptr<CommStamp> started, ended;
};

class Communicator {
 public:
  explicit Communicator(LaunchInfo info) : info_(std::move(info)) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return info_.rank; }
  int world_size() const { return info_.world_size; }
  int local_rank() const { return info_.local_rank; }
  const LaunchInfo& launch() const { return info_; }
  virtual std::string backend_name() const = 0;  // "local", "mpi", "nccl"
  // Where the tensors of the collectives live (the MPI backend stages CUDA tensors through host).
  virtual Device device() const = 0;

  // --- timeline (off by default: it costs an event per collective and a sync to read them) ------
  // Collectives record CommWork::started / ended while on.
  void set_timing(bool on) { timing_ = on; }
  bool timing() const { return timing_; }
  // The point that the compute work enqueued so far will reach (CPU: now; NCCL: an event on the
  // compute stream, i.e. when the GPU has finished the kernels launched before this call).
  virtual std::shared_ptr<CommStamp> stamp_compute() { return host_stamp(); }

  // --- tensors: in place, contiguous, float64 / float32 / bfloat16 / int64 ---------------------
  // mean divides the sum by the world size (floating dtypes only).
  virtual std::unique_ptr<CommWork> all_reduce_async(Tensor& t, CommReduce op) = 0;
  void all_reduce_sum(Tensor& t) { all_reduce_async(t, CommReduce::sum)->wait(); }
  void all_reduce_mean(Tensor& t) { all_reduce_async(t, CommReduce::mean)->wait(); }
  // Reduce-scatter in place (ZeRO-1's gradient reduction): t.numel() must be a multiple of the
  // world size W; rank r's slice [r n/W, (r+1) n/W) of t gets the sum (or mean) over ranks of that
  // slice; the rest of t is unspecified afterwards (NCCL leaves it, MPI's in-place form writes
  // into slice 0). (NCCL's in-place form of ncclReduceScatter.)
  virtual std::unique_ptr<CommWork> reduce_scatter_async(Tensor& t, CommReduce op) = 0;
  // All-gather in place (ZeRO-1's weight exchange): t.numel() a multiple of W; afterwards every
  // rank's t holds, in slice r, rank r's slice r. (NCCL's in-place form of ncclAllGather.)
  virtual std::unique_ptr<CommWork> all_gather_async(Tensor& t) = 0;
  // Every rank gets root's values.
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // --- small host values (consistency checks, losses, paths) ----------------------------------
  // Each rank's bytes, in rank order, on every rank.
  virtual std::vector<std::string> all_gather_bytes(const std::string& mine) = 0;
  template <class T> std::vector<T> all_gather(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    std::vector<std::string> parts = all_gather_bytes(std::string(reinterpret_cast<const char*>(&v), sizeof(T)));
    std::vector<T> out(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) std::memcpy(&out[i], parts[i].data(), sizeof(T));
    return out;
  }
  // The sum (or mean) of a host scalar, added in rank order so every rank gets the same bits.
  double all_reduce_scalar(double v, CommReduce op = CommReduce::sum);
  std::string broadcast_string(const std::string& s, int root = 0);
  // Throws CommError listing the ranks when `value` differs between ranks; `what` names it.
  void check_same_on_all_ranks(const std::string& value, const std::string& what);

  // --- failure -----------------------------------------------------------------------------
  // Called by a rank on its own fatal error: prints "rank r of W: <why>" on stderr, makes the
  // other ranks stop (they fail with a message naming this rank), and exits with `exit_code`.
  [[noreturn]] virtual void abort(const std::string& why, int exit_code = 1) = 0;

 protected:
  LaunchInfo info_;
  bool timing_ = false;
};

// Chooses and starts the backend for a rank training on `device`, from the launch environment:
//   no launcher and world size 1          -> local
//   CPU device                            -> mpi   (needs an MPI launcher: mpirun, srun --mpi)
//   CUDA device                           -> nccl
// `opt.backend` forces one ("local" needs world size 1). Throws std::invalid_argument naming
// dist.backend when the choice is impossible (backend not built, wrong device).
std::unique_ptr<Communicator> make_communicator(Device device, const CommOptions& opt = {});
std::unique_ptr<Communicator> make_communicator(Device device, const CommOptions& opt, const LaunchInfo& info);

// The world-size-1 communicator (tests, and training without a launcher).
std::unique_ptr<Communicator> make_local_communicator(Device device);

// Whether the backends were compiled in (CMake found MPI / NCCL).
bool mpi_built();
bool nccl_built();

}  // namespace ttt
