// tests/test_profiler.cpp — the kernel profiler counts and names every backend call while enabled,
// and nothing while disabled.
#include <doctest/doctest.h>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/profiler.h"

using namespace ttt;

namespace {
const KernelStat* find(const std::vector<KernelStat>& v, const std::string& name) {
  for (auto& k : v)
    if (k.name == name) return &k;
  return nullptr;
}
}  // namespace

TEST_CASE("profiler: calls by kernel name, only while enabled") {
  Tensor a = ones({64, 64}), b = ones({64, 64});
  Profiler::reset();
  (void)add(a, b);  // disabled: not counted
  Profiler::set_enabled(true);
  for (int i = 0; i < 3; ++i) (void)add(a, b);
  (void)matmul(a, b);
  (void)exp(a);
  Profiler::set_enabled(false);
  (void)add(a, b);
  auto s = Profiler::snapshot();
  const KernelStat* k = find(s, "binary add");
  REQUIRE(k);
  CHECK(k->calls == 3);
  CHECK(k->seconds >= 0);
  REQUIRE(find(s, "unary exp"));
  CHECK(find(s, "unary exp")->calls == 1);
  REQUIRE(find(s, "gemm float32->float32"));
  Profiler::reset();
  CHECK(Profiler::snapshot().empty());
}

TEST_CASE("profiler: the memory peak, the allocation that set it and the call before it") {
  Tensor a = ones({64, 64});
  Profiler::reset();
  Profiler::set_enabled(true);
  const size_t held0 = backend(cpu()).memory_allocated();
  Tensor e = exp(a);  // allocates its output (16 KiB), then runs "unary exp"
  Tensor big;
  {
    Tensor n = neg(a);          // "unary neg" after the output of neg is allocated
    big = empty({256, 256});    // 256 KiB: the largest holding so far, right after "unary neg"
  }
  Tensor s = sqrt(a);           // n freed first: less held than at the peak
  Profiler::set_enabled(false);
  const MemoryPeakStat p = Profiler::memory_peak();
  CHECK(p.alloc_bytes == 256 * 256 * 4);
  CHECK(p.after == "unary neg");
  CHECK(p.bytes >= held0 + (2 * 64 * 64 + 256 * 256) * 4);
  CHECK(p.bytes == backend(cpu()).memory_allocated());  // n is gone and s (the same size) came
  Profiler::reset();
  CHECK(Profiler::memory_peak().bytes == 0);
  CHECK(Profiler::memory_peak().after.empty());
}

TEST_CASE("profiler: calls by scope, the backward's by autograd node, nested scopes restore the outer one") {
  Tensor a = ones({8, 8}).set_requires_grad(true);
  Profiler::reset();
  Profiler::set_enabled(true);
  Tensor y = exp(a);  // forward: no scope
  {
    ProfileScope outer("outer");
    (void)neg(a);
    {
      ProfileScope inner("inner");
      (void)neg(a);
    }
    (void)neg(a);
  }
  backward({sum(y)});  // exp's backward multiplies by its output, under the node's name
  Profiler::set_enabled(false);
  int64_t outer = 0, inner = 0, fwd_exp = 0, bwd_mul = 0;
  for (const ScopedKernelStat& k : Profiler::scoped_snapshot()) {
    if (k.scope == "outer" && k.kernel == "unary neg") outer += k.calls;
    if (k.scope == "inner" && k.kernel == "unary neg") inner += k.calls;
    if (k.scope == "forward" && k.kernel == "unary exp") fwd_exp += k.calls;
    if (k.scope == "exp" && k.kernel == "binary mul") bwd_mul += k.calls;
  }
  CHECK(outer == 2);
  CHECK(inner == 1);
  CHECK(fwd_exp == 1);
  CHECK(bwd_mul == 1);
  Profiler::reset();
  CHECK(Profiler::scoped_snapshot().empty());
}
