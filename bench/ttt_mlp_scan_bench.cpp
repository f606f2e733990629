// bench/ttt_mlp_scan_bench.cpp — the fused TTT-MLP scan (kernels/ttt_mlp_scan.h) alone: forward and
// backward kernel times of one layer at the shapes of a training step, per chunk step and in
// achieved TFLOP/s and GB/s.
//
// Usage: build/bin/ttt_mlp_scan_bench [--B 8] [--H 12] [--T 2048] [--F 64] [--K 16] [--G 4]
//                                     [--precision bf16|fp32] [--io bf16|fp32] [--device cuda] [--reps 20]
//                                     [--cluster 1,2,4] [--walk fused,split]
// Defaults: one layer of the paper's 125M TTT-MLP at 8 x 2048 with bf16 products (autocast),
// hidden 4F. Prints the median of `reps` synchronized runs, for each --cluster size (blocks a head,
// TTTMLPScanShape::cluster) in turn, and how far each size's output and dXK are from the first size's
// (bf16 products: not bit for bit); with --walk, each backward form (the reverse walk, or the split
// backward: TTTMLPScanShape::split_walk) in turn for each size. FLOPs per (batch, head) chunk of K
// tokens (f = F, h = 4F), counted from the kernels' products: forward 14 K f h + 4 K² (f + h)
// (XK W1, XQ W1, X2 W2, G2 W2ᵀ, X̄2 W2, the two updates; XQ XKᵀ, Mt1 Gp1, X̄2 X2ᵀ, Mt2 Gp2);
// backward 40 K f h + 10 K² f + 12 K² h (the recomputation of the chunk and the gradient
// products) plus its replay of the group ((G−1)/G × 12 K f h). Bytes: TTTMLPScan*::bytes().
#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/ops.h"
#include "bench/scan_bench.h"
#include "kernels/ttt_mlp_scan.h"

using namespace ttt;
using bench::bht;
using bench::median_ms;

int main(int argc, char** argv) {
  try {
    const bench::ScanOptions o = bench::parse_scan_options(argc, argv, "ttt_mlp_scan_bench");
    TTTMLPScanShape s;
    s.batch = o.B, s.heads = o.H, s.len = o.T, s.head_dim = o.F, s.hidden = 4 * o.F, s.mini_batch = o.K;
    s.checkpoint_group = o.G, s.low_precision = o.low, s.dtype = DType::f32, s.bf16_io = o.bio;
    const std::string why = ttt_mlp_scan_unsupported(o.device, s);
    if (!why.empty()) throw std::invalid_argument("ttt_mlp_scan_bench: not covered: " + why);
    Generator g(1);
    const TensorOptions to = opts(DType::f32, o.device);
    // [B, T, H, F] buffers seen as [B, H, T, F] (the layer's head split of a projection).
    // --io bf16: XQ, XK, XV, dout, out and their gradients stored as bf16 (TTTMLPScanShape::bf16_io).
    auto heads = [&](double std) {
      return randn({o.B, o.T, o.H, o.F}, g, to, 0.0, std).to(s.io_dtype()).permute({0, 2, 1, 3});
    };
    const int64_t hd = s.hidden;
    Tensor xq = heads(1), xk = heads(1), xv = heads(1), dout = heads(1);
    Tensor lr = rand({o.B, o.H, o.T}, g, to, 0.001, 0.003), tok = rand({o.K}, g, to, 0.05, 1.0);
    Tensor w1 = randn({o.H, o.F, hd}, g, to, 0.0, 0.02), b1 = zeros({o.H, hd}, to);
    Tensor w2 = randn({o.H, hd, o.F}, g, to, 0.0, 0.02), b2 = zeros({o.H, o.F}, to);
    Tensor lw = ones({o.H, o.F}, to), lb = zeros({o.H, o.F}, to);
    Tensor out = heads(1), dxq = heads(1), dxk = heads(1), dxv = heads(1);
    Tensor states = empty({s.state_elems()}, to), dlr = empty({o.B, o.H, o.T}, to), dtok = empty({o.K}, to);
    Tensor dw1 = empty(w1.shape(), to), db1 = empty(b1.shape(), to), dw2 = empty(w2.shape(), to);
    Tensor db2 = empty(b2.shape(), to), dlw = empty(lw.shape(), to), dlb = empty(lb.shape(), to);
    TTTMLPScanForward fc;
    fc.s = s;
    fc.xq = bht(xq), fc.xk = bht(xk), fc.xv = bht(xv), fc.lr = bht(lr);
    fc.tok = tok.data_ptr(), fc.w1 = w1.data_ptr(), fc.b1 = b1.data_ptr(), fc.w2 = w2.data_ptr();
    fc.b2 = b2.data_ptr(), fc.ln_w = lw.data_ptr(), fc.ln_b = lb.data_ptr();
    fc.out = bht(out), fc.states = states.data_ptr();
    TTTMLPScanBackward bc;
    bc.s = s;
    bc.xq = fc.xq, bc.xk = fc.xk, bc.xv = fc.xv, bc.lr = fc.lr, bc.tok = fc.tok, bc.w1 = fc.w1, bc.b1 = fc.b1;
    bc.w2 = fc.w2, bc.b2 = fc.b2, bc.ln_w = fc.ln_w, bc.ln_b = fc.ln_b, bc.states = fc.states, bc.dout = bht(dout);
    bc.dxq = bht(dxq), bc.dxk = bht(dxk), bc.dxv = bht(dxv), bc.dlr = bht(dlr);
    bc.dtok = dtok.data_ptr(), bc.dw1 = dw1.data_ptr(), bc.db1 = db1.data_ptr(), bc.dw2 = dw2.data_ptr();
    bc.db2 = db2.data_ptr(), bc.dln_w = dlw.data_ptr(), bc.dln_b = dlb.data_ptr();
    bc.s.split_walk = true;  // the larger workspace, for either form
    Tensor ws = empty({static_cast<int64_t>(bc.workspace_bytes() / 4) + 1}, to);
    bc.workspace = ws.data_ptr();
    Backend& be = backend(o.device);
    const double chunks = static_cast<double>(s.chunks()), bh = static_cast<double>(o.B * o.H);
    const double K = static_cast<double>(o.K), f = static_cast<double>(o.F), h = static_cast<double>(hd);
    const double replay = static_cast<double>(o.G - 1) / static_cast<double>(o.G);
    const double fwd_flops = bh * chunks * (14 * K * f * h + 4 * K * K * (f + h));
    const double bwd_flops = bh * chunks * (40 * K * f * h + 10 * K * K * f + 12 * K * K * h + replay * 12 * K * f * h);
    std::printf("ttt_mlp_scan B %lld H %lld T %lld F %lld (hidden %lld) K %lld G %lld, %s products, %s storage, %s\n",
                static_cast<long long>(o.B), static_cast<long long>(o.H), static_cast<long long>(o.T),
                static_cast<long long>(o.F), static_cast<long long>(hd), static_cast<long long>(o.K),
                static_cast<long long>(o.G), o.low ? "bf16" : "fp32", o.bio ? "bf16" : "fp32", o.device.str().c_str());
    Tensor first_out, first_dxk, first_dw1;
    for (const int64_t cluster : o.clusters)
    for (const std::string& walk : o.walks) {
      fc.s.cluster = bc.s.cluster = cluster;
      bc.s.split_walk = walk == "split";
      const std::string why_c = ttt_mlp_scan_unsupported(o.device, fc.s);
      if (!why_c.empty()) throw std::invalid_argument("ttt_mlp_scan_bench: cluster " + std::to_string(cluster) + ": " + why_c);
      const double fwd = median_ms(be, o.reps, [&] { be.run(fc); });
      const double bwd = median_ms(be, o.reps, [&] { be.run(bc); });
      std::printf(" cluster %lld (blocks a head), %s backward\n", static_cast<long long>(cluster), walk.c_str());
      std::printf("  forward   %8.3f ms  %6.2f us/chunk step  %6.2f TFLOP/s  %7.1f GB/s\n", fwd, 1e3 * fwd / chunks,
                  fwd_flops / fwd * 1e-9, fc.bytes() / fwd * 1e-6);
      std::printf("  backward  %8.3f ms  %6.2f us/chunk step  %6.2f TFLOP/s  %7.1f GB/s\n", bwd, 1e3 * bwd / chunks,
                  bwd_flops / bwd * 1e-9, bc.bytes() / bwd * 1e-6);
      std::printf("  fwd+bwd   %8.3f ms  %6.2f us/chunk step\n", fwd + bwd, 1e3 * (fwd + bwd) / chunks);
      // The outputs of every size against the first's (bf16 products: the row phases add in other
      // orders, so not bit for bit).
      if (!first_out.defined()) {
        first_out = out.to(cpu()), first_dxk = dxk.to(cpu()), first_dw1 = dw1.to(cpu());
      } else {
        auto rel = [](const Tensor& a, const Tensor& b) {
          const Tensor x = a.to(DType::f64), y = b.to(DType::f64), d = x - y;
          return std::sqrt(sum(mul(d, d)).item() / (sum(mul(y, y)).item() + 1e-300));
        };
        std::printf("  against the first run (cluster %lld, %s): out rel. diff %.2e; dXK %.2e; dW1 %.2e\n",
                    static_cast<long long>(o.clusters[0]), o.walks[0].c_str(), rel(out.to(cpu()), first_out),
                    rel(dxk.to(cpu()), first_dxk), rel(dw1.to(cpu()), first_dw1));
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
