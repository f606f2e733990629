// kernels/cpu/ttt_mlp_decode.cpp — the CPU reference of one TTT-MLP decode step
// (kernels/ttt_mlp_decode.h has the formulas), plus the call's dispatch and byte count.
// Plain loops over (batch, head), math in double with the row helpers of the scans' references.
#include <vector>

#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/ttt_scan_rows.h"
#include "kernels/scalar_math.h"
#include "kernels/ttt_mlp_decode.h"

namespace ttt {

double TTTMLPDecodeStep::bytes() const {
  const double e = static_cast<double>(dtype_size(s.dtype)), f = static_cast<double>(s.head_dim);
  const double h = static_cast<double>(s.hidden), heads = static_cast<double>(s.batch * s.heads);
  const double state = 2 * f * h + (s.bias ? f + h : 0.0);
  return e * heads * (3 * f + 1 + state * (acc[0].data ? 3 : 2) + f);  // read W (+ acc), write next, out
}

std::string ttt_mlp_decode_unsupported(Device d, const TTTMLPDecodeShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.head_dim < 1 || s.hidden < 1 || s.batch < 0 || s.heads < 0) return "bad shape";
  if (d.is_cpu()) return "";
#if TTT_WITH_CUDA
  return cuda_impl::ttt_mlp_decode_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

void TTTMLPDecodeStep::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ttt_mlp_decode_step,
                           [](Backend& b, auto& c) { cuda_impl::ttt_mlp_decode_step(b, c); });
}

namespace cpu_impl {

namespace {

using namespace scan_rows;

template <class S>
void decode_typed(TTTMLPDecodeStep& c) {
  const TTTMLPDecodeShape& s = c.s;
  const int64_t f = s.head_dim, hd = s.hidden;
  const double tok = static_cast<double>(*static_cast<const S*>(c.tok));
  const int64_t sizes[4] = {f * hd, hd, hd * f, f};  // elements of W1, b1, W2, b2 per head
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bi = 0; bi < s.batch; ++bi)
    for (int64_t h = 0; h < s.heads; ++h) {
      const S *xq = row_at<S>(c.xq, bi, h), *xk = row_at<S>(c.xk, bi, h), *xv = row_at<S>(c.xv, bi, h);
      const double lr = static_cast<double>(*row_at<S>(c.lr, bi, h));
      const S* W[4];
      const S* A[4];
      S* N[4];
      for (int k = 0; k < 4; ++k) {
        const bool used = k % 2 == 0 || s.bias;
        W[k] = used ? block_at<S>(c.w[k], bi, h) : nullptr;
        A[k] = used ? block_at<S>(c.acc[k], bi, h) : nullptr;
        N[k] = used ? static_cast<S*>(c.next[k]) + (bi * s.heads + h) * sizes[k] : nullptr;
      }
      const auto val = [](const S* p, int64_t i) { return p ? static_cast<double>(p[i]) : 0.0; };
      Vec z1(hd), x2(hd), d1(hd), z2(f), G2, G1(hd), lw, lb;
      ln_affine<S>(c.ln_w, c.ln_b, h, f, s.ln_residual, lw, lb);
      for (int64_t k = 0; k < hd; ++k) {
        double z = val(W[1], k);
        for (int64_t i = 0; i < f; ++i) z += static_cast<double>(xk[i]) * static_cast<double>(W[0][i * hd + k]);
        z1[k] = z, x2[k] = smath::gelu_tanh(z), d1[k] = smath::gelu_tanh_grad(z);
      }
      for (int64_t j = 0; j < f; ++j) {
        double z = val(W[3], j);
        for (int64_t k = 0; k < hd; ++k) z += x2[k] * static_cast<double>(W[2][k * f + j]);
        z2[j] = z;
      }
      token_loss_grad(z2, xv, xk, lw, lb, f, s.eps, s.ln_residual, G2);
      for (int64_t k = 0; k < hd; ++k) {
        double p = 0;
        for (int64_t j = 0; j < f; ++j) p += G2[j] * static_cast<double>(W[2][k * f + j]);
        G1[k] = p * d1[k];
      }
      // The accumulators with this token and the weights they give: W̄ = W − tok acc'. Writes acc'
      // (or W̄ with commit) and returns W̄'s element.
      const auto update = [&](int k, int64_t e, double grad) {
        const double a = val(A[k], e) + lr * grad, wbar = static_cast<double>(W[k][e]) - tok * a;
        N[k][e] = static_cast<S>(s.commit ? wbar : a);
        return wbar;
      };
      Vec hq(hd), zbar(f, 0.0);
      for (int64_t k = 0; k < hd; ++k) {
        double z = s.bias ? update(1, k, G1[k]) : 0.0;
        for (int64_t i = 0; i < f; ++i) z += static_cast<double>(xq[i]) * update(0, i * hd + k, static_cast<double>(xk[i]) * G1[k]);
        hq[k] = smath::gelu_tanh(z);
      }
      for (int64_t j = 0; j < f; ++j) zbar[j] = s.bias ? update(3, j, G2[j]) : 0.0;
      for (int64_t k = 0; k < hd; ++k)
        for (int64_t j = 0; j < f; ++j) zbar[j] += hq[k] * update(2, k * f + j, x2[k] * G2[j]);
      token_output(static_cast<S*>(c.out.data) + bi * c.out.sb + h * c.out.sh, xq, zbar, lw, lb, f, s.eps, s.ln_residual);
    }
}

}  // namespace

void ttt_mlp_decode_step(TTTMLPDecodeStep& c) {
  by_dtype(c.s.dtype, "ttt_mlp_decode_step", [&](auto tag) { decode_typed<decltype(tag)>(c); });
}

}  // namespace cpu_impl

}  // namespace ttt
