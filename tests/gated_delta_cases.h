// tests/gated_delta_cases.h — the gated delta rule test problems shared by
// test_gated_delta_kernel.cpp (CPU reference vs composite, the op, the layer) and
// test_gated_delta_emulated.cpp (the CUDA source on the host SIMT emulator vs the CPU reference):
// random float64 inputs in the kernels' heads-last layout, the CPU reference kernels on buffers
// poisoned with NaN, and a comparison of values and every gradient.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/gated_delta.h"
#include "layers/ssd.h"
#include "layers/ssm_util.h"
#include "tests/layer_helpers.h"

namespace ttt::testing {

struct Problem {
  GatedDeltaShape s;
  bool with_do = true;  // false: the output has no gradient (only M_T's), d_o null
  Tensor q, k, v, g, beta, M0, d_o, dMT;  // float64, heads last
};

inline Problem make(int64_t Bz, int64_t T, int64_t H, int64_t dk, int64_t dv, int64_t chunk, bool with_M0, uint64_t seed,
             double gate_scale = 1.0) {
  Problem p;
  p.s = GatedDeltaShape{Bz, T, H, dk, dv, chunk, DType::f64};
  p.q = rand64({Bz, T, H, dk}, seed);
  p.k = l2_normalize(rand64({Bz, T, H, dk}, seed + 1)).detach();
  p.v = rand64({Bz, T, H, dv}, seed + 2);
  p.g = mul_scalar(neg(softplus(rand64({Bz, T, H}, seed + 3))), gate_scale).detach();
  p.beta = sigmoid(rand64({Bz, T, H}, seed + 4)).detach();
  if (with_M0) p.M0 = rand64({Bz, H, dk, dv}, seed + 5);
  p.d_o = rand64({Bz, T, H, dv}, seed + 6);
  p.dMT = rand64({Bz, H, dk, dv}, seed + 7);
  return p;
}

// The same problem for the gated linear recurrence (no erase term; Mamba 2's SSD).
inline Problem linear(Problem p) {
  p.s.erase = false;
  return p;
}
// The same problem with q and k shared by groups of heads: G q/k heads (G dividing the heads), drawn anew.
inline Problem grouped(Problem p, int64_t G, uint64_t seed) {
  p.s.qk_heads = G;
  p.q = rand64({p.s.batch, p.s.len, G, p.s.dk}, seed);
  p.k = l2_normalize(rand64({p.s.batch, p.s.len, G, p.s.dk}, seed + 1)).detach();
  return p;
}
// The same problem for the chunked CUDA kernels (GatedDeltaShape::chunked).
inline Problem chunked(Problem p) {
  p.s.chunked = true;
  return p;
}
// The same problem for the chunked kernels with their products on the tensor cores (3xTF32).
inline Problem chunked_tc(Problem p) {
  p.s.chunked = true;
  p.s.tensor_cores = true;
  return p;
}
// The same problem with a gradient for M_T only.
inline Problem without_do(Problem p) {
  p.with_do = false;
  return p;
}

struct Grads {
  Tensor o, MT, dq, dk, dv, dg, dbeta, dM0;
};

// A problem's inputs as contiguous buffers of dtype dt on `dev` (d_o undefined without an output
// gradient), result buffers NaN before any run, and the forward and backward calls on them (no
// workspace yet).
struct Run {
  Tensor q, k, v, g, beta, M0, d_o, dMT;
  Grads r;
  GatedDeltaForward f;
  GatedDeltaBackward b;
};
inline Run run_of(const Problem& p, DType dt, Device dev) {
  auto in = [&](const Tensor& t) { return t.defined() ? contiguous(t.to(dt)).to(dev) : Tensor(); };
  auto ptr = [](const Tensor& t) -> void* { return t.defined() ? t.data_ptr() : nullptr; };
  auto nan_like = [&](const Tensor& t) { return t.defined() ? full(t.shape(), NAN, opts(dt, dev)) : Tensor(); };
  Run u;
  u.q = in(p.q), u.k = in(p.k), u.v = in(p.v), u.g = in(p.g), u.beta = in(p.beta), u.M0 = in(p.M0);
  u.d_o = p.with_do ? in(p.d_o) : Tensor(), u.dMT = in(p.dMT);
  u.r = Grads{nan_like(u.v),  nan_like(u.dMT), nan_like(u.q),    nan_like(u.k),
              nan_like(u.v),  nan_like(u.g),   nan_like(u.beta), nan_like(u.M0)};
  GatedDeltaShape s = p.s;
  s.dtype = dt;
  GatedDeltaForward& f = u.f;
  f.s = s;
  f.q = ptr(u.q), f.k = ptr(u.k), f.v = ptr(u.v), f.g = ptr(u.g), f.beta = ptr(u.beta), f.M0 = ptr(u.M0);
  f.o = ptr(u.r.o), f.M_final = ptr(u.r.MT);
  GatedDeltaBackward& b = u.b;
  b.s = s;
  b.q = f.q, b.k = f.k, b.v = f.v, b.g = f.g, b.beta = f.beta, b.M0 = f.M0;
  b.d_o = ptr(u.d_o), b.dM_final = ptr(u.dMT);
  b.dq = ptr(u.r.dq), b.dk = ptr(u.r.dk), b.dv = ptr(u.r.dv), b.dg = ptr(u.r.dg), b.dbeta = ptr(u.r.dbeta);
  b.dM0 = ptr(u.r.dM0);
  return u;
}
// A workspace of `bytes` on `dev`, NaN.
inline Tensor nan_workspace(size_t bytes, Device dev = cpu()) {
  return full({static_cast<int64_t>(bytes / 4) + 1}, NAN, opts(DType::f32, dev));
}

// The backend kernels of `dev` on buffers of dtype dt, every output and workspace NaN before the
// run; results on the CPU.
inline Grads kernel(const Problem& p, DType dt, Device dev = cpu()) {
  Run u = run_of(p, dt, dev);
  REQUIRE(gated_delta_unsupported(dev, u.f.s).empty());
  const Tensor wf = nan_workspace(u.f.workspace_bytes(dev), dev), wb = nan_workspace(u.b.workspace_bytes(dev), dev);
  u.f.workspace = wf.data_ptr();
  u.b.workspace = wb.data_ptr();
  backend(dev).run(u.f);
  backend(dev).run(u.b);
  for (Tensor* t : {&u.r.o, &u.r.MT, &u.r.dq, &u.r.dk, &u.r.dv, &u.r.dg, &u.r.dbeta, &u.r.dM0})
    if (t->defined()) *t = t->to(cpu());
  return u.r;
}

// Values (unless `outputs` is false) and every gradient; an undefined gradient counts as zeros.
inline void compare(const Grads& a, const Grads& b, double tol, const std::string& what, bool outputs = true) {
  CAPTURE(what);
  if (outputs) {
    CHECK_MESSAGE(max_scaled_diff(a.o, b.o) < tol, "o ", max_scaled_diff(a.o, b.o));
    CHECK_MESSAGE(max_scaled_diff(a.MT, b.MT) < tol, "M_T ", max_scaled_diff(a.MT, b.MT));
  }
  const std::pair<const char*, std::pair<Tensor, Tensor>> grads[] = {
      {"dq", {a.dq, b.dq}}, {"dk", {a.dk, b.dk}}, {"dv", {a.dv, b.dv}}, {"dg", {a.dg, b.dg}}, {"dbeta", {a.dbeta, b.dbeta}}};
  for (const auto& [name, ab] : grads) {
    const Tensor x = ab.first.defined() ? ab.first : zeros_like(ab.second);
    const Tensor y = ab.second.defined() ? ab.second : zeros_like(x);
    CHECK_MESSAGE(max_scaled_diff(x, y) < tol, name, " ", max_scaled_diff(x, y));
  }
  REQUIRE(a.dM0.defined() == b.dM0.defined());
  if (a.dM0.defined()) CHECK_MESSAGE(max_scaled_diff(a.dM0, b.dM0) < tol, "dM0 ", max_scaled_diff(a.dM0, b.dM0));
}

}  // namespace ttt::testing
