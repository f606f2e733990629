// tests/test_selective_scan_emulated.cpp — the CUDA source of the fused Mamba-1 selective scan
// (kernels/cuda/selective_scan.cuh) compiled for the host and run on the SIMT emulator
// (tests/simt_emulator.h: every thread a fiber; barriers and shuffles with the PTX semantics), against
// the CPU reference kernels (kernels/cpu/selective_scan.cpp): y and every gradient, float32, outputs,
// workspace and shared memory NaN at the start. Shapes: one and two channel blocks, a last chunk of
// 13 steps, a sequence shorter than a chunk, several chunks; the forward from an initial state
// with the final state (decoding, prefill). The same kernels run on a GPU in
// test_cuda_selective_scan.cpp. Run: ./build/tests/test_selective_scan_emulated
#define TTT_SIMT_EMULATE 1
#include "kernels/cuda/selective_scan.cuh"

#include "tests/selective_scan_cases.h"
#include "tests/simt_emulator.h"

using namespace ttt;
using namespace ttt::testing;
namespace sk = ttt::cuda_impl::sscan;

namespace {

// The kernels' blocks and reductions on the emulator, on float32 CPU buffers.
SScanOut emulate(const SScanProblem& p) {
  auto in = [&](const Tensor& x) { return contiguous(x.to(DType::f32)); };
  auto nan_like = [&](const Tensor& x) { return full(x.shape(), NAN, opts(DType::f32)); };
  auto nan_floats = [&](size_t bytes) { return full({static_cast<int64_t>(bytes / 4) + 1}, NAN, opts(DType::f32)); };
  const Tensor u = in(p.u), d = in(p.delta), A = in(p.A), B = in(p.B), C = in(p.C), D = in(p.D), bias = in(p.bias),
               dy = in(p.dy);
  SScanOut o{{nan_like(u), nan_like(u), nan_like(u), nan_like(A), nan_like(B), nan_like(C), nan_like(D),
              nan_like(bias)}};
  SelectiveScanShape s = p.s;
  s.dtype = DType::f32;
  const Tensor states = nan_floats(sk::states_elems(s) * 4), ws = nan_floats(sk::workspace_bytes(s));
  SelectiveScanForward f;
  f.s = s;
  f.u = u.data_ptr(), f.delta = d.data_ptr(), f.A = A.data_ptr(), f.B = B.data_ptr(), f.C = C.data_ptr();
  f.D = D.data_ptr(), f.bias = bias.data_ptr(), f.y = o.t[0].data_ptr(), f.states = states.data_ptr();
  const sk::Params pf = sk::params_of(f);
  const int blocks = static_cast<int>(pf.batch * pf.groups);
  for (int blk = 0; blk < blocks; ++blk)
    simt::emulate_block(sk::THREADS, sizeof(sk::FwdSmem), [&] { sk::fwd_block(pf, blk, simt::block_smem()); });
  SelectiveScanBackward k;
  k.s = s;
  k.u = f.u, k.delta = f.delta, k.A = f.A, k.B = f.B, k.C = f.C, k.D = f.D, k.bias = f.bias;
  k.dy = dy.data_ptr(), k.states = states.data_ptr(), k.workspace = ws.data_ptr();
  k.du = o.t[1].data_ptr(), k.ddelta = o.t[2].data_ptr(), k.dA = o.t[3].data_ptr(), k.dB = o.t[4].data_ptr();
  k.dC = o.t[5].data_ptr(), k.dD = o.t[6].data_ptr(), k.dbias = o.t[7].data_ptr();
  const sk::Params pb = sk::params_of(k);
  for (int blk = 0; blk < blocks; ++blk)
    simt::emulate_block(sk::THREADS, sizeof(sk::BwdSmem), [&] { sk::bwd_block(pb, blk, simt::block_smem()); });
  for (int64_t i = 0; i < s.batch * s.len * sk::N; ++i)
    sk::reduce_bc_at(i, pb, static_cast<float*>(k.dB), static_cast<float*>(k.dC));
  for (int64_t i = 0; i < s.channels * sk::N; ++i)
    sk::reduce_params_at(i, pb, static_cast<float*>(k.dA), static_cast<float*>(k.dD), static_cast<float*>(k.dbias));
  for (Tensor& t : o.t) t = t.to(DType::f64);
  return o;
}

// The forward blocks from h0, returning y and h_final.
tensor_list emulate_forward_state(const SScanProblem& p, const Tensor& h0) {
  auto in = [&](const Tensor& x) { return contiguous(x.to(DType::f32)); };
  const Tensor u = in(p.u), d = in(p.delta), A = in(p.A), B = in(p.B), C = in(p.C), D = in(p.D), bias = in(p.bias),
               h = in(h0);
  Tensor y = full(u.shape(), NAN, opts(DType::f32)), hT = full(h.shape(), NAN, opts(DType::f32));
  SelectiveScanForward f;
  f.s = p.s;
  f.s.dtype = DType::f32;
  f.u = u.data_ptr(), f.delta = d.data_ptr(), f.A = A.data_ptr(), f.B = B.data_ptr(), f.C = C.data_ptr();
  f.D = D.data_ptr(), f.bias = bias.data_ptr(), f.h0 = h.data_ptr(), f.y = y.data_ptr(), f.h_final = hT.data_ptr();
  const sk::Params pf = sk::params_of(f);
  for (int blk = 0; blk < static_cast<int>(pf.batch * pf.groups); ++blk)
    simt::emulate_block(sk::THREADS, sizeof(sk::FwdSmem), [&] { sk::fwd_block(pf, blk, simt::block_smem()); });
  return {y.to(DType::f64), hT.to(DType::f64)};
}

}  // namespace

TEST_CASE("emulated CUDA selective scan == CPU reference (float32, y and every gradient)") {
  const std::vector<SScanProblem> cases = {
      make_sscan(2, 45, 16, 16, 10),  // two chunks, the last of 13 steps; two batch elements
      make_sscan(1, 9, 32, 16, 20),   // two channel blocks; shorter than a chunk
      make_sscan(1, 96, 16, 16, 30),  // three whole chunks
  };
  for (const SScanProblem& p : cases) {
    CAPTURE(p.s.batch);
    CAPTURE(p.s.len);
    CAPTURE(p.s.channels);
    compare_sscan(emulate(p), run_sscan_kernels(p, DType::f32, cpu()), 2e-5, "emulated vs CPU reference");
  }
}

TEST_CASE("emulated CUDA selective scan forward from h0 with h_final == CPU reference (float32)") {
  const SScanProblem p = make_sscan(2, 45, 32, 16, 50);
  const Tensor h0 = rand64({2, 32, 16}, 51);
  const tensor_list e = emulate_forward_state(p, h0), r = run_sscan_forward_state(p, h0, DType::f32, cpu());
  CHECK(sscan_scaled_err(e[0], r[0]) < 2e-5);
  CHECK(sscan_scaled_err(e[1], r[1]) < 2e-5);
}
