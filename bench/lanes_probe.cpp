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

// n products of a [16, 768] by a [768, 768] (cuBLASLt, as a decode step's projections).
Tensor product_chain(const Tensor& x, const Tensor& w, int n) {
  Tensor y = x;
  for (int i = 0; i < n; ++i) y = matmul(y, w);
  return y;
}

// Replay and eager times of the chain, in microseconds.
struct Times {
  double graph, eager;
};

template <class F> Times measure(Backend& be, const CapturedGraph& g, F&& eager, int reps) {
  return {median_us(be, reps, [&] { g.replay(); }), median_us(be, reps / 4 + 1, eager)};
}

void print_row(const char* what, const Times& adds, const Times& products) {
  std::printf("%-40s %10.1f %10.1f %12.1f %12.1f\n", what, adds.graph, adds.eager, products.graph, products.eager);
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
  const Tensor xp = full({16, 768}, 1.0, opts(DType::bf16, dev));
  const Tensor w = full({768, 768}, 1.0 / 768, opts(DType::bf16, dev));
  const int products = std::max(1, ops / 3);
  Tensor y, yp;
  const std::unique_ptr<CapturedGraph> g = capture_graph(dev, [&] { y = chain(x, ops); });
  const std::unique_ptr<CapturedGraph> gp = capture_graph(dev, [&] { yp = product_chain(xp, w, products); });
  const auto adds = [&] { (void)chain(x, ops); };
  const auto prods = [&] { (void)product_chain(xp, w, products); };

  const auto run_lanes = [&](bool on_lanes) {
    LaneScope lanes(be, 2);
    Tensor a, b, c, d;
    lanes.use(0);
    a = chain(x, lane_ops);
    c = product_chain(xp, w, lane_ops / 3);
    lanes.use(on_lanes ? 1 : 0);
    b = chain(x, lane_ops);
    d = product_chain(xp, w, lane_ops / 3);
    lanes.join();
    be.synchronize();
  };
  std::printf("lanes_probe: graphs of %d adds [1,768] and of %d products [16,768]x[768,768] bf16, and the same eager;"
              " median µs over %d replays\n", ops, products, reps);
  std::printf("%-40s %10s %10s %12s %12s\n", "", "adds graph", "adds eager", "prods graph", "prods eager");
  print_row("before any lane", measure(be, *g, adds, reps), measure(be, *gp, prods, reps));
  run_lanes(false);
  print_row("after a fork/join, all on home", measure(be, *g, adds, reps), measure(be, *gp, prods, reps));
  run_lanes(true);
  print_row("after work on a second lane", measure(be, *g, adds, reps), measure(be, *gp, prods, reps));
  // Graphs recorded after the lanes: whether only graphs made before are slower, or every graph.
  Tensor y2, yp2;
  const std::unique_ptr<CapturedGraph> g2 = capture_graph(dev, [&] { y2 = chain(x, ops); });
  const std::unique_ptr<CapturedGraph> gp2 = capture_graph(dev, [&] { yp2 = product_chain(xp, w, products); });
  print_row("  graphs recorded after them", measure(be, *g2, adds, reps), measure(be, *gp2, prods, reps));
  return 0;
}
