// tests/test_ttt_linear_scan_group.cpp — several fused TTT-Linear forward calls run as one
// (kernels/ttt_linear_scan.h TTTLinearScanForwardGroup, autograd/ops.h ttt_linear_scan_group), as a
// wavefront prefill runs the scans of a wave:
//   - CPU, fp64: the group op's outputs equal each call's own ttt_linear_scan bit for bit, for
//     calls of different lengths, from the shared W0 and from per-sequence states, with different
//     options; clear errors;
//   - CUDA: a group of calls (outputs poisoned) equals each call run alone, bit for bit, and the
//     CPU reference, under the chunk-parallel plan (overlapped and serial) and the walk, for calls of
//     different lengths (so different range counts), float32 and bf16 storage; calls whose plans
//     differ (they do not share a launch) and more calls than one launch takes.
// Run: ./build/tests/test_ttt_linear_scan_group
#include <doctest/doctest.h>

#include "tests/check_close.h"
#include "tests/cuda_test_util.h"
#include "tests/ttt_scan_cases.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

tensor_list detached(const tensor_list& x) {
  tensor_list y;
  for (const Tensor& t : x) y.push_back(t.defined() ? t.detach() : Tensor());
  return y;
}

}  // namespace

TEST_CASE("scan group (CPU, fp64) = each call's own ttt_linear_scan, bit for bit") {
  const std::vector<ScanCase> cases = {{2, 2, 37, 8, 16, true, true, 1},
                                       {2, 2, 32, 8, 16, true, true, 2},
                                       {2, 2, 5, 8, 16, true, true, 1}};
  std::vector<tensor_list> calls;
  std::vector<TTTScanOptions> options;
  uint64_t seed = 20;
  for (const ScanCase& c : cases) {
    calls.push_back(detached(scan_inputs(c, seed += 3)));
    options.push_back(scan_options(c));
  }
  calls.push_back(detached(with_per_sequence_init(scan_inputs(cases[0], 90), cases[0], 91)));  // a later segment
  options.push_back(scan_options(cases[0]));
  NoGradGuard ng;
  const std::vector<tensor_list> got = ttt_linear_scan_group(calls, options);
  REQUIRE(got.size() == calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    const tensor_list& x = calls[i];
    const tensor_list one =
        ttt_linear_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], options[i], nullptr);
    REQUIRE(got[i].size() == 5);
    for (size_t k = 0; k < 5; ++k) CHECK_MESSAGE(max_abs_diff(got[i][k], one[k]) == 0.0, "call ", i, " output ", k);
  }
  CHECK(ttt_linear_scan_group(std::vector<tensor_list>{}, std::vector<TTTScanOptions>{}).empty());
}

TEST_CASE("scan group: clear errors") {
  const ScanCase c{1, 2, 16, 8, 16, true, true, 1};
  const tensor_list x = detached(scan_inputs(c, 5));
  {
    NoGradGuard ng;
    CHECK_THROWS_WITH_AS(ttt_linear_scan_group({x, x}, std::vector<TTTScanOptions>{scan_options(c)}), doctest::Contains("2 calls but 1 options"),
                         std::invalid_argument);
    tensor_list short_call(x.begin(), x.begin() + 8);
    CHECK_THROWS_WITH_AS(ttt_linear_scan_group({short_call}, {scan_options(c)}), doctest::Contains("9 inputs"),
                         std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(ttt_linear_scan_group({x}, {scan_options(c)}), doctest::Contains("forward only"),
                       std::invalid_argument);
}

// --- CUDA: the grouped launch against each call alone and the CPU reference ---------------------

namespace {

struct GroupCall {
  ScanCase c;
  bool per_sequence;
};

// Runs `calls` as one group and each alone on the GPU (outputs poisoned), and each on the CPU.
void check_group(const std::vector<GroupCall>& calls, bool low, bool bio, uint64_t seed) {
  INFO((low ? "bf16 products" : "float32"), (bio ? ", bf16 storage" : ""));
  std::vector<std::unique_ptr<ScanRun>> cpu_runs, alone, grouped;
  for (const GroupCall& g : calls) {
    tensor_list x = scan_inputs(g.c, seed += 7, DType::f32);
    if (g.per_sequence) x = with_per_sequence_init(x, g.c, seed + 1);
    if (bio)
      for (int i = 0; i < 3; ++i) x[i] = x[i].to(DType::bf16).to(DType::f32);
    const Tensor d = rand64({g.c.B, g.c.H, g.c.T, g.c.f}, seed + 2).to(DType::f32);
    tensor_list xg;
    for (const Tensor& t : x) xg.push_back(t.defined() ? t.detach().to(cuda()) : Tensor());
    cpu_runs.push_back(std::make_unique<ScanRun>(g.c, x, d, low));
    alone.push_back(std::make_unique<ScanRun>(g.c, xg, d.to(cuda()), low, bio));
    grouped.push_back(std::make_unique<ScanRun>(g.c, xg, d.to(cuda()), low, bio));
  }
  std::vector<TTTLinearScanForward> fwd;
  for (auto& r : grouped) fwd.push_back(r->forward());
  TTTLinearScanForwardGroup group;
  for (TTTLinearScanForward& f : fwd) group.calls.push_back(&f);
  backend(cuda()).run(group);
  for (size_t i = 0; i < calls.size(); ++i) {
    INFO("call ", i, ": ", calls[i].c.str(), calls[i].per_sequence ? " per-sequence state" : "");
    auto f_cpu = cpu_runs[i]->forward(), f_alone = alone[i]->forward();
    backend(cpu()).run(f_cpu);
    backend(cuda()).run(f_alone);
    const auto ref = cpu_runs[i]->forward_results(), one = alone[i]->forward_results(), got = grouped[i]->forward_results();
    for (size_t k = 0; k < got.size(); ++k) {
      CHECK_MESSAGE(max_abs_diff(got[k].second.to(cpu()), one[k].second.to(cpu())) == 0.0, got[k].first);
      check_rel_norm(got[k].second.to(cpu()), ref[k].second, low ? 3e-2 : 2e-5, got[k].first);
    }
  }
}

}  // namespace

TEST_CASE("CUDA scan group = each call alone (bit for bit) = the CPU reference, every plan") {
  TTT_REQUIRE_GPU();
  // At B·H = 3 the automatic plan is chunk-parallel (overlapped) from 16 chunks: the 77-token call
  // walks instead, so it runs in a launch of its own.
  const std::vector<GroupCall> calls = {{{1, 3, 300, 64, 16, true, true, 1}, false},
                                        {{1, 3, 520, 64, 16, true, true, 1}, true},
                                        {{1, 3, 77, 64, 16, true, true, 1}, false},
                                        {{1, 3, 260, 64, 16, true, true, 1}, true}};
  uint64_t seed = 700;
  for (const char* plan : {"auto", "chunks-serial", "chunks:3", "walk"}) {
    ForceScanPlan force(plan);
    INFO("TTT_LINEAR_SCAN_PLAN=", plan);
    for (bool low : {false, true}) {
      check_group(calls, low, false, seed += 31);
      if (low) check_group(calls, low, true, seed += 31);
    }
  }
}

TEST_CASE("CUDA scan group: more calls than one launch takes, other head dims, no LN or bias") {
  TTT_REQUIRE_GPU();
  std::vector<GroupCall> many;
  for (int i = 0; i < TTTLinearScanForwardGroup::kMaxCalls + 3; ++i)
    many.push_back({{1, 2, 256 + 16 * (i % 3), 32, 16, true, true, 1}, i % 2 == 1});
  check_group(many, true, true, 900);
  check_group({{{2, 2, 300, 128, 16, false, true, 1}, false}, {{2, 2, 290, 128, 16, false, true, 1}, true}}, true, false,
              950);
  check_group({{{1, 2, 400, 64, 16, true, false, 1}, false}, {{1, 2, 333, 64, 16, true, false, 1}, true}}, false, false,
              990);
}
