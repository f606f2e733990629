// bench/lanes_probe.cpp — does running kernels on a second stream (backend lanes,
// kernels/cuda/lanes.cu) make later work on the home stream slower? On an H200 the 125M TTT-Linear's
// graphed decode steps went from 0.81 to 0.91–0.93 ms after a wavefront prefill had run on lanes
// (BENCHMARKS.md, session 14), and stayed so after the lane streams were destroyed. This isolates
// the question from the model: a CUDA graph of `--ops` tiny adds and the same adds eager, timed
// before and after `--lane-ops` adds on each of two lanes (and, as a control, before and after the
// same adds with lanes forked and joined but every add on the home stream), and a graph recorded
// after the lanes.
// Usage: build/bin/lanes_probe [--ops 300] [--lane-ops 200] [--reps 200]. Needs a GPU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "autograd/cuda_graph.h"
#include "autograd/ops.h"

using namespace ttt;
using Clock = std::chrono::steady_clock;

namespace {

// Median microseconds of f() followed by a device synchronization.
template <class F> double median_us(Backend& be, int reps, F&& f) {
  f();
  be.synchronize();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    f();
    be.synchronize();
    t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor chain(const Tensor& x, int n) {
  Tensor y = x;
  for (int i = 0; i < n; ++i) y = add(y, x);
  return y;
}

// Replay and eager times of the chain, in microseconds.
struct Times {
  double graph, eager;
};

Times measure(Backend& be, const CapturedGraph& g, const Tensor& x, int ops, int reps) {
  return {median_us(be, reps, [&] { g.replay(); }), median_us(be, reps / 4 + 1, [&] { (void)chain(x, ops); })};
}

}  // namespace

int main(int argc, char** argv) {
  int ops = 300, lane_ops = 200, reps = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ops")) ops = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--lane-ops")) lane_ops = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  if (!cuda_available()) {
    std::fprintf(stderr, "lanes_probe: needs a GPU\n");
    return 1;
  }
  NoGradGuard ng;
  const Device dev = cuda();
  Backend& be = backend(dev);
  const Tensor x = full({1, 768}, 1.0, opts(DType::f32, dev));
  Tensor y;
  const std::unique_ptr<CapturedGraph> g = capture_graph(dev, [&] { y = chain(x, ops); });

  const auto run_lanes = [&](bool on_lanes) {
    LaneScope lanes(be, 2);
    Tensor a, b;
    lanes.use(0);
    a = chain(x, lane_ops);
    lanes.use(on_lanes ? 1 : 0);
    b = chain(x, lane_ops);
    lanes.join();
    be.synchronize();
  };
  const Times before = measure(be, *g, x, ops, reps);
  run_lanes(false);
  const Times control = measure(be, *g, x, ops, reps);
  run_lanes(true);
  const Times after = measure(be, *g, x, ops, reps);
  // A graph recorded after the lanes: whether only graphs made before are slower, or every graph.
  Tensor y2;
  const std::unique_ptr<CapturedGraph> g2 = capture_graph(dev, [&] { y2 = chain(x, ops); });
  const Times fresh = measure(be, *g2, x, ops, reps);
  std::printf("lanes_probe: a graph of %d adds and the same adds eager, median µs over %d replays\n", ops, reps);
  std::printf("%-44s %12s %12s\n", "", "graph µs", "eager µs");
  std::printf("%-44s %12.1f %12.1f\n", "before any lane", before.graph, before.eager);
  std::printf("%-44s %12.1f %12.1f\n", "after a fork/join, every add on home", control.graph, control.eager);
  std::printf("%-44s %12.1f %12.1f\n", "after adds on a second lane", after.graph, after.eager);
  std::printf("%-44s %12.1f %12s\n", "  a graph recorded after them", fresh.graph, "");
  return 0;
}
