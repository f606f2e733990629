// kernels/profiler.h — where the time goes: a per-kernel profile of every backend call.
//
// While enabled, backend(device) hands out a ProfilingBackend that forwards each call to the real
// backend and records (kernel name, calls, time). Each call is timed between two device
// synchronizations, so the times are those of the kernels run one at a time, launch overhead
// included (no overlap) — the total is therefore an upper bound of the unprofiled step, and the
// per-kernel shares say which kernels and how many launches a step costs. Each call also counts
// the bytes it must move (every operand's distinct elements once: a broadcast operand counts its
// own size), which is device-independent: a CPU run gives the GPU's memory traffic per kernel.
// `ttt bench --profile` prints the table, and where the memory peaked (the allocation and the
// call before it), which says whether a peak is the forward's saved tensors or a backward's workspace.
#pragma once

#include <string>
#include <vector>

#include "kernels/backend.h"

namespace ttt {

struct KernelStat {
  std::string name;  // e.g. "gemm bf16->f32", "unary exp", "attention_fwd"
  int64_t calls = 0;
  double seconds = 0;
  double bytes = 0;  // bytes the calls must move: inputs read once, outputs written once
};

// Where a profiled run's memory peaked: the bytes held at the peak, the allocation that set it and
// the backend call that ran last before it (the op that allocated is the one after that call).
struct MemoryPeakStat {
  size_t bytes = 0;
  size_t alloc_bytes = 0;
  std::string after;  // name of the last backend call before the allocation ("" if none)
};

// Calls and time of one kernel inside one scope: the autograd node whose backward issued it (the
// engine names it; ProfileScope), "gradient accumulation", or "forward" outside any scope.
struct ScopedKernelStat {
  std::string scope, kernel;
  int64_t calls = 0;
  double seconds = 0;
  double bytes = 0;
};

struct Profiler {
  static bool enabled();
  static void set_enabled(bool on);
  static void reset();
  // Sorted by time, largest first.
  static std::vector<KernelStat> snapshot();
  // Records one call (used by the profiling backend).
  static void add(const std::string& name, double seconds, double bytes = 0);
  // The largest memory_allocated() seen after an allocation while enabled (reset() clears it).
  static MemoryPeakStat memory_peak();
  // By (scope, kernel), sorted by time, largest first.
  static std::vector<ScopedKernelStat> scoped_snapshot();
  static void note_allocation(size_t held, size_t alloc_bytes);
};

// While alive, the backend calls this thread makes count toward `scope` (a string that outlives
// the guard, e.g. an autograd node's name); nested guards restore the outer scope.
class ProfileScope {
 public:
  explicit ProfileScope(const char* scope);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const char* prev_;
};

// The profiling wrapper of `inner` (kept per device by backend()).
Backend& profiling_backend(Backend& inner);

}  // namespace ttt
