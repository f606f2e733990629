// kernels/cpu/selective_scan.cpp — the reference for the fused Mamba-1 selective scan
// (kernels/selective_scan.h): plain loops per (batch, channel) over time, all arithmetic in double,
// OpenMP over the batch. Clarity first: the CUDA kernels (kernels/cuda/selective_scan.cuh) are
// tested against it, and it is tested against the composite scan of layers/selective_scan.cpp
// (tests/test_selective_scan_kernel.cpp).
//
// Forward, per (b, d), from h_{−1} = h0 (or 0), with v_t = δ_t + bias, Δ_t = softplus(v_t) and
// a_t[n] = exp(Δ_t A[n]):
//   h_t[n] = a_t[n] h_{t−1}[n] + Δ_t B_t[n] u_t,   y_t = Σ_n C_t[n] h_t[n] + D u_t
// Backward: a reverse walk with g_t = dL/dh_t (the adjoint of the state),
//   g_t[n] = dy_t C_t[n] + a_{t+1}[n] g_{t+1}[n]
//   dC_t[n] += dy_t h_t[n],  dB_t[n] += g_t[n] Δ_t u_t            (summed over the channels d)
//   dΔ_t = Σ_n g_t[n] (a_t[n] A[n] h_{t−1}[n] + B_t[n] u_t),  dδ_t = dΔ_t σ(v_t),  dbias += dδ_t
//   du_t = Σ_n g_t[n] Δ_t B_t[n] + D dy_t,  dA[n] += g_t[n] a_t[n] Δ_t h_{t−1}[n],  dD += dy_t u_t
// Parameter gradients (A, D, bias) are summed per batch element, then over the batch in index order.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/fused_dispatch.h"
#include "kernels/selective_scan.h"

namespace ttt {

namespace {
// Bytes of `per_token` [batch, len, channels]-sized tensors and two [batch, len, state] ones.
double scan_io_bytes(const SelectiveScanShape& s, double per_token) {
  const double rows = static_cast<double>(s.batch * s.len);
  return rows * (per_token * static_cast<double>(s.channels) + 2.0 * static_cast<double>(s.state)) *
         dtype_size(s.dtype);
}
}  // namespace

std::string selective_scan_unsupported(Device d, const SelectiveScanShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.batch < 0 || s.len < 0 || s.channels < 1 || s.state < 1) return "bad shape (channels and state must be positive)";
  if (d.is_cpu()) return "";
#if TTT_WITH_CUDA
  return cuda_impl::selective_scan_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

size_t SelectiveScanForward::states_bytes(Device d) const {
#if TTT_WITH_CUDA
  if (d.is_cuda()) return cuda_impl::selective_scan_states_bytes(s);
#endif
  (void)d;
  return 0;
}
size_t SelectiveScanBackward::workspace_bytes(Device d) const {
#if TTT_WITH_CUDA
  if (d.is_cuda()) return cuda_impl::selective_scan_workspace_bytes(s);
#endif
  (void)d;
  return 0;
}
double SelectiveScanForward::bytes() const { return scan_io_bytes(s, 3); }   // u, δ -> y
double SelectiveScanBackward::bytes() const { return scan_io_bytes(s, 5); }  // u, δ, dy -> du, dδ (+ dB, dC)

void SelectiveScanForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::selective_scan_forward,
                           [](Backend& b, auto& c) { cuda_impl::selective_scan_forward(b, c); });
}

void SelectiveScanBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::selective_scan_backward,
                           [](Backend& b, auto& c) { cuda_impl::selective_scan_backward(b, c); });
}

}  // namespace ttt

namespace ttt::cpu_impl {

namespace {

double softplus(double v) { return std::max(v, 0.0) + std::log1p(std::exp(-std::fabs(v))); }
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// The inputs of the scan, typed; index helpers over the contiguous buffers.
template <class T> struct In {
  const SelectiveScanShape& s;
  const T *u, *delta, *A, *B, *C, *D, *bias, *h0;  // h0 null: zeros
  int64_t tok(int64_t b, int64_t t, int64_t d) const { return (b * s.len + t) * s.channels + d; }
  int64_t bc(int64_t b, int64_t t, int64_t n) const { return (b * s.len + t) * s.state + n; }
  double dlt(int64_t b, int64_t t, int64_t d) const { return ld(delta, tok(b, t, d)) + ld(bias, d); }  // v_t
};

// States h_{t−1} for t = 0..len of channel (b, d): hs[t·N + n] is the state before step t.
template <class T> void states_of(const In<T>& in, int64_t b, int64_t d, std::vector<double>& hs) {
  const int64_t N = in.s.state;
  hs.assign((in.s.len + 1) * N, 0.0);
  if (in.h0)
    for (int64_t n = 0; n < N; ++n) hs[n] = ld(in.h0, (b * in.s.channels + d) * N + n);
  for (int64_t t = 0; t < in.s.len; ++t) {
    const double dl = softplus(in.dlt(b, t, d)), du = dl * ld(in.u, in.tok(b, t, d));
    for (int64_t n = 0; n < N; ++n)
      hs[(t + 1) * N + n] = std::exp(dl * ld(in.A, d * N + n)) * hs[t * N + n] + du * ld(in.B, in.bc(b, t, n));
  }
}

template <class T> void fwd(const In<T>& in, T* y, T* h_final) {
  const SelectiveScanShape& s = in.s;
  const int64_t N = s.state;
#pragma omp parallel for schedule(dynamic, 1) if (s.batch > 1 && s.len * s.channels * N >= 65536)
  for (int64_t b = 0; b < s.batch; ++b) {
    std::vector<double> hs;
    for (int64_t d = 0; d < s.channels; ++d) {
      states_of(in, b, d, hs);
      for (int64_t t = 0; t < s.len; ++t) {
        double acc = ld(in.D, d) * ld(in.u, in.tok(b, t, d));
        for (int64_t n = 0; n < N; ++n) acc += ld(in.C, in.bc(b, t, n)) * hs[(t + 1) * N + n];
        st(y, in.tok(b, t, d), acc);
      }
      if (h_final)
        for (int64_t n = 0; n < N; ++n) st(h_final, (b * s.channels + d) * N + n, hs[s.len * N + n]);
    }
  }
}

struct Grads {
  void *du, *ddelta, *dA, *dB, *dC, *dD, *dbias;
};

template <class T> void bwd(const In<T>& in, const T* dy, const Grads& out) {
  const SelectiveScanShape& s = in.s;
  const int64_t N = s.state, Dc = s.channels;
  T *du = static_cast<T*>(out.du), *ddelta = static_cast<T*>(out.ddelta);
  // Per-batch partials of the parameter gradients, summed over b in order below.
  std::vector<double> pA(s.batch * Dc * N, 0.0), pD(s.batch * Dc, 0.0), pbias(s.batch * Dc, 0.0);
#pragma omp parallel for schedule(dynamic, 1) if (s.batch > 1 && s.len * Dc * N >= 65536)
  for (int64_t b = 0; b < s.batch; ++b) {
    std::vector<double> hs, g(N), gB(s.len * N, 0.0), gC(s.len * N, 0.0);
    for (int64_t d = 0; d < Dc; ++d) {
      states_of(in, b, d, hs);
      std::fill(g.begin(), g.end(), 0.0);
      for (int64_t t = s.len - 1; t >= 0; --t) {
        const double v = in.dlt(b, t, d), dl = softplus(v), u = ld(in.u, in.tok(b, t, d));
        const double dyt = ld(dy, in.tok(b, t, d));
        double ddl = 0, dut = ld(in.D, d) * dyt;
        for (int64_t n = 0; n < N; ++n) {
          const double A = ld(in.A, d * N + n), a = std::exp(dl * A), Bn = ld(in.B, in.bc(b, t, n));
          const double hprev = hs[t * N + n];
          g[n] += dyt * ld(in.C, in.bc(b, t, n));
          gC[t * N + n] += dyt * hs[(t + 1) * N + n];
          gB[t * N + n] += g[n] * dl * u;
          ddl += g[n] * (a * A * hprev + Bn * u);
          dut += g[n] * dl * Bn;
          pA[(b * Dc + d) * N + n] += g[n] * a * dl * hprev;
          g[n] *= a;
        }
        const double dv = ddl * sigmoid(v);
        pbias[b * Dc + d] += dv;
        pD[b * Dc + d] += dyt * u;
        st(du, in.tok(b, t, d), dut);
        st(ddelta, in.tok(b, t, d), dv);
      }
    }
    for (int64_t i = 0; i < s.len * N; ++i) {
      st(static_cast<T*>(out.dB), b * s.len * N + i, gB[i]);
      st(static_cast<T*>(out.dC), b * s.len * N + i, gC[i]);
    }
  }
  auto batch_sum = [&](const std::vector<double>& p, int64_t per, void* dst) {
    for (int64_t i = 0; i < per; ++i) {
      double acc = 0;
      for (int64_t b = 0; b < s.batch; ++b) acc += p[b * per + i];
      st(static_cast<T*>(dst), i, acc);
    }
  };
  batch_sum(pA, Dc * N, out.dA);
  batch_sum(pD, Dc, out.dD);
  batch_sum(pbias, Dc, out.dbias);
}

template <class F> void dispatch(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(float{}); break;
    case DType::f64: f(double{}); break;
    default: throw std::invalid_argument(std::string("selective_scan: unsupported dtype ") + dtype_name(dt));
  }
}

template <class T, class Call> In<T> inputs_of(const Call& c, const void* h0 = nullptr) {
  return In<T>{c.s,
               static_cast<const T*>(c.u),
               static_cast<const T*>(c.delta),
               static_cast<const T*>(c.A),
               static_cast<const T*>(c.B),
               static_cast<const T*>(c.C),
               static_cast<const T*>(c.D),
               static_cast<const T*>(c.bias),
               static_cast<const T*>(h0)};
}

}  // namespace

void selective_scan_forward(SelectiveScanForward& c) {
  const std::string why = selective_scan_unsupported(cpu(), c.s);
  if (!why.empty()) throw std::invalid_argument("selective_scan_fwd: " + why);
  dispatch(c.s.dtype, [&](auto z) {
    using T = decltype(z);
    fwd(inputs_of<T>(c, c.h0), static_cast<T*>(c.y), static_cast<T*>(c.h_final));
  });
}

void selective_scan_backward(SelectiveScanBackward& c) {
  const std::string why = selective_scan_unsupported(cpu(), c.s);
  if (!why.empty()) throw std::invalid_argument("selective_scan_bwd: " + why);
  dispatch(c.s.dtype, [&](auto z) {
    using T = decltype(z);
    bwd(inputs_of<T>(c), static_cast<const T*>(c.dy), Grads{c.du, c.ddelta, c.dA, c.dB, c.dC, c.dD, c.dbias});
  });
}

}  // namespace ttt::cpu_impl
