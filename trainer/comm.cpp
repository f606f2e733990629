// trainer/comm.cpp — the backend-independent helpers of Communicator, the world-size-1 local
// communicator and the backend choice (see comm.h).
#include "trainer/comm.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "trainer/comm_backends.h"

namespace ttt {

// --- host stamps --------------------------------------------------------------------------------------

namespace {
class HostStamp final : public CommStamp {
 public:
  HostStamp() {
    static const auto origin = std::chrono::steady_clock::now();
    t_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - origin).count();
  }
  double seconds() override { return t_; }

 private:
  double t_ = 0;
};
}  // namespace

std::shared_ptr<CommStamp> host_stamp() { return std::make_shared<HostStamp>(); }

// --- helpers built on all_gather_bytes ------------------------------------------------------------

double Communicator::all_reduce_scalar(double v, CommReduce op) {
  // Gathering and adding in rank order (rather than a tree reduction) gives every rank the same
  // bits, so decisions taken on the result (early stop, NaN checks) agree across ranks.
  std::vector<double> all = all_gather(v);
  double s = 0;
  for (double x : all) s += x;
  return op == CommReduce::mean ? s / static_cast<double>(all.size()) : s;
}

std::string Communicator::broadcast_string(const std::string& s, int root) {
  if (root < 0 || root >= world_size())
    throw std::invalid_argument("broadcast_string: root " + std::to_string(root) + " is not a rank");
  return all_gather_bytes(rank() == root ? s : std::string()).at(static_cast<size_t>(root));
}

void Communicator::check_same_on_all_ranks(const std::string& value, const std::string& what) {
  std::vector<std::string> all = all_gather_bytes(value);
  std::string differing;
  size_t first = 0;
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    if (first == 0) first = r;
    differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differing.empty())
    throw CommError(what + " differs between ranks: rank(s) " + differing + " do not match rank 0 (rank 0: '" +
                    all[0].substr(0, 200) + "', rank " + std::to_string(first) + ": '" + all[first].substr(0, 200) +
                    "')");
}

void print_rank_error(const LaunchInfo& info, const std::string& why) {
  std::fprintf(stderr, "error: rank %d of %d: %s\n", info.rank, info.world_size, why.c_str());
  std::fflush(stderr);
}

// --- local: world size 1 ----------------------------------------------------------------------------

namespace {

class DoneWork final : public CommWork {
 public:
  void wait() override {}
  bool poll() override { return true; }
};

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(Device d) : Communicator(LaunchInfo{}), device_(d) {}
  std::string backend_name() const override { return "local"; }
  Device device() const override { return device_; }
  // The sum and the mean over one rank are the tensor itself.
  std::unique_ptr<CommWork> all_reduce_async(Tensor& t, CommReduce) override {
    check_defined("all_reduce", t, "tensor");
    auto w = std::make_unique<DoneWork>();
    if (timing_) w->started = w->ended = host_stamp();
    return w;
  }
  // Over one rank, the one slice is the whole tensor: reduced and gathered already.
  std::unique_ptr<CommWork> reduce_scatter_async(Tensor& t, CommReduce op) override { return all_reduce_async(t, op); }
  std::unique_ptr<CommWork> all_gather_async(Tensor& t) override { return all_reduce_async(t, CommReduce::sum); }
  void broadcast(Tensor& t, int root) override {
    if (root != 0) throw std::invalid_argument("broadcast: root " + std::to_string(root) + " is not a rank of 1");
  }
  void barrier() override {}
  std::vector<std::string> all_gather_bytes(const std::string& mine) override { return {mine}; }
  [[noreturn]] void abort(const std::string& why, int exit_code) override {
    print_rank_error(info_, why);
    std::exit(exit_code);
  }

 private:
  Device device_;
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator(Device device) {
  return std::make_unique<LocalCommunicator>(device);
}

// --- choosing a backend ------------------------------------------------------------------------------

std::unique_ptr<Communicator> make_communicator(Device device, const CommOptions& opt, const LaunchInfo& info) {
  std::string b = opt.backend;
  if (b != "auto" && b != "local" && b != "mpi" && b != "nccl")
    throw std::invalid_argument("dist.backend: '" + b + "' is not one of auto, local, mpi, nccl");
  if (opt.timeout_s <= 0) throw std::invalid_argument("dist.timeout_s must be positive");
  if (b == "auto") {
    if (!info.launched() && info.world_size == 1) b = "local";
    else b = device.is_cuda() ? "nccl" : "mpi";
  }
  if (b == "local") {
    if (info.world_size != 1)
      throw std::invalid_argument("dist.backend: 'local' runs one process, but the launcher (" + info.launcher +
                                  ") started " + std::to_string(info.world_size));
    return make_local_communicator(device);
  }
  if (b == "nccl") {
    if (!device.is_cuda())
      throw std::invalid_argument("dist.backend: 'nccl' needs a CUDA device, not " + device.str() +
                                  " (use 'mpi' for CPU ranks)");
    return make_nccl_communicator(info, device, opt);
  }
  return make_mpi_communicator(info, opt);
}

std::unique_ptr<Communicator> make_communicator(Device device, const CommOptions& opt) {
  return make_communicator(device, opt, detect_launch());
}

}  // namespace ttt
