// kernels/cpu/gated_delta.cpp — the reference for the fused gated delta rule (kernels/gated_delta.h):
// plain loops per (batch, head), token by token, all arithmetic in double, OpenMP over the pairs.
// Clarity first: the CUDA kernels (kernels/cuda/gated_delta.cu) are tested against it, and it is
// tested against the composite chunked WY form of autograd/ops/gated_delta_scan.cpp
// (tests/test_gated_delta_kernel.cpp).
//
// Forward, per token (a = e^g):  p = M_{t−1}ᵀ k,  r = v − a p,  u = β r,  M_t = a M_{t−1} + k uᵀ,  o = M_tᵀ q.
// Without the erase term p = 0 throughout (r = v; dp = 0 below).
// Backward, tokens in reverse, with D = dL/dM_t (starting at dM_final):
//   D += q doᵀ,  dq = M_t do,
//   du = Dᵀ k,  dv = β du,  dβ = du·r,  dp = −a β du,
//   dk = D u + M_{t−1} dp,  da = <D, M_{t−1}> − β du·p,  dg = a da,
//   D ← a D + k dpᵀ  (= dL/dM_{t−1});  dM0 = D at the end.
// The states M_{t−1} come from the states kept at every `chunk`-th token, recomputed forward
// chunk by chunk (checkpointing through time, as the CUDA kernels do). Heads sharing q and k (groups)
// add their dq, dk in head order.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/gated_delta.h"

namespace ttt {

std::string gated_delta_unsupported(Device d, const GatedDeltaShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.batch < 0 || s.len < 0 || s.heads < 1 || s.dk < 1 || s.dv < 1 || s.chunk < 1 || s.qk_heads < 0 ||
      s.heads % s.groups() != 0)
    return "bad shape (heads, head dims and chunk must be positive, q/k heads must divide the heads)";
  if (d.is_cpu()) return "";
#if TTT_WITH_CUDA
  return cuda_impl::gated_delta_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

namespace {
// Elements of the per-token tensors read or written: q, k, v, o-like rows and g, beta, times `rows`.
double io_bytes(const GatedDeltaShape& s, double qkv_like, double o_like) {
  const double rows = static_cast<double>(s.batch * s.len);
  const double per = qkv_like * static_cast<double>(2 * s.groups() * s.dk + s.heads * (s.dv + 2)) +
                     o_like * static_cast<double>(s.heads * s.dv);
  return rows * per * dtype_size(s.dtype);
}
}  // namespace

size_t GatedDeltaForward::workspace_bytes(Device d) const {
#if TTT_WITH_CUDA
  if (d.is_cuda()) return cuda_impl::gated_delta_forward_workspace(s);
#endif
  (void)d;
  return 0;
}
size_t GatedDeltaBackward::workspace_bytes(Device d) const {
#if TTT_WITH_CUDA
  if (d.is_cuda()) return cuda_impl::gated_delta_backward_workspace(s);
#endif
  (void)d;
  return 0;
}
double GatedDeltaForward::bytes() const { return io_bytes(s, 1, 1); }
double GatedDeltaBackward::bytes() const { return io_bytes(s, 2, 1); }

void GatedDeltaForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::gated_delta_forward,
                           [](Backend& b, auto& c) { cuda_impl::gated_delta_forward(b, c); });
}

void GatedDeltaBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::gated_delta_backward,
                           [](Backend& b, auto& c) { cuda_impl::gated_delta_backward(b, c); });
}

}  // namespace ttt

namespace ttt::cpu_impl {

namespace {

// Indices of one (batch, head) pair in the contiguous buffers.
struct Idx {
  const GatedDeltaShape& s;
  int64_t b, h;
  int64_t qk(int64_t t, int64_t i) const {
    return ((b * s.len + t) * s.groups() + h / s.heads_per_group()) * s.dk + i;
  }
  int64_t vo(int64_t t, int64_t j) const { return ((b * s.len + t) * s.heads + h) * s.dv + j; }
  int64_t head_qk(int64_t t, int64_t i) const { return ((b * s.len + t) * s.heads + h) * s.dk + i; }
  int64_t gb(int64_t t) const { return (b * s.len + t) * s.heads + h; }
  int64_t st(int64_t i, int64_t j) const { return ((b * s.heads + h) * s.dk + i) * s.dv + j; }
};

// One token's inputs in double.
struct Token {
  std::vector<double> q, k, v;
  double a = 1, beta = 0;
};

template <class T>
void load_token(Token& x, const Idx& ix, int64_t t, const T* q, const T* k, const T* v, const T* g, const T* beta) {
  const int64_t dk = ix.s.dk, dv = ix.s.dv;
  x.q.resize(dk);
  x.k.resize(dk);
  x.v.resize(dv);
  for (int64_t i = 0; i < dk; ++i) {
    x.q[i] = ld(q, ix.qk(t, i));
    x.k[i] = ld(k, ix.qk(t, i));
  }
  for (int64_t j = 0; j < dv; ++j) x.v[j] = ld(v, ix.vo(t, j));
  x.a = std::exp(ld(g, ix.gb(t)));
  x.beta = ld(beta, ix.gb(t));
}

// p = Mᵀ k  (M [dk, dv] row-major).
void state_times(std::vector<double>& p, const std::vector<double>& M, const std::vector<double>& k, int64_t dv) {
  p.assign(dv, 0.0);
  for (size_t i = 0; i < k.size(); ++i)
    for (int64_t j = 0; j < dv; ++j) p[j] += M[i * dv + j] * k[i];
}

// M ← a M + k uᵀ with u = β (v − a p), p = Mᵀ k (erase) or 0; `p` receives p of the state before the step.
void step_state(std::vector<double>& M, const Token& x, std::vector<double>& p, bool erase) {
  const int64_t dv = static_cast<int64_t>(x.v.size());
  if (erase) state_times(p, M, x.k, dv);
  else p.assign(dv, 0.0);
  for (size_t i = 0; i < x.k.size(); ++i)
    for (int64_t j = 0; j < dv; ++j)
      M[i * dv + j] = x.a * M[i * dv + j] + x.k[i] * x.beta * (x.v[j] - x.a * p[j]);
}

template <class T> std::vector<double> initial_state(const Idx& ix, const T* M0) {
  std::vector<double> M(ix.s.dk * ix.s.dv, 0.0);
  if (M0)
    for (int64_t i = 0; i < ix.s.dk; ++i)
      for (int64_t j = 0; j < ix.s.dv; ++j) M[i * ix.s.dv + j] = ld(M0, ix.st(i, j));
  return M;
}

// Runs f(b, h) for every (batch, head) pair, in parallel when there is enough work.
template <class F> void for_each_head(const GatedDeltaShape& s, F&& f) {
  const int64_t n = s.batch * s.heads;
  const bool big = n > 1 && s.len * s.dk * s.dv >= 65536;
#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t i = 0; i < n; ++i) f(i / s.heads, i % s.heads);
}

template <class T>
void fwd(const GatedDeltaForward& c, T* o, T* M_final, const T* q, const T* k, const T* v, const T* g, const T* beta,
         const T* M0) {
  const GatedDeltaShape& s = c.s;
  for_each_head(s, [&](int64_t b, int64_t h) {
    const Idx ix{s, b, h};
    std::vector<double> M = initial_state(ix, M0), p;
    Token x;
    for (int64_t t = 0; t < s.len; ++t) {
      load_token(x, ix, t, q, k, v, g, beta);
      step_state(M, x, p, s.erase);
      state_times(p, M, x.q, s.dv);
      for (int64_t j = 0; j < s.dv; ++j) st(o, ix.vo(t, j), p[j]);
    }
    if (M_final)
      for (int64_t i = 0; i < s.dk; ++i)
        for (int64_t j = 0; j < s.dv; ++j) st(M_final, ix.st(i, j), M[i * s.dv + j]);
  });
}

template <class T>
void bwd(const GatedDeltaBackward& c, T* dq, T* dk, T* dv, T* dg, T* dbeta, T* dM0, const T* d_o, const T* dM_final,
         const T* q, const T* k, const T* v, const T* g, const T* beta, const T* M0) {
  const GatedDeltaShape& s = c.s;
  const int64_t DK = s.dk, DV = s.dv, S = DK * DV;
  // dq, dk per head first: the heads of a group share q and k, and run in parallel.
  std::vector<double> dq_head(static_cast<size_t>(s.batch * s.len * s.heads * DK)), dk_head(dq_head.size());
  for_each_head(s, [&](int64_t b, int64_t h) {
    const Idx ix{s, b, h};
    const int64_t K = s.chunks();
    // The states entering every chunk.
    std::vector<std::vector<double>> kept(K);
    std::vector<double> M = initial_state(ix, M0), p, du(DV), dp(DV), u(DV), dov(DV);
    Token x;
    for (int64_t t = 0; t < s.len; ++t) {
      if (t % s.chunk == 0) kept[t / s.chunk] = M;
      load_token(x, ix, t, q, k, v, g, beta);
      step_state(M, x, p, s.erase);
    }
    std::vector<double> D(S, 0.0);
    if (dM_final)
      for (int64_t i = 0; i < DK; ++i)
        for (int64_t j = 0; j < DV; ++j) D[i * DV + j] = ld(dM_final, ix.st(i, j));
    // M_{t0−1} .. M_{t1−1} of a chunk and each token's p, allocated once: copies reuse the storage.
    const size_t span = static_cast<size_t>(std::min(s.chunk, s.len));
    std::vector<std::vector<double>> states(span + 1, std::vector<double>(S)), ps(span);
    for (int64_t ci = K - 1; ci >= 0; --ci) {
      const int64_t t0 = ci * s.chunk, t1 = std::min(s.len, t0 + s.chunk);
      states[0] = kept[ci];
      for (int64_t t = t0; t < t1; ++t) {
        load_token(x, ix, t, q, k, v, g, beta);
        states[t - t0 + 1] = states[t - t0];
        step_state(states[t - t0 + 1], x, ps[t - t0], s.erase);
      }
      for (int64_t t = t1 - 1; t >= t0; --t) {
        load_token(x, ix, t, q, k, v, g, beta);
        const double* Mp = states[t - t0].data();
        const double* Mt = states[t - t0 + 1].data();
        for (int64_t j = 0; j < DV; ++j) dov[j] = d_o ? ld(d_o, ix.vo(t, j)) : 0.0;
        // D += q doᵀ and du = Dᵀ k, in one row-major pass.
        std::fill(du.begin(), du.end(), 0.0);
        for (int64_t i = 0; i < DK; ++i) {
          double* Di = D.data() + i * DV;
          for (int64_t j = 0; j < DV; ++j) {
            Di[j] += x.q[i] * dov[j];
            du[j] += Di[j] * x.k[i];
          }
        }
        const std::vector<double>& pt = ps[t - t0];  // M_{t−1}ᵀ k (0 without the erase term)
        double dbeta_t = 0, da = 0;
        for (int64_t j = 0; j < DV; ++j) {
          const double r = x.v[j] - x.a * pt[j];
          u[j] = x.beta * r;
          st(dv, ix.vo(t, j), x.beta * du[j]);
          dbeta_t += du[j] * r;
          dp[j] = s.erase ? -x.a * x.beta * du[j] : 0.0;
          da -= x.beta * du[j] * pt[j];
        }
        // dq = M_t do, dk = D u + M_{t−1} dp, da += <D, M_{t−1}>; then D ← a D + k dpᵀ (row by row).
        for (int64_t i = 0; i < DK; ++i) {
          double* Di = D.data() + i * DV;
          const double *Mpi = Mp + i * DV, *Mti = Mt + i * DV;
          double qa = 0, ka = 0;
          for (int64_t j = 0; j < DV; ++j) {
            qa += Mti[j] * dov[j];
            ka += Di[j] * u[j] + Mpi[j] * dp[j];
            da += Di[j] * Mpi[j];
            Di[j] = x.a * Di[j] + x.k[i] * dp[j];
          }
          dq_head[ix.head_qk(t, i)] = qa;
          dk_head[ix.head_qk(t, i)] = ka;
        }
        st(dbeta, ix.gb(t), dbeta_t);
        st(dg, ix.gb(t), x.a * da);
      }
    }
    if (dM0)
      for (int64_t i = 0; i < DK; ++i)
        for (int64_t j = 0; j < DV; ++j) st(dM0, ix.st(i, j), D[i * DV + j]);
  });
  const int64_t G = s.groups(), hpg = s.heads_per_group();
  for (int64_t r = 0; r < s.batch * s.len; ++r)
    for (int64_t gi = 0; gi < G; ++gi)
      for (int64_t i = 0; i < DK; ++i) {
        double qa = 0, ka = 0;
        for (int64_t h = gi * hpg; h < (gi + 1) * hpg; ++h) {
          qa += dq_head[(r * s.heads + h) * DK + i];
          ka += dk_head[(r * s.heads + h) * DK + i];
        }
        st(dq, (r * G + gi) * DK + i, qa);
        st(dk, (r * G + gi) * DK + i, ka);
      }
}

template <class F> void dispatch(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    default: throw std::invalid_argument(std::string("gated_delta: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace

void gated_delta_forward(GatedDeltaForward& c) {
  const std::string why = gated_delta_unsupported(cpu(), c.s);
  if (!why.empty()) throw std::invalid_argument("gated_delta_fwd: " + why);
  dispatch(c.s.dtype, [&](auto z) {
    using T = decltype(z);
    fwd(c, static_cast<T*>(c.o), static_cast<T*>(c.M_final), static_cast<const T*>(c.q), static_cast<const T*>(c.k),
        static_cast<const T*>(c.v), static_cast<const T*>(c.g), static_cast<const T*>(c.beta),
        static_cast<const T*>(c.M0));
  });
}

void gated_delta_backward(GatedDeltaBackward& c) {
  const std::string why = gated_delta_unsupported(cpu(), c.s);
  if (!why.empty()) throw std::invalid_argument("gated_delta_bwd: " + why);
  dispatch(c.s.dtype, [&](auto z) {
    using T = decltype(z);
    bwd(c, static_cast<T*>(c.dq), static_cast<T*>(c.dk), static_cast<T*>(c.dv), static_cast<T*>(c.dg),
        static_cast<T*>(c.dbeta), static_cast<T*>(c.dM0), static_cast<const T*>(c.d_o),
        static_cast<const T*>(c.dM_final), static_cast<const T*>(c.q), static_cast<const T*>(c.k),
        static_cast<const T*>(c.v), static_cast<const T*>(c.g), static_cast<const T*>(c.beta),
        static_cast<const T*>(c.M0));
  });
}

}  // namespace ttt::cpu_impl
