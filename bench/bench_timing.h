// bench/bench_timing.h — what the kernel benchmarks share: the median wall time of synchronized runs
// and the [B, H, T, F] view of a tensor the fused scan calls take.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "autograd/tensor.h"
#include "kernels/backend.h"
#include "kernels/ttt_linear_scan.h"

namespace ttt::bench {

// Median milliseconds of `reps` runs of f, each followed by a device synchronize, after one warm-up
// run (module load, attribute setup).
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

inline BHTView bht(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; }

}  // namespace ttt::bench
