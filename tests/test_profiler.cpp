// tests/test_profiler.cpp — the kernel profiler counts and names every backend call while enabled,
// and nothing while disabled.
#include <doctest/doctest.h>

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
