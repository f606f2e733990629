// tests/profile_count.h — how many backend calls a piece of code makes, by kernel name, counted by
// the kernel profiler (kernels/profiler.h): for tests that check which path an op or layer took.
// Not a test unit itself.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/profiler.h"

namespace ttt::testing {

// The calls made while fn runs, by kernel (kernels/profiler.h's snapshot).
inline std::vector<KernelStat> profiled_calls(const std::function<void()>& fn) {
  Profiler::reset();
  Profiler::set_enabled(true);
  fn();
  Profiler::set_enabled(false);
  std::vector<KernelStat> calls = Profiler::snapshot();
  Profiler::reset();
  return calls;
}

// Calls made while fn runs to kernels whose name starts with `prefix` (e.g. "gemm").
inline int64_t backend_calls(const std::function<void()>& fn, const std::string& prefix) {
  int64_t n = 0;
  for (const KernelStat& k : profiled_calls(fn))
    if (k.name.rfind(prefix, 0) == 0) n += k.calls;
  return n;
}

}  // namespace ttt::testing
