// kernels/cpu/attention.cpp — the reference for fused causal attention (backend.h,
// AttentionShape): plain loops per (batch, head, query row), all arithmetic in double, OpenMP over
// batch·heads; operands in the shape's layouts (AttentionLayout). Clarity first: the CUDA kernels
// (kernels/cuda/attention.cu) are tested against it.
//
// Forward, for query row i (keys j in [key_begin(i), key_end(i))):
//   s_j = scale · q_i · k_j,   m = max_j s_j,   l = Σ_j exp(s_j − m)
//   out_i = Σ_j exp(s_j − m) / l · v_j,          lse_i = m + log l   (stored as float32)
// Backward, with P_ij = exp(s_ij − lse_i) recomputed from the saved lse (as the GPU kernel does)
// and D_i = Σ_d dout_id · out_id:
//   dv_j += P_ij dout_i,   dP_ij = dout_i · v_j,   dS_ij = P_ij (dP_ij − D_i)
//   dq_i += scale Σ_j dS_ij k_j,   dk_j += scale Σ_i dS_ij q_i
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace ttt::cpu_impl {

namespace {

// q_i · k_j over D elements, in double.
template <class T> double dot(const T* a, const T* b, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; ++d) s += ld(a, d) * ld(b, d);
  return s;
}

// Runs f(head) for every (batch, head) pair, in parallel when there is enough work.
template <class F> void for_each_head(const AttentionShape& s, F&& f) {
  const int64_t heads = s.batch * s.heads;
  const bool big = heads > 1 && s.q_len * s.kv_len * s.head_dim >= 4096;
#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t bh = 0; bh < heads; ++bh) f(bh);
}

}  // namespace

void CpuBackend::attention_fwd(void* outv, float* lse, const void* qv, const void* kv, const void* vv,
                               const AttentionShape& shape, DType dt) {
  const AttentionShape s = shape.resolved();
  dispatch_float(dt, "attention", [&](auto tag) {
    using T = decltype(tag);
    const int64_t Tq = s.q_len, Tk = s.kv_len, D = s.head_dim, H = s.heads;
    for_each_head(s, [&](int64_t bh) {
      const auto q = [&](int64_t i) { return static_cast<const T*>(qv) + s.q.row(bh, H, i); };
      const auto k = [&](int64_t j) { return static_cast<const T*>(kv) + s.k.row(bh, H, j); };
      const auto v = [&](int64_t j) { return static_cast<const T*>(vv) + s.v.row(bh, H, j); };
      std::vector<double> score(static_cast<size_t>(Tk)), acc(static_cast<size_t>(D));
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t j0 = s.key_begin(i), j1 = s.key_end(i);
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = j0; j < j1; ++j) {
          score[j] = s.scale * dot(q(i), k(j), D);
          m = std::max(m, score[j]);
        }
        double l = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = j0; j < j1; ++j) {
          const double p = std::exp(score[j] - m);
          l += p;
          for (int64_t d = 0; d < D; ++d) acc[d] += p * ld(v(j), d);
        }
        T* out = static_cast<T*>(outv) + s.out.row(bh, H, i);
        for (int64_t d = 0; d < D; ++d) st(out, d, acc[d] / l);
        lse[bh * Tq + i] = static_cast<float>(m + std::log(l));
      }
    });
  });
}

void CpuBackend::attention_bwd(void* dqv, void* dkv, void* dvv, const void* doutv, const void* qv, const void* kv,
                               const void* vv, const void* outv, const float* lse, const AttentionShape& shape,
                               DType dt) {
  const AttentionShape s = shape.resolved();
  dispatch_float(dt, "attention backward", [&](auto tag) {
    using T = decltype(tag);
    const int64_t Tq = s.q_len, Tk = s.kv_len, D = s.head_dim, H = s.heads;
    for_each_head(s, [&](int64_t bh) {
      const auto k = [&](int64_t j) { return static_cast<const T*>(kv) + s.k.row(bh, H, j); };
      const auto v = [&](int64_t j) { return static_cast<const T*>(vv) + s.v.row(bh, H, j); };
      // Accumulate this head's dk and dv in double, then store once.
      std::vector<double> dk(static_cast<size_t>(Tk * D), 0.0), dv(static_cast<size_t>(Tk * D), 0.0);
      std::vector<double> dq(static_cast<size_t>(D));
      for (int64_t i = 0; i < Tq; ++i) {
        const T* qi = static_cast<const T*>(qv) + s.q.row(bh, H, i);
        const T* doi = static_cast<const T*>(doutv) + s.dout.row(bh, H, i);
        const double Di = dot(doi, static_cast<const T*>(outv) + s.out.row(bh, H, i), D);
        const double lse_i = lse[bh * Tq + i];
        std::fill(dq.begin(), dq.end(), 0.0);
        for (int64_t j = s.key_begin(i), j1 = s.key_end(i); j < j1; ++j) {
          const double p = std::exp(s.scale * dot(qi, k(j), D) - lse_i);
          const double ds = p * (dot(doi, v(j), D) - Di);
          for (int64_t d = 0; d < D; ++d) {
            dv[j * D + d] += p * ld(doi, d);
            dk[j * D + d] += s.scale * ds * ld(qi, d);
            dq[d] += s.scale * ds * ld(k(j), d);
          }
        }
        for (int64_t d = 0; d < D; ++d) st(static_cast<T*>(dqv) + s.dq.row(bh, H, i), d, dq[d]);
      }
      for (int64_t j = 0; j < Tk; ++j)
        for (int64_t d = 0; d < D; ++d) {
          st(static_cast<T*>(dkv) + s.dk.row(bh, H, j), d, dk[j * D + d]);
          st(static_cast<T*>(dvv) + s.dv.row(bh, H, j), d, dv[j * D + d]);
        }
    });
  });
}

}  // namespace ttt::cpu_impl
