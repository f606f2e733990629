// kernels/cpu/ssd.cpp — the reference for the fused SSD scan (kernels/ssd.h): plain loops per
// (batch, head), chunk by chunk, all arithmetic in double, OpenMP over (batch, group). Clarity first:
// the CUDA kernels (kernels/cuda/ssd.cu) are tested against it, and it is tested against the
// composite chunked form of autograd/ops/ssd_scan.cpp (tests/test_ssd_kernel.cpp).
//
// Per chunk of Q tokens, with c_t = Σ_{s≤t} dt_s A (cumulative log decay inside the chunk),
// x̄_s = dt_s x_s, G[t,s] = C_t·B_s, L[t,s] = e^{c_t − c_s}, M = G ⊙ L (s ≤ t), w_s = e^{c_Q − c_s},
// and H the state entering the chunk:
//   y_t  = Σ_{s≤t} M[t,s] x̄_s + e^{c_t} H C_t                       (intra-chunk + from the state)
//   H'   = e^{c_Q} H + Σ_s w_s x̄_s B_sᵀ                              (the state leaving it)
// Backward, chunks in reverse, with g = dL/dH' (starting at dh_final) and dy:
//   dM[t,s] = dy_t·x̄_s,  dx̄_s = Σ_{t≥s} M[t,s] dy_t + w_s g B_s
//   dC_t = Σ_{s≤t} dM L B_s + e^{c_t} Hᵀ dy_t,  dB_s = Σ_{t≥s} dM L C_t + w_s gᵀ x̄_s
//   dc_t = Σ_s R[t,s] − Σ_{t'} R[t',t] + e^{c_t} C_t·(Hᵀ dy_t) − w_t x̄_tᵀ g B_t,  R = dM ⊙ M,
//   dc_Q += Σ_s w_s x̄_sᵀ g B_s + e^{c_Q} <g, H>,     g ← e^{c_Q} g + Σ_t e^{c_t} dy_t C_tᵀ
//   da = reverse cumsum of dc;  dx = dt dx̄;  ddt = x·dx̄ + A da;  dA = Σ dt da;  dh0 = g at the end.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/ssd.h"

namespace ttt {

namespace {
// Floats of one (batch, len, heads, head_dim)-like tensor and of B or C, for bytes().
double ssd_io_bytes(const SSDShape& s, double x_like) {
  const double rows = static_cast<double>(s.batch * s.len);
  const double per_row = x_like * static_cast<double>(s.heads * s.head_dim) +
                         (x_like / 2) * static_cast<double>(s.heads + 2 * s.groups * s.state);
  return rows * per_row * dtype_size(s.dtype);
}
}  // namespace

std::string ssd_unsupported(Device d, const SSDShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.chunk < 1 || s.groups < 1 || s.heads % s.groups != 0 || s.head_dim < 1 || s.state < 1)
    return "bad shape (chunk, groups dividing heads, head_dim and state must be positive)";
  if (d.is_cpu()) return "";
#if TTT_WITH_CUDA
  return cuda_impl::ssd_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

size_t SsdForward::workspace_bytes(Device d) const {
#if TTT_WITH_CUDA
  if (d.is_cuda()) return cuda_impl::ssd_forward_workspace(s);
#endif
  return 0;
}
size_t SsdBackward::workspace_bytes(Device d) const {
#if TTT_WITH_CUDA
  if (d.is_cuda()) return cuda_impl::ssd_backward_workspace(s);
#endif
  return 0;
}
double SsdForward::bytes() const { return ssd_io_bytes(s, 2); }
double SsdBackward::bytes() const { return ssd_io_bytes(s, 4); }

void SsdForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ssd_forward,
                           [](Backend& b, auto& c) { cuda_impl::ssd_forward(b, c); });
}

void SsdBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ssd_backward,
                           [](Backend& b, auto& c) { cuda_impl::ssd_backward(b, c); });
}

}  // namespace ttt

namespace ttt::cpu_impl {

namespace {

// The inputs of one (batch, head) pair, as index helpers over the contiguous buffers.
struct Idx {
  const SSDShape& s;
  int64_t b, h, g;
  int64_t x(int64_t t, int64_t p) const { return ((b * s.len + t) * s.heads + h) * s.head_dim + p; }
  int64_t dt(int64_t t) const { return (b * s.len + t) * s.heads + h; }
  int64_t bc(int64_t t, int64_t n) const { return ((b * s.len + t) * s.groups + g) * s.state + n; }
  int64_t st(int64_t p, int64_t n) const { return ((b * s.heads + h) * s.head_dim + p) * s.state + n; }
};

// One chunk [t0, t0 + Q) of one head, loaded in double: c, x̄, B, C (and dy for backward).
struct Chunk {
  int64_t t0 = 0, Q = 0, P = 0, N = 0;
  std::vector<double> c, dtv, x, xb, B, C;  // c, dt [Q]; x, x̄ [Q, P]; B, C [Q, N]
  std::vector<double> G;                    // M = (C Bᵀ) ⊙ L, lower triangle, [Q, Q]
  double L(int64_t t, int64_t s) const { return std::exp(c[t] - c[s]); }
  double w(int64_t s) const { return std::exp(c[Q - 1] - c[s]); }
};

template <class T>
void load_chunk(Chunk& k, const Idx& ix, int64_t t0, const T* x, const T* dt, double A, const T* B, const T* C) {
  const SSDShape& s = ix.s;
  k.t0 = t0;
  k.Q = std::min(s.chunk, s.len - t0);
  k.P = s.head_dim;
  k.N = s.state;
  const int64_t Q = k.Q, P = k.P, N = k.N;
  k.c.assign(Q, 0.0);
  k.dtv.assign(Q, 0.0);
  k.x.assign(Q * P, 0.0);
  k.xb.assign(Q * P, 0.0);
  k.B.assign(Q * N, 0.0);
  k.C.assign(Q * N, 0.0);
  k.G.assign(Q * Q, 0.0);
  double acc = 0;
  for (int64_t t = 0; t < Q; ++t) {
    k.dtv[t] = ld(dt, ix.dt(t0 + t));
    acc += k.dtv[t] * A;
    k.c[t] = acc;
    for (int64_t p = 0; p < P; ++p) {
      k.x[t * P + p] = ld(x, ix.x(t0 + t, p));
      k.xb[t * P + p] = k.dtv[t] * k.x[t * P + p];
    }
    for (int64_t n = 0; n < N; ++n) {
      k.B[t * N + n] = ld(B, ix.bc(t0 + t, n));
      k.C[t * N + n] = ld(C, ix.bc(t0 + t, n));
    }
  }
  for (int64_t t = 0; t < Q; ++t)
    for (int64_t u = 0; u <= t; ++u) {
      double g = 0;
      for (int64_t n = 0; n < N; ++n) g += k.C[t * N + n] * k.B[u * N + n];
      k.G[t * Q + u] = g * k.L(t, u);
    }
}

// The state leaving the chunk: H ← e^{c_Q} H + Σ_s w_s x̄_s B_sᵀ.
void advance_state(std::vector<double>& H, const Chunk& k) {
  const double e = std::exp(k.c[k.Q - 1]);
  for (int64_t p = 0; p < k.P; ++p)
    for (int64_t n = 0; n < k.N; ++n) {
      double acc = e * H[p * k.N + n];
      for (int64_t u = 0; u < k.Q; ++u) acc += k.w(u) * k.xb[u * k.P + p] * k.B[u * k.N + n];
      H[p * k.N + n] = acc;
    }
}

template <class T> std::vector<double> initial_state(const Idx& ix, const T* h0) {
  std::vector<double> H(ix.s.head_dim * ix.s.state, 0.0);
  if (h0)
    for (int64_t p = 0; p < ix.s.head_dim; ++p)
      for (int64_t n = 0; n < ix.s.state; ++n) H[p * ix.s.state + n] = ld(h0, ix.st(p, n));
  return H;
}

// Runs f(b, g) for every (batch, group) pair, in parallel when there is enough work.
template <class F> void for_each_group(const SSDShape& s, F&& f) {
  const int64_t n = s.batch * s.groups;
  const bool big = n > 1 && s.len * s.heads * s.head_dim * s.state >= 65536;
#pragma omp parallel for schedule(dynamic, 1) if (big)
  for (int64_t i = 0; i < n; ++i) f(i / s.groups, i % s.groups);
}

template <class T>
void fwd(T* y, T* h_final, const T* x, const T* dt, const T* A, const T* B, const T* C, const T* h0,
         const SSDShape& s) {
  const int64_t hpg = s.heads / s.groups, P = s.head_dim, N = s.state;
  for_each_group(s, [&](int64_t b, int64_t g) {
    Chunk k;
    for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h) {
      const Idx ix{s, b, h, g};
      std::vector<double> H = initial_state(ix, h0);
      for (int64_t t0 = 0; t0 < s.len; t0 += s.chunk) {
        load_chunk(k, ix, t0, x, dt, ld(A, h), B, C);
        for (int64_t t = 0; t < k.Q; ++t)
          for (int64_t p = 0; p < P; ++p) {
            double acc = 0;
            for (int64_t n = 0; n < N; ++n) acc += H[p * N + n] * k.C[t * N + n];
            acc *= std::exp(k.c[t]);
            for (int64_t u = 0; u <= t; ++u) acc += k.G[t * k.Q + u] * k.xb[u * P + p];
            st(y, ix.x(t0 + t, p), acc);
          }
        advance_state(H, k);
      }
      if (h_final)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) st(h_final, ix.st(p, n), H[p * N + n]);
    }
  });
}

template <class T>
void bwd(T* dx, T* ddt, T* dA, T* dB, T* dC, T* dh0, const T* dy, const T* dhf, const T* x, const T* dt,
         const T* A, const T* B, const T* C, const T* h0, const SSDShape& s) {
  const int64_t hpg = s.heads / s.groups, P = s.head_dim, N = s.state;
  const int64_t K = (s.len + s.chunk - 1) / s.chunk;
  std::vector<double> dA_part(s.batch * s.heads, 0.0);  // per (batch, head): summed serially below
  for_each_group(s, [&](int64_t b, int64_t g) {
    // dB, dC of the group: the heads of the group add into them in order (deterministic).
    std::vector<double> gB(s.len * N, 0.0), gC(s.len * N, 0.0);
    Chunk k;
    for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h) {
      const Idx ix{s, b, h, g};
      const double Ah = ld(A, h);
      // The states entering every chunk, from a forward pass.
      std::vector<std::vector<double>> Hin(K);
      std::vector<double> H = initial_state(ix, h0);
      for (int64_t kk = 0; kk < K; ++kk) {
        Hin[kk] = H;
        load_chunk(k, ix, kk * s.chunk, x, dt, Ah, B, C);
        advance_state(H, k);
      }
      std::vector<double> gS(P * N, 0.0);  // dL/d(state leaving the chunk)
      if (dhf)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) gS[p * N + n] = ld(dhf, ix.st(p, n));
      double dA_acc = 0;
      for (int64_t kk = K - 1; kk >= 0; --kk) {
        const int64_t t0 = kk * s.chunk;
        load_chunk(k, ix, t0, x, dt, Ah, B, C);
        const int64_t Q = k.Q;
        const std::vector<double>& Hk = Hin[kk];
        std::vector<double> dyv(Q * P, 0.0);
        if (dy)
          for (int64_t t = 0; t < Q; ++t)
            for (int64_t p = 0; p < P; ++p) dyv[t * P + p] = ld(dy, ix.x(t0 + t, p));
        // dM, R = dM ⊙ M, and per-token helpers gB_s = g B_s [P], Hdy_t = Hᵀ dy_t [N].
        std::vector<double> dM(Q * Q, 0.0), gBs(Q * P, 0.0), Hdy(Q * N, 0.0), dc(Q, 0.0);
        for (int64_t t = 0; t < Q; ++t)
          for (int64_t u = 0; u <= t; ++u) {
            double d = 0;
            for (int64_t p = 0; p < P; ++p) d += dyv[t * P + p] * k.xb[u * P + p];
            dM[t * Q + u] = d;
          }
        for (int64_t u = 0; u < Q; ++u)
          for (int64_t p = 0; p < P; ++p) {
            double a = 0;
            for (int64_t n = 0; n < N; ++n) a += gS[p * N + n] * k.B[u * N + n];
            gBs[u * P + p] = a;
          }
        for (int64_t t = 0; t < Q; ++t)
          for (int64_t n = 0; n < N; ++n) {
            double a = 0;
            for (int64_t p = 0; p < P; ++p) a += Hk[p * N + n] * dyv[t * P + p];
            Hdy[t * N + n] = a;
          }
        // dx̄, then dx and the x·dx̄ part of ddt.
        std::vector<double> ddt_v(Q, 0.0);
        for (int64_t u = 0; u < Q; ++u)
          for (int64_t p = 0; p < P; ++p) {
            double a = k.w(u) * gBs[u * P + p];
            for (int64_t t = u; t < Q; ++t) a += k.G[t * Q + u] * dyv[t * P + p];
            st(dx, ix.x(t0 + u, p), k.dtv[u] * a);
            ddt_v[u] += k.x[u * P + p] * a;
          }
        // dC and dB (into the group's sums).
        for (int64_t t = 0; t < Q; ++t)
          for (int64_t n = 0; n < N; ++n) {
            double a = std::exp(k.c[t]) * Hdy[t * N + n];
            for (int64_t u = 0; u <= t; ++u) a += dM[t * Q + u] * k.L(t, u) * k.B[u * N + n];
            gC[(t0 + t) * N + n] += a;
          }
        for (int64_t u = 0; u < Q; ++u)
          for (int64_t n = 0; n < N; ++n) {
            double a = 0;
            for (int64_t p = 0; p < P; ++p) a += gS[p * N + n] * k.xb[u * P + p];
            a *= k.w(u);
            for (int64_t t = u; t < Q; ++t) a += dM[t * Q + u] * k.L(t, u) * k.C[t * N + n];
            gB[(t0 + u) * N + n] += a;
          }
        // dc: the decay matrix, the state read-out, the chunk state, the state hand-off.
        double dcQ = 0;
        for (int64_t t = 0; t < Q; ++t)
          for (int64_t u = 0; u <= t; ++u) {
            const double r = dM[t * Q + u] * k.G[t * Q + u];
            dc[t] += r;
            dc[u] -= r;
          }
        for (int64_t t = 0; t < Q; ++t) {
          double a = 0;
          for (int64_t n = 0; n < N; ++n) a += k.C[t * N + n] * Hdy[t * N + n];
          dc[t] += std::exp(k.c[t]) * a;
          double dw = 0;
          for (int64_t p = 0; p < P; ++p) dw += k.xb[t * P + p] * gBs[t * P + p];
          dc[t] -= dw * k.w(t);
          dcQ += dw * k.w(t);
        }
        double gH = 0;
        for (int64_t i = 0; i < P * N; ++i) gH += gS[i] * Hk[i];
        dcQ += std::exp(k.c[Q - 1]) * gH;
        dc[Q - 1] += dcQ;
        // da = reverse cumsum of dc; ddt and dA.
        double da = 0;
        for (int64_t t = Q - 1; t >= 0; --t) {
          da += dc[t];
          st(ddt, ix.dt(t0 + t), ddt_v[t] + Ah * da);
          dA_acc += k.dtv[t] * da;
        }
        // The gradient w.r.t. the state entering this chunk.
        const double eQ = std::exp(k.c[Q - 1]);
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) {
            double a = eQ * gS[p * N + n];
            for (int64_t t = 0; t < Q; ++t) a += std::exp(k.c[t]) * dyv[t * P + p] * k.C[t * N + n];
            gS[p * N + n] = a;
          }
      }
      dA_part[b * s.heads + h] = dA_acc;
      if (dh0)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) st(dh0, ix.st(p, n), gS[p * N + n]);
    }
    const Idx ig{s, b, 0, g};
    for (int64_t t = 0; t < s.len; ++t)
      for (int64_t n = 0; n < N; ++n) {
        st(dB, ig.bc(t, n), gB[t * N + n]);
        st(dC, ig.bc(t, n), gC[t * N + n]);
      }
  });
  for (int64_t h = 0; h < s.heads; ++h) {
    double a = 0;
    for (int64_t b = 0; b < s.batch; ++b) a += dA_part[b * s.heads + h];
    st(dA, h, a);
  }
}

template <class F> void dispatch(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    default: throw std::invalid_argument(std::string("ssd: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace

void ssd_forward(SsdForward& c) {
  const std::string why = ssd_unsupported(cpu(), c.s);
  if (!why.empty()) throw std::invalid_argument("ssd_fwd: " + why);
  dispatch(c.s.dtype, [&](auto z) {
    using T = decltype(z);
    fwd(static_cast<T*>(c.y), static_cast<T*>(c.h_final), static_cast<const T*>(c.x), static_cast<const T*>(c.dt),
        static_cast<const T*>(c.A), static_cast<const T*>(c.B), static_cast<const T*>(c.C),
        static_cast<const T*>(c.h0), c.s);
  });
}

void ssd_backward(SsdBackward& c) {
  const std::string why = ssd_unsupported(cpu(), c.s);
  if (!why.empty()) throw std::invalid_argument("ssd_bwd: " + why);
  dispatch(c.s.dtype, [&](auto z) {
    using T = decltype(z);
    bwd(static_cast<T*>(c.dx), static_cast<T*>(c.ddt), static_cast<T*>(c.dA), static_cast<T*>(c.dB),
        static_cast<T*>(c.dC), static_cast<T*>(c.dh0), static_cast<const T*>(c.dy), static_cast<const T*>(c.dh_final),
        static_cast<const T*>(c.x), static_cast<const T*>(c.dt), static_cast<const T*>(c.A), static_cast<const T*>(c.B),
        static_cast<const T*>(c.C), static_cast<const T*>(c.h0), c.s);
  });
}

}  // namespace ttt::cpu_impl
