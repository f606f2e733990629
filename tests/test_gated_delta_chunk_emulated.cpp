// tests/test_gated_delta_chunk_emulated.cpp — the CUDA source of the chunked gated delta kernels
// (kernels/cuda/gated_delta_chunk*.cuh) compiled for the host and run on the SIMT emulator
// (tests/simt_emulator.h), in the launchers' order (gated_delta_chunk.cu), against the CPU
// reference kernels (kernels/cpu/gated_delta.cpp, float64): o, M_T and every gradient, the block
// products on the CUDA cores and on the tensor cores (3xTF32, the emulated mma.m16n8k8), with outputs,
// workspace and shared memory NaN at the start. Shapes: key head dims 3 .. 128, value dims below,
// at and above one 32-column tile, sequences shorter than a chunk, with a short last chunk and over
// several chunks; gates near 0 (states that vanish inside a chunk); with and without an initial
// state, the erase term, an output gradient; q and k shared by groups of heads. The same kernels run
// on a GPU in test_cuda_gated_delta.cpp. Run: ./build/tests/test_gated_delta_chunk_emulated
#define TTT_SIMT_EMULATE 1
#include "kernels/cuda/gated_delta_chunk_bwd.cuh"

#include "tests/gated_delta_cases.h"
#include "tests/simt_emulator.h"

using namespace ttt;
using namespace ttt::testing;
namespace gc = ttt::cuda_impl::gdchunk;

namespace {

template <class Body> void run_blocks(int64_t blocks, int smem_floats, Body body) {
  for (int64_t blk = 0; blk < blocks; ++blk)
    simt::emulate_block(gc::THREADS, sizeof(float) * smem_floats, [&] { body(blk, simt::block_smem()); });
}

template <bool E> void forward(const gc::Params& p) {
  const int64_t chunks = p.batch * p.heads * p.chunks, slices = p.batch * p.heads * p.slices;
  run_blocks(chunks, gc::prep_smem_floats(p.dk_dim), [&](int64_t b, char* s) { gc::prep_block<E>(p, b, s); });
  run_blocks(slices, gc::state_smem_floats(p.dk_dim), [&](int64_t b, char* s) { gc::state_block<E>(p, b, s); });
  if (p.o) run_blocks(chunks, gc::out_smem_floats(p.dk_dim), [&](int64_t b, char* s) { gc::out_block(p, b, s); });
}
template <bool E> void backward(const gc::Params& p) {
  gc::Params walk = p;
  walk.M_final = nullptr;
  forward<E>(walk);
  const int64_t chunks = p.batch * p.heads * p.chunks, slices = p.batch * p.heads * p.slices;
  run_blocks(slices, gc::dstate_smem_floats(p.dk_dim), [&](int64_t b, char* s) { gc::dstate_block<E>(p, b, s); });
  run_blocks(chunks, gc::grads_smem_floats(p.dk_dim), [&](int64_t b, char* s) { gc::grads_block<E>(p, b, s); });
  if (p.heads_per_group > 1)
    for (int64_t e = 0; e < gc::reduce_elems(p); ++e) gc::reduce_at(p, e);
}

// The launchers' sequence on the emulator, on float32 CPU buffers.
Grads emulate(const Problem& p) {
  Run u = run_of(p.s.chunked ? p : chunked(p), DType::f32, cpu());
  const Tensor wf = nan_workspace(gc::workspace_of(u.f.s, false).total() * sizeof(float));
  const Tensor wb = nan_workspace(gc::workspace_of(u.b.s, true).total() * sizeof(float));
  const gc::Params pf = gc::params_of(u.f, static_cast<float*>(wf.data_ptr()));
  const gc::Params pb = gc::params_of(u.b, static_cast<float*>(wb.data_ptr()));
  if (pf.erase) {
    forward<true>(pf);
    backward<true>(pb);
  } else {
    forward<false>(pf);
    backward<false>(pb);
  }
  return u.r;
}

// The chunked kernels on the CUDA cores and on the tensor cores (3xTF32), against the float64 reference.
void check(const Problem& p, const std::string& what, bool outputs = true) {
  const Grads ref = kernel(p, DType::f64);
  compare(emulate(p), ref, 2e-5, what, outputs);
  compare(emulate(chunked_tc(p)), ref, 2e-5, what + ", tensor cores", outputs);
}

}  // namespace

TEST_CASE("emulated chunked CUDA gated delta kernels == CPU reference (o, M_T and every gradient)") {
  const std::vector<Problem> cases = {
      make(2, 7, 2, 3, 5, 64, true, 10),      // shorter than a chunk, one partial value tile
      make(1, 70, 1, 16, 40, 64, true, 20),   // three chunks (the last of 6 tokens), two value tiles
      make(1, 9, 2, 40, 32, 64, false, 30),   // exactly one value tile, no M0
      make(1, 37, 1, 96, 33, 64, true, 40),   // the 125M's d_k, 33 columns, two chunks
      make(1, 33, 1, 128, 8, 64, true, 50),   // the widest key head, one token past a chunk
      make(1, 130, 1, 8, 8, 64, true, 60, 12.0)};  // five chunks, gates near 0
  for (const Problem& p : cases) {
    CAPTURE(p.s.len);
    CAPTURE(p.s.dk);
    CAPTURE(p.s.dv);
    check(p, "emulated chunked");
    check(linear(p), "emulated chunked, no erase term");
  }
  for (const Problem& p : {grouped(make(2, 40, 4, 8, 40, 64, true, 70), 2, 71), grouped(make(1, 9, 3, 40, 8, 64, true, 72), 1, 73)}) {
    check(p, "emulated chunked, groups");
    check(linear(p), "emulated chunked, groups, no erase term");
  }
  check(without_do(cases[1]), "emulated chunked, no output gradient", false);
}

TEST_CASE("chunked CUDA gated delta coverage: key head dims up to 128") {
  GatedDeltaShape s{1, 64, 1, 128, 64, 64, DType::f32};
  s.chunked = true;
  CHECK(gc::grads_smem_floats(128) * sizeof(float) <= 227 * 1024);  // one block fits an H100 / H200 SM
  CHECK(gc::chunks_of(s) == 2);
  CHECK(gc::slices_of(s) == 2);
}
