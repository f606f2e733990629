// bench/selective_scan_bench.cpp — the fused Mamba-1 selective scan (kernels/selective_scan.h) alone:
// forward and backward kernel times of one layer at the shapes of a training step, in ms, ns per
// token and GB/s against the bytes the calls must move (SelectiveScan*::bytes(): inputs read once,
// outputs written once), and optionally the composite twin (layers/selective_scan.h, through autograd,
// forward + backward) at the same shape for comparison.
//
// Usage: build/bin/selective_scan_bench [--B 8] [--T 2048] [--D 1536] [--N 16] [--device cuda]
//                                       [--reps 20] [--composite]
// Defaults: one layer of the 125M Mamba (configs/125m_mamba.yaml: d_inner = 2 · 768) at 8 x 2048.
// Prints the median of `reps` synchronized runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "bench/bench_util.h"
#include "kernels/selective_scan.h"
#include "layers/selective_scan.h"
#include "layers/ssm_util.h"

using namespace ttt;
using ttt::bench::median_ms;

namespace {

struct Options {
  int64_t B = 8, T = 2048, D = 1536, N = 16;
  Device device = cuda();
  int reps = 20;
  bool composite = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("selective_scan_bench: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--B") o.B = std::stoll(next());
    else if (a == "--T") o.T = std::stoll(next());
    else if (a == "--D") o.D = std::stoll(next());
    else if (a == "--N") o.N = std::stoll(next());
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--device") o.device = parse_device(next());
    else if (a == "--composite") o.composite = true;
    else throw std::invalid_argument("selective_scan_bench: unknown option " + a);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const SelectiveScanShape s{o.B, o.T, o.D, o.N, DType::f32};
    const std::string why = selective_scan_unsupported(o.device, s);
    if (!why.empty()) throw std::invalid_argument("selective_scan_bench: not covered: " + why);
    Generator g(1);
    const TensorOptions to = opts(DType::f32, o.device);
    Tensor u = randn({o.B, o.T, o.D}, g, to), delta = randn({o.B, o.T, o.D}, g, to, -2.0, 1.0);
    Tensor A = neg(exp(randn({o.D, o.N}, g, to, 1.0, 0.5))), Bm = randn({o.B, o.T, o.N}, g, to, 0.0, 0.5);
    Tensor Cm = randn({o.B, o.T, o.N}, g, to, 0.0, 0.5), D = ones({o.D}, to), bias = randn({o.D}, g, to, -3.0, 1.0);
    Tensor dy = randn({o.B, o.T, o.D}, g, to), y = empty({o.B, o.T, o.D}, to);
    Tensor du = empty(u.shape(), to), dd = empty(u.shape(), to), dA = empty(A.shape(), to);
    Tensor dB = empty(Bm.shape(), to), dC = empty(Cm.shape(), to), dD = empty(D.shape(), to), db = empty(D.shape(), to);
    SelectiveScanForward fc;
    fc.s = s;
    fc.u = u.data_ptr(), fc.delta = delta.data_ptr(), fc.A = A.data_ptr(), fc.B = Bm.data_ptr(), fc.C = Cm.data_ptr();
    fc.D = D.data_ptr(), fc.bias = bias.data_ptr(), fc.y = y.data_ptr();
    Tensor states = empty({static_cast<int64_t>(fc.states_bytes(o.device) / 4) + 1}, to);
    fc.states = states.data_ptr();
    SelectiveScanBackward bc;
    bc.s = s;
    bc.u = fc.u, bc.delta = fc.delta, bc.A = fc.A, bc.B = fc.B, bc.C = fc.C, bc.D = fc.D, bc.bias = fc.bias;
    bc.dy = dy.data_ptr(), bc.states = fc.states;
    bc.du = du.data_ptr(), bc.ddelta = dd.data_ptr(), bc.dA = dA.data_ptr(), bc.dB = dB.data_ptr();
    bc.dC = dC.data_ptr(), bc.dD = dD.data_ptr(), bc.dbias = db.data_ptr();
    Tensor ws = empty({static_cast<int64_t>(bc.workspace_bytes(o.device) / 4) + 1}, to);
    bc.workspace = ws.data_ptr();
    Backend& be = backend(o.device);
    const double fwd = median_ms(be, o.reps, [&] { be.run(fc); });
    const double bwd = median_ms(be, o.reps, [&] { be.run(bc); });
    const double tokens = static_cast<double>(o.B * o.T);
    std::printf("selective_scan B %lld T %lld D %lld N %lld, float32, %s (states %.1f MB, workspace %.1f MB)\n",
                static_cast<long long>(o.B), static_cast<long long>(o.T), static_cast<long long>(o.D),
                static_cast<long long>(o.N), o.device.str().c_str(), fc.states_bytes(o.device) / 1e6,
                bc.workspace_bytes(o.device) / 1e6);
    std::printf("  forward   %8.3f ms  %7.3f ns/token  %7.1f GB/s\n", fwd, 1e6 * fwd / tokens, fc.bytes() / fwd * 1e-6);
    std::printf("  backward  %8.3f ms  %7.3f ns/token  %7.1f GB/s\n", bwd, 1e6 * bwd / tokens, bc.bytes() / bwd * 1e-6);
    std::printf("  fwd+bwd   %8.3f ms\n", fwd + bwd);
    if (o.composite) {
      tensor_list in = {u, delta, A, Bm, Cm, D, bias};
      for (Tensor& t : in) t = t.detach().set_requires_grad(true);
      const double ms = median_ms(be, std::max(1, o.reps / 10), [&] {
        Tensor out = selective_scan_with_skip(in[0], in[1], in[2], in[3], in[4], in[5], in[6], Tensor(), 64).y;
        grad({sum(mul(out, dy))}, in);
      });
      std::printf("  composite fwd+bwd (layers/selective_scan.h, chunk 64)  %8.3f ms  (%.1fx the fused)\n", ms,
                  ms / (fwd + bwd));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
