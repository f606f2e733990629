// bench/gated_delta_bench.cpp — the fused gated delta rule (kernels/gated_delta.h; Gated DeltaNet,
// and with --linear the same kernels without the erase term, Mamba 2's SSD) alone: forward and
// backward kernel times of one layer at the shapes of a training step, in ms, ns per token, GB/s
// against the bytes the calls must move (GatedDelta*::bytes(): inputs read once, outputs written
// once) and TFLOP/s of the arithmetic each form does: the token walk, the recurrence's own (per token
// and head: with the erase term 2·d_k·d_v for each of p = Mᵀk, the update and o = Mᵀq in the forward,
// 7 such products in the backward; without it 2 and 5); the chunked kernels, their products
// (chunked_flops). The chunked WY kernels run with --chunked (GatedDeltaShape::chunked, the same
// inputs, timed beside the token walk in the same run; their products on the CUDA cores, then on the
// tensor cores in 3xTF32), and with --composite the composite twin
// (chunked WY / SSD form through autograd, forward + backward) at the same shape.
//
// Usage: build/bin/gated_delta_bench [--B 8] [--T 2048] [--H 6] [--dk 96] [--dv 192] [--linear]
//                                    [--mamba2] [--device cuda] [--reps 20] [--chunked] [--composite]
// Defaults: one layer of the 125M Gated DeltaNet (configs/125m_gated_deltanet.yaml) at 8 x 2048;
// --mamba2: the 125M Mamba 2's (24 heads, N = d_k 128, P = d_v 64, no erase term).
// Prints the median of `reps` synchronized runs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "bench/bench_util.h"
#include "kernels/gated_delta.h"
#include "layers/delta_rule.h"
#include "layers/ssd.h"
#include "layers/ssm_util.h"

using namespace ttt;
using ttt::bench::median_ms;

namespace {

struct Options {
  int64_t B = 8, T = 2048, H = 6, dk = 96, dv = 192;
  bool linear = false, composite = false, chunked = false;
  Device device = cuda();
  int reps = 20;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("gated_delta_bench: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--B") o.B = std::stoll(next());
    else if (a == "--T") o.T = std::stoll(next());
    else if (a == "--H") o.H = std::stoll(next());
    else if (a == "--dk") o.dk = std::stoll(next());
    else if (a == "--dv") o.dv = std::stoll(next());
    else if (a == "--linear") o.linear = true;
    else if (a == "--mamba2") o.H = 24, o.dk = 128, o.dv = 64, o.linear = true;
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--device") o.device = parse_device(next());
    else if (a == "--composite") o.composite = true;
    else if (a == "--chunked") o.chunked = true;
    else throw std::invalid_argument("gated_delta_bench: unknown option " + a);
  }
  return o;
}

struct Times {
  double fwd = 0, bwd = 0;
};

struct Flops {
  double fwd = 0, bwd = 0;
};
// The arithmetic of the recurrence itself, per token and head (the header's count).
Flops recurrence_flops(const Options& o, bool erase) {
  const double kv = 2.0 * static_cast<double>(o.dk * o.dv) * static_cast<double>(o.B * o.T * o.H);
  return {(erase ? 3 : 2) * kv, (erase ? 7 : 5) * kv};
}
// The arithmetic the chunked kernels do (gated_delta_chunk*.cuh, chunks of 32 tokens): every
// product of prep, state and out in the forward; prep and state again, dstate and grads in the
// backward. Counted from the kernels, 2 FLOPs a multiply-add.
Flops chunked_flops(const Options& o, bool erase) {
  const double C = 32, dk = static_cast<double>(o.dk), dv = static_cast<double>(o.dv), e = erase ? 1 : 0;
  const double chunks = static_cast<double>(o.B * o.H * ((o.T + 31) / 32));
  const double prep = C * C * dk + e * (2 * C * C * dk + C * C * dv);
  const double state = e * C * dk * dv + dk * C * dv;
  const double out = C * dk * dv + C * C * dv;
  const double dstate = C * C * dv + (2 + e) * C * dk * dv;
  const double grads_loop = (2 + e) * C * dk * dv + (1 + 2 * e) * C * C * dv;
  const double grads_rest = 3 * C * C * dk + e * (5 * C * C * dk + 2 * C * C * C);
  return {2 * chunks * (prep + state + out), 2 * chunks * (prep + state + dstate + grads_loop + grads_rest)};
}

// Forward and backward kernel times of shape `s` on fc's and bc's buffers (their shape replaced), and
// their rows of the table.
Times time_kernels(const Options& o, const GatedDeltaShape& s, GatedDeltaForward fc, GatedDeltaBackward bc,
                   const char* label, const Flops& flops) {
  fc.s = s;
  bc.s = s;
  const TensorOptions to = opts(DType::f32, o.device);
  Tensor wf = empty({static_cast<int64_t>(fc.workspace_bytes(o.device) / 4) + 1}, to);
  Tensor wb = empty({static_cast<int64_t>(bc.workspace_bytes(o.device) / 4) + 1}, to);
  fc.workspace = wf.data_ptr();
  bc.workspace = wb.data_ptr();
  Backend& be = backend(o.device);
  Times t;
  t.fwd = median_ms(be, o.reps, [&] { be.run(fc); });
  t.bwd = median_ms(be, o.reps, [&] { be.run(bc); });
  const double tokens = static_cast<double>(o.B * o.T);
  std::printf("  %s (workspace: forward %.1f MB, backward %.1f MB; %.1f + %.1f GFLOP)\n", label,
              fc.workspace_bytes(o.device) / 1e6, bc.workspace_bytes(o.device) / 1e6, flops.fwd * 1e-9, flops.bwd * 1e-9);
  std::printf("  forward   %8.3f ms  %7.3f ns/token  %7.1f GB/s  %6.2f TFLOP/s\n", t.fwd, 1e6 * t.fwd / tokens,
              fc.bytes() / t.fwd * 1e-6, flops.fwd / t.fwd * 1e-9);
  std::printf("  backward  %8.3f ms  %7.3f ns/token  %7.1f GB/s  %6.2f TFLOP/s\n", t.bwd, 1e6 * t.bwd / tokens,
              bc.bytes() / t.bwd * 1e-6, flops.bwd / t.bwd * 1e-9);
  std::printf("  fwd+bwd   %8.3f ms\n", t.fwd + t.bwd);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    GatedDeltaShape s{o.B, o.T, o.H, o.dk, o.dv, 64, DType::f32};
    s.erase = !o.linear;
    const std::string why = gated_delta_unsupported(o.device, s);
    if (!why.empty()) throw std::invalid_argument("gated_delta_bench: not covered: " + why);
    Generator g(1);
    const TensorOptions to = opts(DType::f32, o.device);
    Tensor q = mul_scalar(l2_normalize(randn({o.B, o.T, o.H, o.dk}, g, to)), 1.0 / std::sqrt(double(o.dk)));
    Tensor k = l2_normalize(randn({o.B, o.T, o.H, o.dk}, g, to)), v = randn({o.B, o.T, o.H, o.dv}, g, to);
    Tensor gate = neg(softplus(randn({o.B, o.T, o.H}, g, to, -3.0, 1.0))), beta = sigmoid(randn({o.B, o.T, o.H}, g, to));
    Tensor d_o = randn(v.shape(), g, to), o_out = empty(v.shape(), to), MT = empty({o.B, o.H, o.dk, o.dv}, to);
    Tensor dq = empty(q.shape(), to), dk = empty(k.shape(), to), dv = empty(v.shape(), to);
    Tensor dg = empty(gate.shape(), to), db = empty(beta.shape(), to);
    GatedDeltaForward fc;
    fc.s = s;
    fc.q = q.data_ptr(), fc.k = k.data_ptr(), fc.v = v.data_ptr(), fc.g = gate.data_ptr(), fc.beta = beta.data_ptr();
    fc.o = o_out.data_ptr(), fc.M_final = MT.data_ptr();
    GatedDeltaBackward bc;
    bc.s = s;
    bc.q = fc.q, bc.k = fc.k, bc.v = fc.v, bc.g = fc.g, bc.beta = fc.beta, bc.d_o = d_o.data_ptr();
    bc.dq = dq.data_ptr(), bc.dk = dk.data_ptr(), bc.dv = dv.data_ptr(), bc.dg = dg.data_ptr(), bc.dbeta = db.data_ptr();
    Backend& be = backend(o.device);
    std::printf("gated_delta%s B %lld T %lld H %lld d_k %lld d_v %lld, float32, %s\n", s.erase ? "" : " (no erase term)",
                static_cast<long long>(o.B), static_cast<long long>(o.T), static_cast<long long>(o.H),
                static_cast<long long>(o.dk), static_cast<long long>(o.dv), o.device.str().c_str());
    const Times walk = time_kernels(o, s, fc, bc, "token walk", recurrence_flops(o, s.erase));
    const double fwd = walk.fwd, bwd = walk.bwd;
    if (o.chunked) {
      GatedDeltaShape sc = s;
      sc.chunked = true;
      const std::string why_c = gated_delta_unsupported(o.device, sc);
      if (!why_c.empty()) throw std::invalid_argument("gated_delta_bench: --chunked not covered: " + why_c);
      for (bool tc : {false, true}) {  // the block products on the CUDA cores, then on the tensor cores
        sc.tensor_cores = tc;
        const char* label = tc ? "chunked WY kernels, tensor cores (3xTF32)" : "chunked WY kernels, CUDA cores";
        const Times c = time_kernels(o, sc, fc, bc, label, chunked_flops(o, s.erase));
        std::printf("  %s / token walk: forward %.2fx, backward %.2fx, fwd+bwd %.2fx\n", label, c.fwd / fwd,
                    c.bwd / bwd, (c.fwd + c.bwd) / (fwd + bwd));
      }
    }
    if (o.composite) {
      tensor_list in = {q, k, v, gate, beta};
      for (Tensor& t : in) t = t.detach().set_requires_grad(true);
      const double ms = median_ms(be, std::max(1, o.reps / 10), [&] {
        ScanResult r = s.erase ? gated_delta_rule(in[0], in[1], in[2], in[3], in[4], 64, Tensor(), false)
                               : gated_linear_rule(in[0], in[1], in[2], in[3], in[4], 64, Tensor(), false);
        grad({sum(mul(r.y, d_o))}, in);
      });
      std::printf("  composite fwd+bwd (chunk 64)  %8.3f ms  (%.1fx the fused)\n", ms, ms / (fwd + bwd));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
