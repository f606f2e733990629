// kernels/cpu/ttt_linear_decode.cpp — the CPU reference of one TTT-Linear decode step
// (kernels/ttt_linear_decode.h has the formulas), plus the call's dispatch and byte count.
// Plain loops over (batch, head), math in double with the row helpers of the scan's reference.
#include <vector>

#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/ttt_scan_rows.h"
#include "kernels/ttt_linear_decode.h"

namespace ttt {

double TTTLinearDecodeStep::bytes() const {
  const double e = static_cast<double>(dtype_size(s.dtype)), f = static_cast<double>(s.head_dim);
  const double heads = static_cast<double>(s.batch * s.heads);
  const double state = f * f + (s.bias ? f : 0.0);  // W, b
  const double read = 3 * f + 1 + state + (acc_w.data ? state : 0.0);
  return e * heads * (read + f + state);  // + out, + the written state or accumulators
}

std::string ttt_linear_decode_unsupported(Device d, const TTTLinearDecodeShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.head_dim < 1 || s.batch < 0 || s.heads < 0) return "bad shape";
  if (d.is_cpu()) return "";
#if TTT_WITH_CUDA
  return cuda_impl::ttt_linear_decode_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

void TTTLinearDecodeStep::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ttt_linear_decode_step,
                           [](Backend& b, auto& c) { cuda_impl::ttt_linear_decode_step(b, c); });
}

namespace cpu_impl {

namespace {

using namespace scan_rows;

template <class S>
void decode_typed(TTTLinearDecodeStep& c) {
  const TTTLinearDecodeShape& s = c.s;
  const int64_t f = s.head_dim;
  const double tok = static_cast<double>(*static_cast<const S*>(c.tok));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bi = 0; bi < s.batch; ++bi)
    for (int64_t h = 0; h < s.heads; ++h) {
      const S *xq = row_at<S>(c.xq, bi, h), *xk = row_at<S>(c.xk, bi, h), *xv = row_at<S>(c.xv, bi, h);
      const double lr = static_cast<double>(*row_at<S>(c.lr, bi, h));
      const S *W = block_at<S>(c.w, bi, h), *acc_w = block_at<S>(c.acc_w, bi, h);
      const S *b = s.bias ? block_at<S>(c.b, bi, h) : nullptr, *acc_b = s.bias ? block_at<S>(c.acc_b, bi, h) : nullptr;
      Vec Z(f), G, lw, lb;
      ln_affine<S>(c.ln_w, c.ln_b, h, f, s.ln_residual, lw, lb);
      // Z = xk W + b, and its gradient G.
      for (int64_t j = 0; j < f; ++j) {
        double z = b ? static_cast<double>(b[j]) : 0.0;
        for (int64_t i = 0; i < f; ++i) z += static_cast<double>(xk[i]) * static_cast<double>(W[i * f + j]);
        Z[j] = z;
      }
      token_loss_grad(Z, xv, xk, lw, lb, f, s.eps, s.ln_residual, G);
      // The accumulators with this token, the weights they give, and z̄ = xq W̄ + b̄.
      S* next_w = static_cast<S*>(c.next_w) + (bi * s.heads + h) * f * f;
      S* next_b = s.bias ? static_cast<S*>(c.next_b) + (bi * s.heads + h) * f : nullptr;
      Vec zbar(f, 0.0);
      for (int64_t j = 0; j < f; ++j) {
        if (!b) continue;
        const double a = (acc_b ? static_cast<double>(acc_b[j]) : 0.0) + lr * G[j];
        const double bbar = static_cast<double>(b[j]) - tok * a;
        zbar[j] = bbar;
        next_b[j] = static_cast<S>(s.commit ? bbar : a);
      }
      for (int64_t i = 0; i < f; ++i)
        for (int64_t j = 0; j < f; ++j) {
          const double a = (acc_w ? static_cast<double>(acc_w[i * f + j]) : 0.0) + lr * static_cast<double>(xk[i]) * G[j];
          const double wbar = static_cast<double>(W[i * f + j]) - tok * a;
          zbar[j] += static_cast<double>(xq[i]) * wbar;
          next_w[i * f + j] = static_cast<S>(s.commit ? wbar : a);
        }
      token_output(static_cast<S*>(c.out.data) + bi * c.out.sb + h * c.out.sh, xq, zbar, lw, lb, f, s.eps, s.ln_residual);
    }
}

}  // namespace

void ttt_linear_decode_step(TTTLinearDecodeStep& c) {
  by_dtype(c.s.dtype, "ttt_linear_decode_step", [&](auto tag) { decode_typed<decltype(tag)>(c); });
}

}  // namespace cpu_impl

}  // namespace ttt
