// tests/test_gated_delta_chunk_emulated.cpp — the CUDA source of the chunked gated delta kernels
// (kernels/cuda/gated_delta_chunk*.cuh) compiled for the host and run on the SIMT emulator
// (tests/simt_emulator.h), in the launchers' order (gated_delta_chunk.cu), against the CPU
// reference kernels (kernels/cpu/gated_delta.cpp, float64): o, M_T and every gradient, with outputs,
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
  const DType f = DType::f32;
  auto in = [&](const Tensor& t) { return t.defined() ? contiguous(t.to(f)) : Tensor(); };
  auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.data_ptr() : nullptr; };
  auto nan_like = [&](const Tensor& t) { return t.defined() ? full(t.shape(), NAN, opts(f)) : Tensor(); };
  auto nan_floats = [&](size_t n) { return full({static_cast<int64_t>(n) + 1}, NAN, opts(f)); };
  const Tensor q = in(p.q), k = in(p.k), v = in(p.v), g = in(p.g), beta = in(p.beta), M0 = in(p.M0),
               d_o = p.with_do ? in(p.d_o) : Tensor(), dMT = in(p.dMT);
  Grads r{nan_like(v), nan_like(dMT), nan_like(q), nan_like(k), nan_like(v), nan_like(g), nan_like(beta), nan_like(M0)};
  GatedDeltaShape s = p.s;
  s.dtype = f;
  s.chunked = true;
  const Tensor wf = nan_floats(gc::workspace_of(s, false).total()), wb = nan_floats(gc::workspace_of(s, true).total());
  GatedDeltaForward fc;
  fc.s = s;
  fc.q = ptr(q), fc.k = ptr(k), fc.v = ptr(v), fc.g = ptr(g), fc.beta = ptr(beta), fc.M0 = ptr(M0);
  fc.o = ptr(r.o), fc.M_final = ptr(r.MT);
  GatedDeltaBackward bc;
  bc.s = s;
  bc.q = fc.q, bc.k = fc.k, bc.v = fc.v, bc.g = fc.g, bc.beta = fc.beta, bc.M0 = fc.M0;
  bc.d_o = ptr(d_o), bc.dM_final = ptr(dMT);
  bc.dq = ptr(r.dq), bc.dk = ptr(r.dk), bc.dv = ptr(r.dv), bc.dg = ptr(r.dg), bc.dbeta = ptr(r.dbeta);
  bc.dM0 = ptr(r.dM0);
  const gc::Params pf = gc::params_of(fc, static_cast<float*>(wf.data_ptr()));
  const gc::Params pb = gc::params_of(bc, static_cast<float*>(wb.data_ptr()));
  if (s.erase) {
    forward<true>(pf);
    backward<true>(pb);
  } else {
    forward<false>(pf);
    backward<false>(pb);
  }
  return r;
}

void check(const Problem& p, const std::string& what, bool outputs = true) {
  compare(emulate(p), kernel(p, DType::f64), 2e-5, what, outputs);
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
