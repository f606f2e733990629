// bench/stream_probe.cu — after kernels have run on a second stream, are later CUDA graph replays
// slower? The backend's former lanes (streams beside its own, for a wavefront prefill; removed in
// session 15) left the 125M TTT-Linear's graphed decode step 0.81 -> 0.93 ms on an H200 for the
// rest of the process. This probe uses the CUDA runtime alone, one mode per process (the effect,
// once there, stays for the process), to say which way of running work side by side causes it and
// which does not:
//   none      nothing side by side (the control)
//   serial    a second stream, but its kernels run after the first's (no overlap)
//   streams   two streams forked and joined by events, kernels overlapping (as the lanes did)
//   noevent   two streams overlapping, no events (device synchronize)
//   branches  a graph of two parallel branches, captured by fork/join, replayed
//   pdl       one stream, each kernel launched with programmatic stream serialization and letting
//             the next one start at once (kernels overlap within one stream)
// It prints the side-by-side phase's time (is there overlap) and the replay time of a graph of
// --nodes one-block kernels before and after, on the first stream, on a stream made after, and on
// the second stream. Usage: stream_probe MODE [--nodes 300] [--work 200] [--reps 300]
// Measured (H200, driver 580.159.04, BENCHMARKS.md session 15): 225 µs before; 278-281 µs after
// serial, streams and noevent (whatever the connections, 20 or 2,000 kernels, on any stream,
// graphs recorded after included); 224-225 µs after branches and pdl. So the wavefront prefill runs
// on one stream (layers/language_model.cpp, Note [Wavefront prefill]).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define CHECK(x)                                                                             \
  do {                                                                                       \
    cudaError_t e_ = (x);                                                                    \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

namespace {

using Clock = std::chrono::steady_clock;

__global__ void bump(float* x) { x[threadIdx.x] += 1.f; }

// About `ns` nanoseconds of one block spinning: long enough for two streams' kernels to overlap.
__global__ void spin(float* x, long long ns) {
  const long long t0 = clock64();
  while (clock64() - t0 < ns * 2) {  // ~2 cycles a nanosecond at the H200's 1980 MHz
  }
  x[threadIdx.x] += 1.f;
}

// The same, letting the next kernel of the stream start at once (programmatic dependent launch).
__global__ void spin_pdl(float* x, long long ns) {
  cudaTriggerProgrammaticLaunchCompletion();
  const long long t0 = clock64();
  while (clock64() - t0 < ns * 2) {
  }
  x[threadIdx.x] += 1.f;
}

void launch_pdl(float* x, long long ns, cudaStream_t s) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(1);
  cfg.blockDim = dim3(32);
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CHECK(cudaLaunchKernelEx(&cfg, spin_pdl, x, ns));
}

cudaGraphExec_t record_chain(cudaStream_t s, float* x, int nodes) {
  cudaGraph_t g;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  for (int i = 0; i < nodes; ++i) bump<<<1, 32, 0, s>>>(x);
  CHECK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t e;
  CHECK(cudaGraphInstantiate(&e, g, 0));
  CHECK(cudaGraphDestroy(g));
  return e;
}

double median_replay_us(cudaGraphExec_t e, cudaStream_t s, int reps) {
  CHECK(cudaGraphLaunch(e, s));
  CHECK(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    CHECK(cudaGraphLaunch(e, s));
    CHECK(cudaStreamSynchronize(s));
    t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The side-by-side phase: `work` spin kernels of 5 µs on each side, as `mode` runs them.
void side_by_side(const std::string& mode, cudaStream_t s, cudaStream_t s2, float* x, float* y, int work) {
  const long long ns = 5000;
  cudaEvent_t fork, join;
  CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
  // The two streams' kernels interleaved, forked from and joined to s by events (with_events).
  const auto two_streams = [&](bool with_events) {
    if (with_events) {
      CHECK(cudaEventRecord(fork, s));
      CHECK(cudaStreamWaitEvent(s2, fork, 0));
    }
    for (int i = 0; i < work; ++i) {
      spin<<<1, 32, 0, s>>>(x, ns);
      spin<<<1, 32, 0, s2>>>(y, ns);
    }
    if (with_events) {
      CHECK(cudaEventRecord(join, s2));
      CHECK(cudaStreamWaitEvent(s, join, 0));
    }
  };
  if (mode == "serial") {
    for (int i = 0; i < work; ++i) spin<<<1, 32, 0, s>>>(x, ns);
    CHECK(cudaStreamSynchronize(s));
    for (int i = 0; i < work; ++i) spin<<<1, 32, 0, s2>>>(y, ns);
  } else if (mode == "streams" || mode == "noevent") {
    two_streams(mode == "streams");
  } else if (mode == "branches") {
    cudaGraph_t g;
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    two_streams(true);
    CHECK(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t e;
    CHECK(cudaGraphInstantiate(&e, g, 0));
    CHECK(cudaGraphLaunch(e, s));
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaGraphExecDestroy(e));
    CHECK(cudaGraphDestroy(g));
  } else if (mode == "pdl") {
    for (int i = 0; i < work; ++i) {
      launch_pdl(x, ns, s);
      launch_pdl(y, ns, s);
    }
  } else if (mode != "none") {
    std::fprintf(stderr, "stream_probe: unknown mode '%s'\n", mode.c_str());
    std::exit(2);
  }
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaEventDestroy(fork));
  CHECK(cudaEventDestroy(join));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: stream_probe none|serial|streams|noevent|branches|pdl [--nodes N] [--work N] [--reps N]\n");
    return 2;
  }
  const std::string mode = argv[1];
  int nodes = 300, work = 200, reps = 300;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--nodes")) nodes = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--work")) work = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  float *x, *y;
  CHECK(cudaMalloc(&x, 1024));
  CHECK(cudaMalloc(&y, 1024));
  cudaStream_t s, s2;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CHECK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  const cudaGraphExec_t before_graph = record_chain(s, x, nodes);
  const double before = median_replay_us(before_graph, s, reps);

  side_by_side(mode, s, s2, x, y, 20);  // warm-up of the kernels
  const auto a = Clock::now();
  side_by_side(mode, s, s2, x, y, work);
  const double phase_us = std::chrono::duration<double, std::micro>(Clock::now() - a).count();

  const double after = median_replay_us(before_graph, s, reps);
  const cudaGraphExec_t after_graph = record_chain(s, x, nodes);
  const double recorded_after = median_replay_us(after_graph, s, reps);
  cudaStream_t s3;
  CHECK(cudaStreamCreateWithFlags(&s3, cudaStreamNonBlocking));
  const double on_new_stream = median_replay_us(before_graph, s3, reps);
  const double on_second = median_replay_us(before_graph, s2, reps);
  const char* conn = std::getenv("CUDA_DEVICE_MAX_CONNECTIONS");
  std::printf("stream_probe %-8s connections %-4s side by side %4d+%-4d x 5 us: %8.0f us | graph of %d: before %6.1f  after %6.1f"
              "  recorded after %6.1f  on a new stream %6.1f  on the second %6.1f us\n",
              mode.c_str(), conn ? conn : "-", work, work, phase_us, nodes, before, after, recorded_after, on_new_stream,
              on_second);
  return 0;
}
