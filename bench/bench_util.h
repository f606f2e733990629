// bench/bench_util.h — what the kernel benchmarks share (not a benchmark itself).
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "kernels/backend.h"

namespace ttt::bench {

// Median wall time in ms of `reps` runs of f, each synchronized on `be`, after one warm-up run
// (module load, attribute setup, allocator caching).
inline double median_ms(Backend& be, int reps, const std::function<void()>& f) {
  f();
  be.synchronize();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    be.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace ttt::bench
