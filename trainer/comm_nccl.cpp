// trainer/comm_nccl.cpp — the NCCL backend of Communicator (one CUDA device per rank). Built only
// when CMake found NCCL (TTT_WITH_NCCL); otherwise it says "built without NCCL".
//
// Streams: collectives run on a stream of their own. Before each one, an event recorded on the
// compute stream (Backend::native_stream) makes the NCCL stream wait for the kernels that wrote
// the tensor (and everything enqueued before them), and no longer. So an all-reduce launched
// from a gradient hook can run on the GPU while the kernels enqueued after it (the backward of
// earlier layers) do: the engine runs a parameter's hook as soon as its gradient is complete
// (autograd/engine.cpp). How much it overlaps in practice is measured per bucket by
// `dist.timeline` (CUDA events: bucket ready / all-reduce start / end against the end of
// backward; scripts/ddp_timeline.sh).
// wait() blocks the host until the collective is done; nothing on the compute stream ever waits
// for NCCL work the host has not seen finish, so a stuck collective cannot wedge the compute
// stream where no timeout could reach it.
//
// Failures: the communicator is created nonblocking (ncclConfig_t::blocking = 0), so no NCCL call
// blocks the host; every wait polls ncclCommGetAsyncError, the rendezvous watchdog (when the TCP
// rendezvous was used) and a deadline (dist.timeout_s). On any of them the communicator is aborted
// (ncclCommAbort) and a CommError names this rank and the cause.
//
// NVLink SHARP (NVLS) is disabled (NCCL_NVLS_ENABLE=0) unless the user set the variable: the
// machines this project runs on must keep it off.
#include "trainer/comm_backends.h"

#if TTT_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "trainer/rendezvous.h"
#endif

namespace ttt {

#if TTT_WITH_NCCL

bool nccl_built() { return true; }

namespace {

using clock_type = std::chrono::steady_clock;

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CommError(std::string("NCCL backend: ") + what + ": " + cudaGetErrorString(e));
}

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f64: return ncclFloat64;
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::i64: return ncclInt64;
    default:
      throw std::invalid_argument(std::string("NCCL collective: dtype ") + dtype_name(d) +
                                  " is not supported (float64, float32, bfloat16, int64)");
  }
}

class NcclCommunicator;

using EventHandle = std::shared_ptr<CUevent_st>;  // a cudaEvent_t, destroyed with its last holder

EventHandle make_timing_event() {
  cudaEvent_t e = nullptr;
  cuda_check(cudaEventCreate(&e), "cudaEventCreate");
  return EventHandle(e, [](cudaEvent_t ev) { cudaEventDestroy(ev); });
}

// A timeline stamp: an event recorded on a stream, read against the communicator's origin event.
class CudaStamp final : public CommStamp {
 public:
  CudaStamp(EventHandle ev, EventHandle origin) : ev_(std::move(ev)), origin_(std::move(origin)) {}
  double seconds() override {
    cuda_check(cudaEventSynchronize(ev_.get()), "cudaEventSynchronize (timeline stamp)");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, origin_.get(), ev_.get()), "cudaEventElapsedTime");
    return ms / 1e3;
  }

 private:
  EventHandle ev_, origin_;
};

// One collective in flight: an event recorded on the NCCL stream after it.
class NcclWork final : public CommWork {
 public:
  NcclWork(NcclCommunicator* comm, cudaEvent_t done, Tensor keep, std::string what)
      : comm_(comm), done_(done), keep_(std::move(keep)), what_(std::move(what)) {}
  ~NcclWork() override;
  void wait() override;
  bool poll() override { return finished_ || cudaEventQuery(done_) == cudaSuccess; }

 private:
  NcclCommunicator* comm_;
  cudaEvent_t done_;
  Tensor keep_;  // the buffer stays alive while NCCL uses it
  std::string what_;
  bool finished_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const LaunchInfo& info, Device device, const CommOptions& opt)
      : Communicator(info), device_(device), timeout_s_(opt.timeout_s) {
    ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    cuda_check(cudaSetDevice(device.index), "cudaSetDevice");
    compute_stream_ = static_cast<cudaStream_t>(backend(device).native_stream());
    ncclUniqueId id{};
    exchange_id(info, id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm_, info.world_size, id, info.rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) fail("ncclCommInitRank", r);
    settle("ncclCommInitRank (connecting the ranks)");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaMalloc(&scratch_, 64), "cudaMalloc");
    if (rdzv_) rdzv_->start_watchdog();
  }

  ~NcclCommunicator() override {
    cudaSetDevice(device_.index);
    if (comm_ && !aborted_) {
      // Unwinding an exception: pending collectives may never complete, so abort, don't flush.
      if (std::uncaught_exceptions() > 0) {
        ncclCommAbort(comm_);
      } else {
        ncclCommFinalize(comm_);
        try { settle("ncclCommFinalize"); } catch (...) {}
        if (!aborted_) ncclCommDestroy(comm_);
      }
    }
    if (scratch_) cudaFree(scratch_);
    if (gather_buf_) cudaFree(gather_buf_);
    if (gather_pinned_) cudaFreeHost(gather_pinned_);
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string backend_name() const override { return "nccl"; }
  Device device() const override { return device_; }

  std::unique_ptr<CommWork> all_reduce_async(Tensor& t, CommReduce op) override {
    check_tensor("all_reduce", t);
    if (op == CommReduce::mean && !is_floating(t.dtype()))
      throw std::invalid_argument(std::string("all_reduce: the mean of ") + dtype_name(t.dtype()) + " is not supported");
    return launch("ncclAllReduce", t, "all_reduce", [&] {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                           op == CommReduce::mean ? ncclAvg : ncclSum, comm_, stream_);
    });
  }

  // In place: NCCL reduces into recvbuff = sendbuff + rank * recvcount (ncclReduceScatter's
  // in-place form), the rest of the buffer is only read.
  std::unique_ptr<CommWork> reduce_scatter_async(Tensor& t, CommReduce op) override {
    check_tensor("reduce_scatter", t);
    if (op == CommReduce::mean && !is_floating(t.dtype()))
      throw std::invalid_argument(std::string("reduce_scatter: the mean of ") + dtype_name(t.dtype()) + " is not supported");
    const size_t slice = slice_elements("reduce_scatter", t);
    char* base = static_cast<char*>(t.data_ptr());
    char* mine = base + slice * static_cast<size_t>(rank()) * dtype_size(t.dtype());
    return launch("ncclReduceScatter", t, "reduce_scatter", [&] {
      return ncclReduceScatter(base, mine, slice, nccl_type(t.dtype()), op == CommReduce::mean ? ncclAvg : ncclSum,
                               comm_, stream_);
    });
  }

  // In place: sendbuff = recvbuff + rank * sendcount (ncclAllGather's in-place form).
  std::unique_ptr<CommWork> all_gather_async(Tensor& t) override {
    check_tensor("all_gather", t);
    const size_t slice = slice_elements("all_gather", t);
    char* base = static_cast<char*>(t.data_ptr());
    char* mine = base + slice * static_cast<size_t>(rank()) * dtype_size(t.dtype());
    return launch("ncclAllGather", t, "all_gather", [&] {
      return ncclAllGather(mine, base, slice, nccl_type(t.dtype()), comm_, stream_);
    });
  }

  std::shared_ptr<CommStamp> stamp_compute() override { return stamp_on(compute_stream_); }

  void broadcast(Tensor& t, int root) override {
    check_tensor("broadcast", t);
    order_after_compute();
    enqueued("ncclBroadcast", ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()),
                                            ncclUint8, root, comm_, stream_));
    finish_enqueue(t, "broadcast of " + t.str())->wait();
    t.bump_version();
  }

  void barrier() override {
    enqueued("ncclAllReduce", ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_));
    finish_enqueue(Tensor(), "barrier")->wait();
  }

  std::vector<std::string> all_gather_bytes(const std::string& mine) override {
    const size_t n = static_cast<size_t>(world_size());
    // Lengths first, then every rank's bytes padded to the longest.
    std::vector<int64_t> lens(n, 0);
    lens[static_cast<size_t>(rank())] = static_cast<int64_t>(mine.size());
    gather_host(lens.data(), sizeof(int64_t));
    int64_t longest = 1;
    for (int64_t l : lens) longest = std::max(longest, l);
    std::string all(n * static_cast<size_t>(longest), '\0');
    std::memcpy(all.data() + static_cast<size_t>(rank()) * static_cast<size_t>(longest), mine.data(), mine.size());
    gather_host(all.data(), static_cast<size_t>(longest));
    std::vector<std::string> out;
    for (size_t r = 0; r < n; ++r) out.push_back(all.substr(r * static_cast<size_t>(longest), static_cast<size_t>(lens[r])));
    return out;
  }

  [[noreturn]] void abort(const std::string& why, int exit_code) override {
    print_rank_error(info_, why + " (aborting all ranks)");
    if (rdzv_) rdzv_->notify_abort(why);
    if (comm_ && !aborted_) {
      aborted_ = true;
      ncclCommAbort(comm_);
    }
    std::fflush(nullptr);
    mpi_abort_if_active(exit_code);  // launched by mpirun: let it stop every rank
    std::_Exit(exit_code);
  }

  // --- for NcclWork ------------------------------------------------------------------------------
  // Polls `done` until complete, checking NCCL's asynchronous errors, the peers and the deadline.
  void wait_event(cudaEvent_t done, const std::string& what) {
    const auto deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(timeout_s_));
    for (int spins = 0;; ++spins) {
      cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) cuda_check(q, what.c_str());
      check_health(what, deadline);
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

 private:
  void check_tensor(const char* op, const Tensor& t) const {
    check_defined(op, t, "tensor");
    if (t.device() != device_)
      throw std::invalid_argument(std::string(op) + ": " + t.str() + " is not on this rank's device " + device_.str());
    if (!t.is_contiguous()) throw std::invalid_argument(std::string(op) + ": " + t.str() + " is not contiguous");
  }

  // A collective on `t`: ordered after the compute stream, enqueued by `call` (an ncclXxx call on
  // stream_), with timeline stamps around it when timing; its work keeps `t` alive.
  template <class Call>
  std::unique_ptr<CommWork> launch(const char* nccl_name, const Tensor& t, const char* what, Call call) {
    order_after_compute();
    std::shared_ptr<CommStamp> start = timing_ ? stamp_on(stream_) : nullptr;
    enqueued(nccl_name, call());
    std::shared_ptr<CommStamp> end = timing_ ? stamp_on(stream_) : nullptr;
    auto work = finish_enqueue(t, std::string(what) + " of " + t.str());
    work->started = std::move(start);
    work->ended = std::move(end);
    return work;
  }

  // Elements per rank of a reduce-scatter / all-gather of t.
  size_t slice_elements(const char* op, const Tensor& t) const {
    const int64_t w = world_size();
    if (t.dim() != 1 || t.numel() % w != 0)
      throw std::invalid_argument(std::string(op) + ": " + t.str() + " must be 1-D with a multiple of " +
                                  std::to_string(w) + " (the world size) elements");
    return static_cast<size_t>(t.numel() / w);
  }

  void exchange_id(const LaunchInfo& info, ncclUniqueId& id) {
    auto make = [&] {
      ncclResult_t r = ncclGetUniqueId(&id);
      if (r != ncclSuccess) throw CommError(std::string("ncclGetUniqueId: ") + ncclGetErrorString(r));
    };
    if (info.world_size == 1) return make();
    if (mpi_built() && (info.launcher == "openmpi" || info.launcher == "pmi")) {
      mpi_ = mpi_acquire(info);
      if (info.rank == 0) make();
      mpi_broadcast_bytes(&id, sizeof(id), 0, timeout_s_);
      return;
    }
    rdzv_ = std::make_unique<TcpRendezvous>(info.master_addr, info.master_port, info.rank, info.world_size, timeout_s_);
    std::string mine;
    if (info.rank == 0) {
      make();
      mine.assign(reinterpret_cast<const char*>(&id), sizeof(id));
    }
    std::string got = rdzv_->broadcast(mine);
    if (got.size() != sizeof(id)) throw CommError("rendezvous: rank 0 sent a malformed NCCL id");
    std::memcpy(&id, got.data(), sizeof(id));
  }

  // An event recorded on `stream` now, timed from the first stamp's origin (on the compute stream).
  std::shared_ptr<CommStamp> stamp_on(cudaStream_t stream) {
    if (!origin_) {
      origin_ = make_timing_event();
      cuda_check(cudaEventRecord(origin_.get(), compute_stream_), "cudaEventRecord");
    }
    EventHandle ev = make_timing_event();
    cuda_check(cudaEventRecord(ev.get(), stream), "cudaEventRecord");
    return std::make_shared<CudaStamp>(std::move(ev), origin_);
  }

  // The NCCL stream waits for everything enqueued on the compute stream so far.
  void order_after_compute() {
    check_health("launching a collective", clock_type::now() + std::chrono::hours(1));
    if (compute_stream_) {
      cuda_check(cudaEventRecord(ready_, compute_stream_), "cudaEventRecord");
      cuda_check(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    } else {
      backend(device_).synchronize();
    }
  }

  // A nonblocking communicator may answer ncclInProgress: wait until the call has settled.
  void enqueued(const char* what, ncclResult_t r) {
    if (r == ncclInProgress) settle(what);
    else if (r != ncclSuccess) fail(what, r);
  }

  std::unique_ptr<CommWork> finish_enqueue(Tensor keep, std::string what) {
    cudaEvent_t done;
    cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventRecord(done, stream_), "cudaEventRecord");
    return std::make_unique<NcclWork>(this, done, std::move(keep), std::move(what));
  }

  void settle(const std::string& what) {
    const auto deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(timeout_s_));
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, state);
      check_health(what, deadline);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void check_health(const std::string& what, clock_type::time_point deadline) {
    if (aborted_) throw CommError(info_.describe() + ": the NCCL communicator was aborted earlier");
    ncclResult_t state = ncclSuccess;
    if (comm_) ncclCommGetAsyncError(comm_, &state);
    if (state != ncclSuccess && state != ncclInProgress) fail(what, state);
    if (rdzv_) {
      std::string f = rdzv_->failure();
      if (!f.empty()) fail_with(what + " stopped: " + f);
    }
    if (clock_type::now() > deadline)
      fail_with(what + " did not complete within " + std::to_string(static_cast<int>(timeout_s_)) +
                " s (dist.timeout_s): another rank failed or is stuck (see its output)");
  }

  [[noreturn]] void fail(const std::string& what, ncclResult_t r) {
    std::string detail = ncclGetErrorString(r);
    if (comm_) {
      const char* last = ncclGetLastError(comm_);
      if (last && *last) detail += " (" + std::string(last) + ")";
    }
    fail_with(what + " failed: " + detail);
  }

  [[noreturn]] void fail_with(const std::string& msg) {
    if (comm_ && !aborted_) {
      aborted_ = true;
      ncclCommAbort(comm_);
    }
    throw CommError(info_.describe() + ", NCCL: " + msg);
  }

  // In-place all-gather of `bytes` per rank through device memory. Small gathers (the per-step
  // loss and stop flag) reuse one buffer: cudaMalloc/cudaFree would synchronize the device. The
  // host side is pinned: a copy into pageable memory blocks the host until the stream gets
  // there, and a stuck all-gather would then hang where no timeout could see it.
  void gather_host(void* host, size_t bytes) {
    const size_t total = bytes * static_cast<size_t>(world_size());
    if (total > gather_capacity_) {
      if (gather_buf_) cudaFree(gather_buf_);
      if (gather_pinned_) cudaFreeHost(gather_pinned_);
      gather_buf_ = gather_pinned_ = nullptr;
      gather_capacity_ = 0;
      const size_t cap = std::max<size_t>(total, 4096);
      cuda_check(cudaMalloc(&gather_buf_, cap), "cudaMalloc");
      cuda_check(cudaMallocHost(&gather_pinned_, cap), "cudaMallocHost");
      gather_capacity_ = cap;
    }
    char* dev = static_cast<char*>(gather_buf_);
    std::memcpy(gather_pinned_, host, total);
    cuda_check(cudaMemcpyAsync(dev, gather_pinned_, total, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
    enqueued("ncclAllGather", ncclAllGather(dev + bytes * static_cast<size_t>(rank()), dev, bytes, ncclUint8, comm_, stream_));
    cuda_check(cudaMemcpyAsync(gather_pinned_, dev, total, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
    finish_enqueue(Tensor(), "all_gather of " + std::to_string(bytes) + " bytes")->wait();
    std::memcpy(host, gather_pinned_, total);
  }

  Device device_;
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
  cudaStream_t stream_ = nullptr;          // NCCL's
  cudaStream_t compute_stream_ = nullptr;  // the backend's (null: synchronize instead)
  cudaEvent_t ready_ = nullptr;
  EventHandle origin_;                     // the timeline's zero (first stamp_on)
  void* scratch_ = nullptr;                // the barrier's one float
  void* gather_buf_ = nullptr;             // all_gather_bytes' staging buffers (device, pinned host)
  void* gather_pinned_ = nullptr;
  size_t gather_capacity_ = 0;
  std::shared_ptr<void> mpi_;              // held while MPI carried the id
  std::unique_ptr<TcpRendezvous> rdzv_;    // held for the watchdog
};

NcclWork::~NcclWork() {
  // As ~MpiWork: complete before the buffer goes away, except while an exception unwinds.
  if (!finished_ && std::uncaught_exceptions() == 0) try { wait(); } catch (...) {}
  cudaEventDestroy(done_);
}

void NcclWork::wait() {
  if (finished_) return;
  finished_ = true;
  comm_->wait_event(done_, what_);
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo& info, Device device, const CommOptions& opt) {
  return std::make_unique<NcclCommunicator>(info, device, opt);
}

#else  // built without NCCL

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(const LaunchInfo&, Device, const CommOptions&) {
#if TTT_WITH_CUDA
  throw std::invalid_argument(
      "dist.backend 'nccl': this ttt was built without NCCL (CMake found no nccl.h / libnccl.so; they come with "
      "the CUDA toolkit image, or set -DNCCL_ROOT=...)");
#else
  throw std::invalid_argument("dist.backend 'nccl': this ttt was built without CUDA, so without NCCL");
#endif
}

#endif

}  // namespace ttt
