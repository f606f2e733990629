// tests/test_ttt_scan_emulated.cpp — the CUDA source of the fused TTT-Linear scan
// (kernels/cuda/ttt_linear_{fwd,bwd}.cuh) compiled for the host and run on the SIMT emulator
// (tests/simt_emulator.h: every thread a fiber; barriers, shuffles, ldmatrix and the bf16 MMA with
// the PTX ISA's semantics), against the CPU reference. This checks the kernels' indexing, barriers,
// fragment layouts and math in CI without a GPU; the same kernels run on a GPU in
// test_ttt_linear_scan.cpp. Outputs start as NaN (and so does shared memory).
#define TTT_SIMT_EMULATE 1
#include "kernels/cuda/ttt_linear_chain.cuh"
#include "kernels/cuda/ttt_linear_fwd_par.cuh"

#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "tests/check_close.h"
#include "tests/layer_helpers.h"
#include "tests/simt_emulator.h"
#include "tests/ttt_scan_cases.h"

using namespace ttt;
using namespace ttt::testing;
namespace tk = ttt::cuda_impl::tttk;

namespace {

// The forward's launch sequence of kernels/cuda/ttt_linear_scan.cu for the shape's plan.
template <class C>
void emulate_forward(TTTLinearScanForward& fc) {
  tk::Params pf = tk::params_of(fc);
  const int blocks = pf.B * pf.H;
  if (!pf.par) {
    for (int bh = 0; bh < blocks; ++bh)
      simt::emulate_block(C::THREADS, sizeof(tk::FwdSmem<C>), [&] { tk::fwd_block<C>(pf, bh, simt::block_smem()); });
    return;
  }
  std::vector<float> snapshots(static_cast<size_t>(tk::fwd_snapshot_floats(pf, C::F) + blocks * pf.R),
                               std::numeric_limits<float>::quiet_NaN());
  pf.ws = snapshots.data();
  if (pf.overlap) {  // the one grid of fwd_overlap_block, in its index order (the walks come first)
    std::fill_n(tk::fwd_done(pf, C::F, 0, 0), blocks * pf.R, 0u);
    for (int blk = 0; blk < tk::fwd_overlap_blocks(pf); ++blk)
      simt::emulate_block(C::THREADS, std::max(sizeof(tk::ReplaySmem<C>), sizeof(tk::FwdSmem<C>)),
                          [&] { tk::fwd_overlap_block<C>(pf, blk, simt::block_smem()); });
    return;
  }
  for (int bh = 0; bh < blocks; ++bh)
    simt::emulate_block(C::THREADS, sizeof(tk::ReplaySmem<C>), [&] { tk::fwd_state_block<C>(pf, bh, simt::block_smem()); });
  for (int blk = 0; blk < blocks * pf.R; ++blk)
    simt::emulate_block(C::THREADS, sizeof(tk::FwdSmem<C>), [&] { tk::fwd_out_block<C>(pf, blk, simt::block_smem()); });
}

template <class C>
void emulate(ScanRun& run) {
  TTTLinearScanForward fc = run.forward();
  emulate_forward<C>(fc);
  const int blocks = static_cast<int>(run.s.batch * run.s.heads);
  TTTLinearScanBackward bc = run.backward();
  const tk::Params pb = tk::params_of(bc);
  for (int blk = 0; blk < blocks * pb.NG; ++blk)
    simt::emulate_block(C::THREADS, sizeof(tk::ReplaySmem<C>), [&] { tk::replay_block<C>(pb, blk, simt::block_smem()); });
  // The launch sequence of kernels/cuda/ttt_linear_scan.cu for the shape's plan.
  auto pass = [&](auto mode, int n) {
    for (int blk = 0; blk < n; ++blk)
      simt::emulate_block(C::THREADS, sizeof(tk::BwdSmem<C>),
                          [&] { tk::bwd_block<C, decltype(mode)::value>(pb, blk, simt::block_smem()); });
  };
  if (!pb.par) {
    pass(std::integral_constant<tk::Mode, tk::Mode::walk>{}, blocks);
  } else if (pb.overlap) {
    // The one grid of bwd_overlap_block, its blocks run in an order that meets every wait: the
    // direct blocks, the walks, the tokens blocks (a block waiting for an unset flag aborts).
    std::fill_n(tk::flags_base(pb, C::F), tk::flag_count(pb), 0u);
    const int n = blocks, nr = blocks * pb.R;
    std::vector<int> order;
    for (int i = n; i < n + nr; ++i) order.push_back(i);
    for (int i = 0; i < n; ++i) order.push_back(i);
    for (int i = n + nr; i < n + 2 * nr; ++i) order.push_back(i);
    REQUIRE(static_cast<int64_t>(order.size()) == tk::overlap_blocks(pb));
    for (int blk : order)
      simt::emulate_block(C::THREADS, std::max(sizeof(tk::BwdSmem<C>), sizeof(tk::ChainSmem<C>)),
                          [&] { tk::bwd_overlap_block<C>(pb, blk, simt::block_smem()); });
  } else {
    pass(std::integral_constant<tk::Mode, tk::Mode::direct>{}, blocks * pb.R);
    for (int bh = 0; bh < blocks; ++bh)
      simt::emulate_block(C::THREADS, sizeof(tk::ChainSmem<C>), [&] { tk::chain_block<C>(pb, bh, simt::block_smem()); });
    pass(std::integral_constant<tk::Mode, tk::Mode::tokens>{}, blocks * pb.R);
  }
  const float* partials = tk::partials_base(pb, C::F);
  for (int64_t i = 0; i < tk::reduce_count(pb.H, C::F, pb.K); ++i)
    tk::reduce_partials_at(i, partials, pb.B, pb.H, C::F, pb.K, pb.R, static_cast<float*>(bc.dw0),
                           static_cast<float*>(bc.db0), static_cast<float*>(bc.dln_w), static_cast<float*>(bc.dln_b),
                           static_cast<float*>(bc.dtok));
}

// bio: the emulated kernels read and write the [B, H, T, f] tensors as bf16 (the reference gets the
// same bf16-rounded values as float32).
template <int F>
void check_case(ScanCase c, bool mma, uint64_t seed, bool bio = false) {
  c.f = F;
  const std::string what = c.str() + (mma ? " bf16 MMA" : " float32") + (bio ? " bf16 storage" : "");
  INFO(what);
  tensor_list x = scan_inputs(c, seed, DType::f32);
  Tensor d = rand64({c.B, c.H, c.T, c.f}, seed + 1).to(DType::f32);
  if (bio) {
    for (int i = 0; i < 3; ++i) x[i] = x[i].to(DType::bf16).to(DType::f32);
    d = d.to(DType::bf16).to(DType::f32);
  }
  ScanRun ref(c, x, d, mma), emu(c, x, d, mma, bio);
  auto f = ref.forward();
  backend(cpu()).run(f);
  auto b = ref.backward();
  backend(cpu()).run(b);
  if (bio)
    emulate<tk::Cfg<F, true, true>>(emu);
  else if (mma)
    emulate<tk::Cfg<F, true>>(emu);
  else
    emulate<tk::Cfg<F, false>>(emu);
  const auto r = ref.results(), e = emu.results();
  for (size_t i = 0; i < r.size(); ++i) check_rel_norm(e[i].second, r[i].second, mma ? 3e-2 : 2e-5, r[i].first);
}

}  // namespace

TEST_CASE("emulated CUDA scan equals the CPU reference: float32 products, head_dim 16") {
  check_case<16>({2, 2, 37, 16, 16, true, true, 2}, false, 1);  // remainder chunk, groups of 2
  check_case<16>({1, 1, 5, 16, 16, true, true, 1}, false, 2);   // T < K
  check_case<16>({1, 2, 24, 16, 8, true, true, 3}, false, 3);   // K = 8
  check_case<16>({1, 1, 6, 16, 1, true, true, 2}, false, 4);    // K = 1
  check_case<16>({1, 2, 20, 16, 16, false, true, 1}, false, 5); // no LN + residual
  check_case<16>({2, 1, 20, 16, 16, true, false, 1}, false, 6); // no bias
}

TEST_CASE("emulated CUDA scan equals the CPU reference: bf16 tensor-core products, head_dim 16 and 64") {
  check_case<16>({2, 2, 37, 16, 16, true, true, 2}, true, 11);
  check_case<16>({1, 2, 19, 16, 16, false, false, 1}, true, 12);
  check_case<64>({1, 1, 35, 64, 16, true, true, 2}, true, 13);
}

TEST_CASE("emulated CUDA scan with bf16 storage of XQ, XK, XV, out and their gradients equals the CPU reference") {
  check_case<16>({2, 2, 37, 16, 16, true, true, 2}, true, 31, true);   // remainder chunk, groups of 2
  check_case<16>({1, 2, 19, 16, 8, false, false, 3}, true, 32, true);  // K = 8, no LN, no bias
  check_case<64>({1, 1, 35, 64, 16, true, true, 4}, true, 33, true);
}

TEST_CASE("emulated CUDA scan: float32 products, head_dim 64 and 96 (multi-warp paths)") {
  check_case<64>({1, 1, 21, 64, 16, true, true, 1}, false, 21);
  check_case<96>({1, 1, 18, 96, 16, true, false, 1}, false, 22);
}

TEST_CASE("emulated chunk-parallel backward (direct pass, state-gradient walk, tokens pass) equals the CPU reference") {
  for (const char* kind : {"chunks", "chunks-serial"}) {  // one grid with flags, or three kernels
    INFO(kind);
    ForceScanPlan plan(kind);  // one chunk per range at these sizes
    check_case<16>({2, 2, 37, 16, 16, true, true, 2}, false, 51);  // remainder chunk, groups of 2
    check_case<16>({1, 2, 24, 16, 8, true, true, 3}, false, 52);   // K = 8
    check_case<16>({1, 2, 20, 16, 16, false, true, 1}, false, 53); // no LN + residual
    check_case<16>({2, 1, 20, 16, 16, true, false, 1}, false, 54); // no bias
    check_case<16>({1, 1, 6, 16, 1, true, true, 2}, false, 55);    // K = 1
    check_case<64>({1, 1, 35, 64, 16, true, true, 2}, true, 56);   // bf16 products
    check_case<64>({1, 1, 35, 64, 16, true, true, 4}, true, 57, true);  // bf16 storage
  }
  for (const char* kind : {"chunks:3", "chunks-serial:3"}) {  // ranges of 3 chunks (5 chunks: the last shorter)
    INFO(kind);
    ForceScanPlan plan(kind);
    check_case<16>({2, 2, 75, 16, 16, true, true, 2}, false, 58);
    check_case<16>({1, 2, 70, 16, 8, false, false, 1}, true, 59, true);
  }
  ForceScanPlan plan("chunks:2");
  const tk::Params p = tk::params_of(ScanRun({1, 1, 75, 16, 16, true, true, 1},
                                             scan_inputs({1, 1, 75, 16, 16, true, true, 1}, 1, DType::f32),
                                             rand64({1, 1, 75, 16}, 2).to(DType::f32), false)
                                         .backward());
  CHECK(p.par);
  CHECK(p.overlap);
  CHECK(p.Q == 2);
  CHECK(p.R == 3);  // 5 chunks
}

TEST_CASE("the backward's plan: walk for many (batch, head) pairs, chunk-parallel for few long ones") {
  TTTLinearScanShape s;
  s.batch = 8, s.heads = 12, s.len = 2048, s.head_dim = 64, s.mini_batch = 16;
  CHECK_FALSE(ttt_linear_scan_plan(s).chunk_parallel);
  s.batch = 2, s.len = 8192;
  const TTTLinearScanPlan p = ttt_linear_scan_plan(s);
  CHECK(p.chunk_parallel);
  CHECK(p.per_range == 24);  // 512 chunks in ranges of 24: 22 per (b, h), 528 blocks
  CHECK(p.ranges == 22);
  CHECK(p.fwd_per_range == 8);  // the forward's output blocks: a quarter of 24 chunks, at least 8
  CHECK(p.overlap);
  {
    ForceScanPlan serial("chunks-serial:8");
    const TTTLinearScanPlan q = ttt_linear_scan_plan(s);
    CHECK(q.chunk_parallel);
    CHECK_FALSE(q.overlap);
    CHECK(q.per_range == 8);
    CHECK(q.fwd_per_range == 2);  // forced: a quarter, however short
  }
  for (const char* bad_n : {"chunks:0", "chunks-serial:x", "chunks-serial:"}) {
    ForceScanPlan bad(bad_n);
    CHECK_THROWS_WITH_AS(ttt_linear_scan_plan(s), doctest::Contains("needs a whole number"), std::invalid_argument);
  }
  s.len = 128;  // 8 chunks: too few to split
  CHECK_FALSE(ttt_linear_scan_plan(s).chunk_parallel);
  ForceScanPlan bad("sideways");
  CHECK_THROWS_WITH_AS(ttt_linear_scan_plan(s), doctest::Contains("TTT_LINEAR_SCAN_PLAN"), std::invalid_argument);
}

TEST_CASE("emulated CUDA scan from a per-sequence state (decoding) equals the CPU reference: forward outputs") {
  // W0 [B, H, f, f], b0 [B, H, f]: each (b, h) block loads its own initial state.
  struct Case {
    ScanCase c;
    bool mma;
  };
  uint64_t seed = 40;
  for (const char* plan : {"walk", "chunks:2", "chunks-serial:2"})
  for (const Case& k : {Case{{2, 2, 37, 16, 16, true, true, 1}, false}, Case{{3, 1, 16, 16, 8, true, false, 1}, false},
                        Case{{2, 2, 21, 16, 16, true, true, 1}, true}}) {
    ForceScanPlan force(plan);
    const ScanCase& c = k.c;
    INFO(c.str(), k.mma ? " bf16 MMA" : " float32");
    seed += 3;
    const tensor_list x = with_per_sequence_init(scan_inputs(c, seed, DType::f32), c, seed + 1);
    const Tensor d = rand64({c.B, c.H, c.T, c.f}, seed + 2).to(DType::f32);
    ScanRun ref(c, x, d, k.mma), emu(c, x, d, k.mma);
    auto f = ref.forward();
    backend(cpu()).run(f);
    TTTLinearScanForward fc = emu.forward();
    const tk::Params pf = tk::params_of(fc);
    REQUIRE(pf.init_bh);
    CHECK(pf.par == (std::string(plan) != "walk"));
    if (k.mma)
      emulate_forward<tk::Cfg<16, true>>(fc);
    else
      emulate_forward<tk::Cfg<16, false>>(fc);
    const auto r = ref.forward_results(), e = emu.forward_results();
    for (size_t i = 0; i < r.size(); ++i) check_rel_norm(e[i].second, r[i].second, k.mma ? 3e-2 : 2e-5, r[i].first);
  }
}
