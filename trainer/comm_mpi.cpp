// trainer/comm_mpi.cpp — the MPI backend of Communicator (CPU ranks), and the MPI runtime that the
// NCCL backend borrows to exchange its unique id. Built only when CMake found MPI (TTT_WITH_MPI);
// otherwise every entry point says "built without MPI".
//
// Every collective is nonblocking (MPI_Iallreduce, MPI_Ibcast, ...) and waited for by polling
// MPI_Test against a deadline (dist.timeout_s): MPI has no timeout of its own, and a blocking call
// stuck on a dead peer could never report anything. On timeout the rank prints which collective
// did not finish and calls MPI_Abort, which makes mpirun stop every rank.
//
// Tensors on a CUDA device are staged through host memory (slow, but correct: the MPI backend is
// meant for CPU ranks; CUDA ranks use NCCL).
#include "trainer/comm_backends.h"

#if TTT_WITH_MPI
// The C API only: keep OpenMPI's / MPICH's deprecated C++ bindings (and their link needs) out.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#endif

namespace ttt {

#if TTT_WITH_MPI

bool mpi_built() { return true; }

namespace {

// --- runtime ------------------------------------------------------------------------------------

struct MpiSession {
  bool initialised_here = false;
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (initialised_here && !finalized) MPI_Finalize();
  }
};

std::mutex g_mu;
std::weak_ptr<MpiSession> g_session;

std::string mpi_error_text(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  return std::string(buf, static_cast<size_t>(len));
}

void check(int rc, const std::string& what) {
  if (rc != MPI_SUCCESS) throw CommError("MPI: " + what + " failed: " + mpi_error_text(rc));
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Polls the requests until all are complete. On timeout the job cannot be rescued (an MPI
// collective cannot be cancelled): print what was waited for and abort every rank.
void wait_all(std::vector<MPI_Request>& reqs, double timeout_s, const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  int spins = 0;
  for (;;) {
    int done = 0;
    check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE), what);
    if (done) return;
    if (clock::now() > deadline) {
      int size = 1;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      std::fprintf(stderr,
                   "error: rank %d of %d: MPI %s did not complete within %.0f s (dist.timeout_s): another rank "
                   "failed or is stuck (see its output); aborting the job\n",
                   world_rank(), size, what.c_str(), timeout_s);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
      std::_Exit(1);
    }
    // Spin briefly (collectives of small buffers finish in microseconds), then yield the core.
    if (++spins > 200) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

// --- datatypes --------------------------------------------------------------------------------------

// bf16 has no MPI type: reduce 16-bit words with a user-defined op that adds in float32.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const bf16*>(in);
  auto* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = bf16::from_float(a[i].to_float() + b[i].to_float());
}

MPI_Op bf16_sum_op() {
  static MPI_Op op = [] {
    MPI_Op o;
    MPI_Op_create(&bf16_sum, /*commute=*/1, &o);
    return o;
  }();
  return op;
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f64: return MPI_DOUBLE;
    case DType::f32: return MPI_FLOAT;
    case DType::bf16: return MPI_UINT16_T;  // with bf16_sum_op
    case DType::i64: return MPI_INT64_T;
    default: throw std::invalid_argument(std::string("MPI collective: dtype ") + dtype_name(d) +
                                         " is not supported (float64, float32, bfloat16, int64)");
  }
}

// MPI counts are int: long buffers go in chunks of at most kChunk elements.
constexpr int64_t kChunk = INT_MAX / 2;

// --- the communicator -----------------------------------------------------------------------------------

// A collective in flight: its requests, and what to do once they complete (scale a mean, move a
// reduce-scatter's result into place, copy a staged CUDA tensor back).
class MpiWork final : public CommWork {
 public:
  MpiWork(std::vector<MPI_Request> reqs, std::string what, double timeout_s, std::function<void()> on_done)
      : reqs_(std::move(reqs)), what_(std::move(what)), timeout_s_(timeout_s), on_done_(std::move(on_done)) {}
  ~MpiWork() override {
    // A work dropped without wait() must still complete before its buffer goes away, unless an
    // exception is unwinding: the job is going down, and waiting could block until the timeout.
    if (!finished_ && std::uncaught_exceptions() == 0) try { wait(); } catch (...) {}
  }
  bool poll() override {
    if (finished_) return true;
    int done = 0;
    MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &done, MPI_STATUSES_IGNORE);
    if (done && started && !ended) ended = host_stamp();
    return done != 0;
  }
  void wait() override {
    if (finished_) return;
    finished_ = true;
    wait_all(reqs_, timeout_s_, what_);
    if (started && !ended) ended = host_stamp();
    NoGradGuard ng;
    if (on_done_) on_done_();
  }

 private:
  std::vector<MPI_Request> reqs_;
  std::string what_;
  double timeout_s_;
  std::function<void()> on_done_;
  bool finished_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const LaunchInfo& info, const CommOptions& opt)
      : Communicator(info), session_(mpi_acquire(info)), timeout_s_(opt.timeout_s) {
    int r = 0, n = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    info_.rank = r;
    info_.world_size = n;
    if (!info.launched()) {
      // No launcher variables (e.g. an MPI we do not know): ranks sharing a node are local.
      MPI_Comm node;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL, &node);
      MPI_Comm_rank(node, &info_.local_rank);
      MPI_Comm_size(node, &info_.local_world_size);
      MPI_Comm_free(&node);
      info_.launcher = "mpi";
    }
  }
  std::string backend_name() const override { return "mpi"; }
  Device device() const override { return cpu(); }

  std::unique_ptr<CommWork> all_reduce_async(Tensor& t, CommReduce op) override {
    check_tensor("all_reduce", t, op);
    MPI_Datatype type = mpi_type(t.dtype());
    MPI_Op mop = t.dtype() == DType::bf16 ? bf16_sum_op() : MPI_SUM;
    Tensor host = t.device().is_cpu() ? t : t.to(cpu());
    std::vector<MPI_Request> reqs;
    std::shared_ptr<CommStamp> start = timing_ ? host_stamp() : nullptr;
    char* p = static_cast<char*>(host.data_ptr());
    const size_t es = dtype_size(t.dtype());
    for (int64_t off = 0; off < host.numel(); off += kChunk) {
      int n = static_cast<int>(std::min<int64_t>(kChunk, host.numel() - off));
      reqs.emplace_back();
      check(MPI_Iallreduce(MPI_IN_PLACE, p + off * es, n, type, mop, MPI_COMM_WORLD, &reqs.back()),
            "MPI_Iallreduce");
    }
    const double scale = op == CommReduce::mean ? 1.0 / world_size() : 1.0;
    auto work = std::make_unique<MpiWork>(std::move(reqs), "all_reduce of " + host.str(), timeout_s_,
                                          [t, host, scale]() mutable {
                                            if (scale != 1.0) host.mul_(scale);
                                            if (!host.is_same(t)) t.copy_(host);  // staged from a CUDA tensor
                                          });
    work->started = std::move(start);
    return work;
  }

  // MPI's in-place reduce-scatter leaves the result at the start of the buffer, not at the rank's
  // slice: it is moved there when done (no slice-sized buffer per collective in flight: ZeRO-1
  // launches every bucket before waiting for any).
  std::unique_ptr<CommWork> reduce_scatter_async(Tensor& t, CommReduce op) override {
    check_tensor("reduce_scatter", t, op);
    const int64_t slice = slice_elements("reduce_scatter", t);
    MPI_Datatype type = mpi_type(t.dtype());
    MPI_Op mop = t.dtype() == DType::bf16 ? bf16_sum_op() : MPI_SUM;
    Tensor host = t.device().is_cpu() ? t : t.to(cpu());
    std::shared_ptr<CommStamp> start = timing_ ? host_stamp() : nullptr;
    std::vector<MPI_Request> reqs(1);
    check(MPI_Ireduce_scatter_block(MPI_IN_PLACE, host.data_ptr(), static_cast<int>(slice), type, mop, MPI_COMM_WORLD,
                                    &reqs[0]),
          "MPI_Ireduce_scatter_block");
    const double scale = op == CommReduce::mean ? 1.0 / world_size() : 1.0;
    const int64_t at = slice * rank();
    auto work = std::make_unique<MpiWork>(std::move(reqs), "reduce_scatter of " + host.str(), timeout_s_,
                                          [t, host, scale, at, slice]() mutable {
                                            Tensor result = host.narrow(0, 0, slice);
                                            if (scale != 1.0) result.mul_(scale);
                                            // [0, slice) and [at, at + slice) do not overlap for at > 0.
                                            if (at > 0 || !host.is_same(t)) t.narrow(0, at, slice).copy_(result);
                                          });
    work->started = std::move(start);
    return work;
  }

  std::unique_ptr<CommWork> all_gather_async(Tensor& t) override {
    check_tensor("all_gather", t, CommReduce::sum);
    const int64_t slice = slice_elements("all_gather", t);
    Tensor host = t.device().is_cpu() ? t : t.to(cpu());
    std::shared_ptr<CommStamp> start = timing_ ? host_stamp() : nullptr;
    std::vector<MPI_Request> reqs(1);
    // Raw elements: bf16 travels as 16-bit words, any dtype as its bytes' type.
    check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, host.data_ptr(), static_cast<int>(slice),
                         mpi_type(t.dtype()), MPI_COMM_WORLD, &reqs[0]),
          "MPI_Iallgather");
    auto work = std::make_unique<MpiWork>(std::move(reqs), "all_gather of " + host.str(), timeout_s_,
                                          [t, host]() mutable {
                                            if (!host.is_same(t)) t.copy_(host);
                                          });
    work->started = std::move(start);
    return work;
  }

  void broadcast(Tensor& t, int root) override {
    check_defined("broadcast", t, "tensor");
    if (!t.is_contiguous()) throw std::invalid_argument("broadcast: " + t.str() + " is not contiguous");
    Tensor host = t.device().is_cpu() ? t : t.to(cpu());
    mpi_broadcast_bytes(host.data_ptr(), static_cast<size_t>(host.numel()) * dtype_size(t.dtype()), root, timeout_s_);
    if (!host.is_same(t)) {
      NoGradGuard ng;
      t.copy_(host);
    }
    t.bump_version();
  }

  void barrier() override {
    std::vector<MPI_Request> req(1);
    check(MPI_Ibarrier(MPI_COMM_WORLD, &req[0]), "MPI_Ibarrier");
    wait_all(req, timeout_s_, "barrier");
  }

  std::vector<std::string> all_gather_bytes(const std::string& mine) override {
    const int n = world_size();
    int64_t len = static_cast<int64_t>(mine.size());
    std::vector<int64_t> lens(static_cast<size_t>(n));
    std::vector<MPI_Request> req(1);
    check(MPI_Iallgather(&len, 1, MPI_INT64_T, lens.data(), 1, MPI_INT64_T, MPI_COMM_WORLD, &req[0]),
          "MPI_Iallgather");
    wait_all(req, timeout_s_, "all_gather (lengths)");
    std::vector<int> counts(static_cast<size_t>(n)), displs(static_cast<size_t>(n));
    int64_t total = 0;
    for (int r = 0; r < n; ++r) {
      if (total + lens[static_cast<size_t>(r)] > INT_MAX) throw std::invalid_argument("all_gather_bytes: more than 2 GB");
      counts[static_cast<size_t>(r)] = static_cast<int>(lens[static_cast<size_t>(r)]);
      displs[static_cast<size_t>(r)] = static_cast<int>(total);
      total += lens[static_cast<size_t>(r)];
    }
    std::string all(static_cast<size_t>(total), '\0');
    check(MPI_Iallgatherv(mine.data(), static_cast<int>(len), MPI_BYTE, all.data(), counts.data(), displs.data(),
                          MPI_BYTE, MPI_COMM_WORLD, &req[0]),
          "MPI_Iallgatherv");
    wait_all(req, timeout_s_, "all_gather");
    std::vector<std::string> out;
    for (int r = 0; r < n; ++r) out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                                                        static_cast<size_t>(counts[static_cast<size_t>(r)])));
    return out;
  }

  [[noreturn]] void abort(const std::string& why, int exit_code) override {
    print_rank_error(info_, why + " (aborting all ranks)");
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
  }

 private:
  void check_tensor(const char* what, const Tensor& t, CommReduce op) const {
    check_defined(what, t, "tensor");
    if (!t.is_contiguous()) throw std::invalid_argument(std::string(what) + ": " + t.str() + " is not contiguous");
    (void)mpi_type(t.dtype());  // throws for unsupported dtypes
    if (op == CommReduce::mean && !is_floating(t.dtype()))
      throw std::invalid_argument(std::string(what) + ": the mean of " + dtype_name(t.dtype()) + " is not supported");
  }

  // Elements per rank of a reduce-scatter / all-gather of t (one MPI call: an int count).
  int64_t slice_elements(const char* what, const Tensor& t) const {
    const int64_t w = world_size();
    if (t.dim() != 1 || t.numel() % w != 0)
      throw std::invalid_argument(std::string(what) + ": " + t.str() + " must be 1-D with a multiple of " +
                                  std::to_string(w) + " (the world size) elements");
    if (t.numel() / w > INT_MAX)
      throw std::invalid_argument(std::string(what) + ": " + t.str() + " has more than INT_MAX elements per rank");
    return t.numel() / w;
  }

  std::shared_ptr<void> session_;
  double timeout_s_;
};

}  // namespace

std::shared_ptr<void> mpi_acquire(const LaunchInfo& info) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (auto s = g_session.lock()) return s;
  auto s = std::make_shared<MpiSession>();
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    s->initialised_here = true;
  }
  // Errors come back as codes we turn into CommError, instead of MPI's default of aborting.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int r = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  if (info.launched() && (r != info.rank || n != info.world_size))
    throw std::invalid_argument("MPI sees rank " + std::to_string(r) + " of " + std::to_string(n) +
                                ", but the launcher's environment (" + info.launcher + ") says " + info.describe() +
                                ": CPU ranks communicate through MPI, so start them with mpirun (or srun --mpi=pmix); "
                                "RANK/WORLD_SIZE without an MPI launcher (by hand, torchrun, plain srun) work for CUDA "
                                "ranks, whose NCCL backend meets on MASTER_ADDR/MASTER_PORT");
  g_session = s;
  return s;
}

void mpi_broadcast_bytes(void* data, size_t n, int root, double timeout_s) {
  std::vector<MPI_Request> reqs;
  char* p = static_cast<char*>(data);
  for (size_t off = 0; off < n; off += static_cast<size_t>(kChunk)) {
    int len = static_cast<int>(std::min<size_t>(static_cast<size_t>(kChunk), n - off));
    reqs.emplace_back();
    check(MPI_Ibcast(p + off, len, MPI_BYTE, root, MPI_COMM_WORLD, &reqs.back()), "MPI_Ibcast");
  }
  wait_all(reqs, timeout_s, "broadcast of " + std::to_string(n) + " bytes");
}

void mpi_abort_if_active(int exit_code) {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo& info, const CommOptions& opt) {
  return std::make_unique<MpiCommunicator>(info, opt);
}

#else  // built without MPI

namespace {
[[noreturn]] void no_mpi() {
  throw std::invalid_argument(
      "dist.backend 'mpi': this ttt was built without MPI (CMake did not find it: install libopenmpi-dev, "
      "e.g. with scripts/setup.sh, and reconfigure)");
}
}  // namespace

bool mpi_built() { return false; }
std::shared_ptr<void> mpi_acquire(const LaunchInfo&) { no_mpi(); }
void mpi_broadcast_bytes(void*, size_t, int, double) { no_mpi(); }
void mpi_abort_if_active(int) {}
std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo&, const CommOptions&) { no_mpi(); }

#endif

}  // namespace ttt
