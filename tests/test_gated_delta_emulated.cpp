// tests/test_gated_delta_emulated.cpp — the CUDA source of the fused gated delta rule
// (kernels/cuda/gated_delta.cuh) compiled for the host and run on the SIMT emulator
// (tests/simt_emulator.h: every thread a fiber; barriers and shuffles with the PTX semantics),
// against the CPU reference kernels (kernels/cpu/gated_delta.cpp): o, M_T and every gradient in
// float32, with outputs, workspace and shared memory NaN at the start. Shapes cover each row
// template (key head dims 3 .. 256), value dims below, at and above one 32-column slice, sequences
// shorter than a segment, with a short last segment and chunk, and over several 64-token
// checkpoints; with and without an initial state; with and without the erase term (Mamba 2's SSD);
// without an output gradient; q and k shared by groups of heads. The same kernels run on a GPU in
// test_cuda_gated_delta.cpp. Run: ./build/tests/test_gated_delta_emulated
#define TTT_SIMT_EMULATE 1
#include "kernels/cuda/gated_delta.cuh"

#include "tests/gated_delta_cases.h"
#include "tests/simt_emulator.h"

using namespace ttt;
using namespace ttt::testing;
namespace gd = ttt::cuda_impl::gdelta;

namespace {

template <int ROWS, bool ERASE> void run_fwd(const gd::Params& p, int64_t blocks) {
  for (int64_t blk = 0; blk < blocks; ++blk)
    simt::emulate_block(gd::THREADS, sizeof(gd::FwdSmem<ROWS>),
                        [&] { gd::fwd_block<ROWS, ERASE>(p, blk, simt::block_smem()); });
}
template <int ROWS, bool ERASE> void run_bwd(const gd::Params& p, int64_t blocks) {
  for (int64_t blk = 0; blk < blocks; ++blk)
    simt::emulate_block(gd::THREADS, sizeof(gd::BwdSmem<ROWS>),
                        [&] { gd::bwd_block<ROWS, ERASE>(p, blk, simt::block_smem()); });
}
template <int ROWS, bool ERASE>
void run_as(const gd::Params& pf, const gd::Params& walk, const gd::Params& pb, int64_t blocks) {
  run_fwd<ROWS, ERASE>(pf, blocks);
  run_fwd<ROWS, ERASE>(walk, blocks);
  run_bwd<ROWS, ERASE>(pb, blocks);
}
template <int ROWS> void run_all(const gd::Params& pf, const gd::Params& walk, const gd::Params& pb, int64_t blocks) {
  if (pf.erase) run_as<ROWS, true>(pf, walk, pb, blocks);
  else run_as<ROWS, false>(pf, walk, pb, blocks);
}

// The launchers' sequence (gated_delta.cu) on the emulator, on float32 CPU buffers.
Grads emulate(const Problem& p) {
  Run u = run_of(p, DType::f32, cpu());
  const Tensor ws = nan_workspace(gd::workspace_of(u.b.s).total() * sizeof(float));
  const gd::Params pf = gd::params_of(u.f), pb = gd::params_of(u.b, static_cast<float*>(ws.data_ptr()));
  gd::Params walk = pb;
  walk.o = nullptr;
  walk.M_final = nullptr;
  const int64_t blocks = u.f.s.batch * u.f.s.heads * gd::slices_of(u.f.s);
  REQUIRE(pf.rows != 0);
  gd::with_rows(pf.rows, [&](auto r) { run_all<decltype(r)::value>(pf, walk, pb, blocks); });
  for (int64_t e = 0; e < gd::reduce_elems(pb); ++e) gd::reduce_at(pb, e);
  return u.r;
}

}  // namespace

TEST_CASE("emulated CUDA gated delta kernels == CPU reference (float32, o, M_T and every gradient)") {
  const std::vector<Problem> cases = {
      make(2, 7, 2, 3, 5, 64, true, 10),      // rows 8, one partial slice, shorter than a tile
      make(1, 70, 1, 16, 40, 64, true, 20),   // two slices (the second partial), two checkpoints, short last segment
      make(1, 9, 2, 40, 32, 64, false, 30),   // rows 16, exactly one slice, no M0
      make(1, 5, 1, 96, 33, 64, true, 40),    // rows 24 (the 125M's d_k), 33 columns
      make(1, 3, 1, 128, 8, 64, true, 50),    // rows 32
      make(1, 130, 1, 8, 8, 64, true, 60, 12.0)};  // three checkpoints, gates near 0
  for (const Problem& p : cases) {
    CAPTURE(p.s.len);
    CAPTURE(p.s.dk);
    CAPTURE(p.s.dv);
    compare(emulate(p), kernel(p, DType::f32), 2e-5, "emulated");
    compare(emulate(linear(p)), kernel(linear(p), DType::f32), 2e-5, "emulated, no erase term");
  }
  // q and k shared by groups of heads (2 groups of 2 heads; one group of 3), both recurrences.
  for (const Problem& p : {grouped(make(2, 20, 4, 8, 40, 64, true, 70), 2, 71), grouped(make(1, 9, 3, 40, 8, 64, true, 72), 1, 73)}) {
    compare(emulate(p), kernel(p, DType::f32), 2e-5, "emulated, groups");
    compare(emulate(linear(p)), kernel(linear(p), DType::f32), 2e-5, "emulated, groups, no erase term");
  }
  // Only M_T has a gradient (d_o null): the staged output gradient must read as zeros.
  const Problem p = without_do(cases[1]);
  compare(emulate(p), kernel(p, DType::f32), 2e-5, "emulated, no output gradient", false);
}

TEST_CASE("emulated CUDA gated delta kernels at key head dims above 128 (two rows a thread in the backward)") {
  for (const Problem& p : {make(1, 6, 1, 192, 8, 64, true, 80), make(1, 5, 1, 256, 33, 64, true, 81)}) {
    CAPTURE(p.s.dk);
    compare(emulate(p), kernel(p, DType::f32), 2e-5, "emulated, wide keys");
    compare(emulate(linear(p)), kernel(linear(p), DType::f32), 2e-5, "emulated, wide keys, no erase term");
  }
}

TEST_CASE("CUDA gated delta coverage: key head dims up to 256") {
  CHECK(gd::rows_for(1) == 8);
  CHECK(gd::rows_for(96) == 24);
  CHECK(gd::rows_for(128) == 32);
  CHECK(gd::rows_for(129) == 48);
  CHECK(gd::rows_for(256) == 64);
  CHECK(gd::rows_for(257) == 0);
}
