// bench/ttt_scan_bench.cpp — the fused TTT-Linear scan (kernels/ttt_linear_scan.h) alone: forward
// and backward kernel times of one layer at the shapes of a training step, per chunk step and in
// achieved TFLOP/s and GB/s (llm.c's habit: numbers against the device's ceilings).
//
// Usage: build/bin/ttt_scan_bench [--B 8] [--H 12] [--T 2048] [--F 64] [--K 16] [--G 4]
//                                 [--precision bf16|fp32] [--io bf16|fp32] [--device cuda] [--reps 20]
//                                 [--group N] (also N forward calls as one group: a wavefront's wave)
// Defaults: one layer of the paper's 125M TTT-Linear at 8 x 2048 with bf16 products (autocast).
// Prints the median of `reps` synchronized runs. FLOPs per (batch, head) chunk of K tokens:
// forward 6Kf² + 4K²f (XK W, XQ W, the W update; XQ XKᵀ, Mt Gp); backward counts its replay of
// the group ((G−1)/G of a forward), the recomputation (a forward) and 6Kf² + 4K²f of gradient
// products. Bytes: TTTLinearScan*::bytes() (inputs read once, outputs written once, states).
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "bench/scan_bench.h"
#include "kernels/ttt_linear_scan.h"

using namespace ttt;
using bench::median_ms;

namespace {
BHTView v(const Tensor& t) { return bench::bht(t); }
}  // namespace

int main(int argc, char** argv) {
  try {
    const bench::ScanOptions o = bench::parse_scan_options(argc, argv, "ttt_scan_bench");
    TTTLinearScanShape s;
    s.batch = o.B, s.heads = o.H, s.len = o.T, s.head_dim = o.F, s.mini_batch = o.K, s.checkpoint_group = o.G;
    s.low_precision = o.low, s.dtype = DType::f32, s.bf16_io = o.bio;
    if (o.bio && !o.low) throw std::invalid_argument("ttt_scan_bench: --io bf16 comes with --precision bf16");
    const std::string why = ttt_linear_scan_unsupported(o.device, s);
    if (!why.empty()) throw std::invalid_argument("ttt_scan_bench: not covered: " + why);
    Generator g(1);
    const TensorOptions to = opts(DType::f32, o.device);
    // [B, T, H, F] buffers seen as [B, H, T, F] (the layer's head split of a projection).
    auto heads = [&](double std) {
      Tensor m = randn({o.B, o.T, o.H, o.F}, g, to, 0.0, std);
      if (o.bio) m = m.to(DType::bf16);
      return m.permute({0, 2, 1, 3});
    };
    Tensor xq = heads(1), xk = heads(1), xv = heads(1), dout = heads(1);
    Tensor lr = rand({o.B, o.H, o.T}, g, to, 0.01, 0.03), tok = rand({o.K}, g, to, 0.05, 1.0);
    Tensor w0 = randn({o.H, o.F, o.F}, g, to, 0.0, 0.02), b0 = zeros({o.H, o.F}, to);
    Tensor lw = ones({o.H, o.F}, to), lb = zeros({o.H, o.F}, to);
    Tensor out = heads(1), dxq = heads(1), dxk = heads(1), dxv = heads(1);
    Tensor states = empty({s.state_elems()}, to), dlr = empty({o.B, o.H, o.T}, to), dtok = empty({o.K}, to);
    Tensor dw0 = empty({o.H, o.F, o.F}, to), db0 = empty({o.H, o.F}, to), dlw = empty({o.H, o.F}, to),
           dlb = empty({o.H, o.F}, to);
    TTTLinearScanForward fc;
    fc.s = s;
    fc.xq = v(xq), fc.xk = v(xk), fc.xv = v(xv), fc.lr = v(lr);
    fc.tok = tok.data_ptr(), fc.w0 = w0.data_ptr(), fc.b0 = b0.data_ptr(), fc.ln_w = lw.data_ptr(), fc.ln_b = lb.data_ptr();
    fc.out = v(out), fc.states = states.data_ptr();
    TTTLinearScanBackward bc;
    bc.s = s;
    bc.xq = fc.xq, bc.xk = fc.xk, bc.xv = fc.xv, bc.lr = fc.lr, bc.tok = fc.tok, bc.w0 = fc.w0, bc.b0 = fc.b0;
    bc.ln_w = fc.ln_w, bc.ln_b = fc.ln_b, bc.states = fc.states, bc.dout = v(dout);
    bc.dxq = v(dxq), bc.dxk = v(dxk), bc.dxv = v(dxv), bc.dlr = v(dlr);
    bc.dtok = dtok.data_ptr(), bc.dw0 = dw0.data_ptr(), bc.db0 = db0.data_ptr(), bc.dln_w = dlw.data_ptr(),
    bc.dln_b = dlb.data_ptr();
    Tensor ws = empty({static_cast<int64_t>(bc.workspace_bytes(o.device) / 4) + 1}, to);
    bc.workspace = ws.data_ptr();
    Backend& be = backend(o.device);
    const double fwd = median_ms(be, o.reps, [&] { be.run(fc); });
    const double bwd = median_ms(be, o.reps, [&] { be.run(bc); });
    // --group N: N forward calls on the same inputs, each its own outputs, as one group.
    std::vector<Tensor> group_buffers;
    std::vector<TTTLinearScanForward> group_calls(o.group > 1 ? o.group : 0, fc);
    TTTLinearScanForwardGroup group;
    for (TTTLinearScanForward& c : group_calls) {
      group_buffers.push_back(heads(1));
      group_buffers.push_back(empty({s.state_elems()}, to));
      c.out = v(group_buffers[group_buffers.size() - 2]), c.states = group_buffers.back().data_ptr();
      group.calls.push_back(&c);
    }
    const double fwd_group = group.calls.empty() ? 0.0 : median_ms(be, o.reps, [&] { be.run(group); });
    // Cycles per phase of block 0, thread 0 (a separate run: the probe costs a little).
    Tensor probe = zeros({64}, opts(DType::i64, o.device));
    fc.probe = bc.probe = probe.data_ptr();
    be.run(fc);
    be.run(bc);
    be.synchronize();
    fc.probe = bc.probe = nullptr;
    const double chunks = static_cast<double>(s.chunks()), bh = static_cast<double>(o.B * o.H);
    const double K = static_cast<double>(o.K), F = static_cast<double>(o.F);
    const double f_chunk = 6 * K * F * F + 4 * K * K * F;
    const double replay = static_cast<double>(o.G - 1) / static_cast<double>(o.G);
    const double fwd_flops = bh * chunks * f_chunk, bwd_flops = bh * chunks * f_chunk * (2 + replay);
    std::printf("ttt_linear_scan B %lld H %lld T %lld F %lld K %lld G %lld, %s products, %s storage, %s\n",
                static_cast<long long>(o.B), static_cast<long long>(o.H), static_cast<long long>(o.T),
                static_cast<long long>(o.F), static_cast<long long>(o.K), static_cast<long long>(o.G),
                o.low ? "bf16" : "fp32", o.bio ? "bf16" : "fp32", o.device.str().c_str());
    std::printf("  forward   %8.3f ms  %6.2f us/chunk step  %6.2f TFLOP/s  %7.1f GB/s\n", fwd, 1e3 * fwd / chunks,
                fwd_flops / fwd * 1e-9, fc.bytes() / fwd * 1e-6);
    if (o.group > 1)
      std::printf("  forward, a group of %d calls: %8.3f ms (%.2f x one call)\n", o.group, fwd_group, fwd_group / fwd);
    std::printf("  backward  %8.3f ms  %6.2f us/chunk step  %6.2f TFLOP/s  %7.1f GB/s\n", bwd, 1e3 * bwd / chunks,
                bwd_flops / bwd * 1e-9, bc.bytes() / bwd * 1e-6);
    std::printf("  fwd+bwd   %8.3f ms  %6.2f us/chunk step\n", fwd + bwd, 1e3 * (fwd + bwd) / chunks);
    const std::vector<int64_t> cyc = probe.to(cpu()).tolist<int64_t>();
    const char* names[] = {"F top", "F1", "F2", "F3", "F4", "", "", "", "", "B top", "B operands", "B1", "B2",
                           "B3", "B4", "B5", "B6", "B7", "B wait", "B sync"};
    const TTTLinearScanPlan plan = ttt_linear_scan_plan(s);
    // Block 0 of each pass per chunk it ran: the backward's passes run Q chunks a block when
    // chunk-parallel (slots 9..19: the tokens pass), the forward and the serial walks all of them.
    const double q = static_cast<double>(plan.per_range);
    std::printf("  cycles per chunk, block 0 (thread 0):");
    for (int i = 0; i < 20; ++i)
      if (cyc[i] && names[i][0]) std::printf(" %s %.0f,", names[i], static_cast<double>(cyc[i]) / (i >= 9 ? q : chunks));
    std::printf("\n");
    if (plan.chunk_parallel)
      std::printf("  chunk-parallel forward; cycles per chunk, block 0: state walk %.0f, outputs %.0f (ranges of %lld)\n",
                  cyc[5] / chunks, cyc[6] / static_cast<double>(plan.fwd_per_range),
                  static_cast<long long>(plan.fwd_per_range));
    if (plan.chunk_parallel)
      std::printf("  chunk-parallel backward, %lld ranges of %lld chunks per (b, h); cycles per chunk, block 0:"
                  " direct pass %.0f, tokens pass %.0f, state-gradient walk %.0f (top %.0f, 1 %.0f, 2 %.0f, 3 %.0f)\n",
                  static_cast<long long>(plan.ranges), static_cast<long long>(plan.per_range), cyc[53] / q, cyc[21] / q,
                  cyc[26] / chunks, cyc[22] / chunks, cyc[23] / chunks, cyc[24] / chunks, cyc[25] / chunks);
    else
      std::printf("  reverse walk: block 0 %.0f cycles per chunk\n", cyc[20] / chunks);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
