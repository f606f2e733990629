// kernels/cpu/attention_decode.cpp — the CPU reference of one attention decode step
// (kernels/attention_decode.h has the formulas), plus the call's dispatch, workspace and byte count.
// Plain loops over (batch, head), math in double; the RoPE factors are rounded to the data's type
// first, as layers/rope.h's tables are.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/attention_decode.h"
#include "kernels/cpu/fused_dispatch.h"

namespace ttt {

size_t AttentionDecodeStep::workspace_bytes() const {
  return static_cast<size_t>(s.batch * s.heads * s.splits() * (s.head_dim + 2)) * sizeof(float);
}

double AttentionDecodeStep::bytes() const {
  // Worst case: the whole cache read (a full one), four [B, H, D] rows, the appended entry.
  const double rows = static_cast<double>(s.batch * s.heads * s.head_dim);
  return static_cast<double>(dtype_size(s.dtype)) * rows * (2.0 * static_cast<double>(s.capacity) + 6.0);
}

std::string attention_decode_unsupported(Device d, const AttentionDecodeShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.head_dim < 2 || s.head_dim % 2 != 0) return "head_dim must be even (RoPE rotates pairs)";
  if (s.capacity < 1 || s.window < 0) return "bad shape";
  if (d.is_cpu()) return "";
#if TTT_WITH_CUDA
  return cuda_impl::attention_decode_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

void AttentionDecodeStep::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::attention_decode_step,
                           [](Backend& b, auto& c) { cuda_impl::attention_decode_step(b, c); });
}

namespace cpu_impl {

namespace {

template <class S>
void decode_typed(AttentionDecodeStep& c) {
  const AttentionDecodeShape& s = c.s;
  const int64_t D = s.head_dim, cap = s.capacity;
  const int64_t p = c.counters[0], n = c.counters[1];
  if (n >= cap) throw std::invalid_argument("attention_decode_step: the cache is full (make room first)");
  const int64_t first = s.window > 0 ? std::max<int64_t>(0, n + 1 - s.window) : 0;
  // The rotation factors of position p, rounded to S as the RoPE tables are.
  std::vector<double> cs(D / 2), sn(D / 2);
  for (int64_t i = 0; i < D / 2; ++i) {
    const double a = static_cast<double>(p) * std::pow(s.theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    cs[i] = static_cast<double>(static_cast<S>(std::cos(a)));
    sn[i] = static_cast<double>(static_cast<S>(std::sin(a)));
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const auto at = [&](const TokenHeads& t) { return static_cast<S*>(t.data) + b * t.sb + h * t.sh; };
      const S *q = at(c.q), *k = at(c.k), *v = at(c.v);
      S* K = static_cast<S*>(c.k_cache) + (b * s.heads + h) * cap * D;
      S* V = static_cast<S*>(c.v_cache) + (b * s.heads + h) * cap * D;
      std::vector<double> qr(D), w(n + 1 - first), o(D, 0.0);
      for (int64_t i = 0; i < D / 2; ++i) {
        const double q0 = q[2 * i], q1 = q[2 * i + 1], k0 = k[2 * i], k1 = k[2 * i + 1];
        qr[2 * i] = q0 * cs[i] - q1 * sn[i];
        qr[2 * i + 1] = q0 * sn[i] + q1 * cs[i];
        K[n * D + 2 * i] = static_cast<S>(k0 * cs[i] - k1 * sn[i]);
        K[n * D + 2 * i + 1] = static_cast<S>(k0 * sn[i] + k1 * cs[i]);
      }
      for (int64_t d = 0; d < D; ++d) V[n * D + d] = v[d];
      double mx = -INFINITY;
      for (int64_t j = first; j <= n; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qr[d] * static_cast<double>(K[j * D + d]);
        w[j - first] = s.scale * dot;
        mx = std::max(mx, w[j - first]);
      }
      double sum = 0;
      for (double& x : w) sum += (x = std::exp(x - mx));
      for (int64_t j = first; j <= n; ++j)
        for (int64_t d = 0; d < D; ++d) o[d] += w[j - first] * static_cast<double>(V[j * D + d]);
      S* out = at(c.out);
      for (int64_t d = 0; d < D; ++d) out[d] = static_cast<S>(o[d] / sum);
    }
  c.counters[0] = p + 1;
  c.counters[1] = n + 1;
}

}  // namespace

void attention_decode_step(AttentionDecodeStep& c) {
  if (c.s.dtype == DType::f64) return decode_typed<double>(c);
  if (c.s.dtype == DType::f32) return decode_typed<float>(c);
  throw std::invalid_argument("attention_decode_step: dtype must be float32 or float64");
}

}  // namespace cpu_impl

}  // namespace ttt
