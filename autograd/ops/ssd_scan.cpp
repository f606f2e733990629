// autograd/ops/ssd_scan.cpp — the SSD scan of Mamba 2 (Dao & Gu 2024) as one tape node over the
// fused kernels of kernels/ssd.h, with the chunked composite form as the reference.
//
//   per batch b, head h (B, C of group g = h / (H / G)):
//   H_t = e^{Δ_t A_h} H_{t−1} + Δ_t x_t B_tᵀ,   y_t = H_t C_t        H ∈ R^{P×N}, H_{−1} = h0 (or 0)
//   x [B, T, H, P], dt [B, T, H], A [H], Bm, Cm [B, T, G, N], h0 [B, H, P, N] -> {y [B, T, H, P], H_T}
//
// Composite form (the SSD paper's chunked algorithm, Listing 1; state-spaces/mamba ssd_minimal.py):
// chunks of Q tokens, with c_t = Σ_{s≤t in chunk} Δ_s A and x̄ = Δ x,
//   Y_diag = (C Bᵀ ⊙ L) X̄ with L[t,s] = e^{c_t − c_s} (s ≤ t),  S_k = Σ_s e^{c_Q − c_s} x̄_s B_sᵀ,
//   H_in(k) = Σ_{j≤k} e^{z_k − z_j} S'_j over S' = (h0, S_0, …) and z the chunk-level cumulative decay,
//   Y_off[t] = e^{c_t} H_in(k) C_t,   y = Y_diag + Y_off,   H_T = H_in(K)
// written with differentiable ops (batched matmuls of size Q), T zero-padded to a multiple of Q.
//
// Paths
// - forward: SsdForward when `fused` and ssd_unsupported(device, shape) is empty (the CPU reference for
//   float32/float64; CUDA for float32); otherwise the composite, taped op by op.
// - backward, ordinary (grad mode off), float32: SsdBackward.
// - backward with create_graph, and float64 always: the composite is re-run from the saved inputs and
//   differentiated (exact gradients of gradients; float64 keeps full accuracy). The kernel's math
//   is tested against this path (tests/test_ssd_kernel.cpp, tests/test_cuda_ssd.cpp).
#include <stdexcept>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/ssd.h"

namespace ttt {

namespace {

SSDShape shape_of(const Tensor& x, const Tensor& Bm, int64_t chunk) {
  SSDShape s;
  s.batch = x.shape()[0];
  s.len = x.shape()[1];
  s.heads = x.shape()[2];
  s.head_dim = x.shape()[3];
  s.groups = Bm.shape()[2];
  s.state = Bm.shape()[3];
  s.chunk = chunk;
  s.dtype = x.dtype();
  return s;
}

// Uninitialized bytes on `d` for a kernel's workspace (a float32 tensor; none when 0).
Tensor workspace(size_t bytes, Device d) {
  return bytes ? empty({static_cast<int64_t>((bytes + 3) / 4)}, opts(DType::f32, d)) : Tensor();
}
void* ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

void check_inputs(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                  const Tensor& h0, int64_t chunk) {
  for (const Tensor* t : {&x, &dt, &A, &Bm, &Cm}) check_defined("ssd_scan", *t);
  if (x.dim() != 4 || Bm.dim() != 4)
    throw std::invalid_argument("ssd_scan: x must be [B, T, H, P] and B, C [B, T, G, N], got " + x.shape().str() +
                                ", " + Bm.shape().str());
  const int64_t Bz = x.shape()[0], T = x.shape()[1], H = x.shape()[2], P = x.shape()[3];
  const int64_t G = Bm.shape()[2], N = Bm.shape()[3];
  const bool ok = dt.shape() == Shape{Bz, T, H} && A.shape() == Shape{H} && Bm.shape() == Shape{Bz, T, G, N} &&
                  Cm.shape() == Bm.shape() && G > 0 && H % G == 0 &&
                  (!h0.defined() || h0.shape() == Shape{Bz, H, P, N});
  if (!ok)
    throw std::invalid_argument("ssd_scan: shapes do not fit: x " + x.shape().str() + ", dt " + dt.shape().str() +
                                ", A " + A.shape().str() + ", B " + Bm.shape().str() + ", C " + Cm.shape().str() +
                                (h0.defined() ? ", h0 " + h0.shape().str() : std::string()));
  for (const Tensor* t : {&dt, &A, &Bm, &Cm, &h0})
    if (t->defined() && (t->dtype() != x.dtype() || t->device() != x.device()))
      throw std::invalid_argument("ssd_scan: every input must have x's dtype and device (" + x.str() + ")");
  kc::check_floating(x, "ssd_scan");
  if (chunk <= 0) throw std::invalid_argument("ssd_scan: chunk must be > 0, got " + std::to_string(chunk));
}

Tensor pad_time(const Tensor& x, int64_t len) {  // zero-pads dim 2 to len
  if (x.shape()[2] == len) return x;
  Shape s = x.shape();
  s[2] = len;
  return narrow_scatter(x, s, 2, 0);
}

// exp(c_t − c_s) for s ≤ t, 0 above the diagonal; c [..., L] -> [..., L, L]. The exponent is
// zeroed above the diagonal before exp, so nothing overflows.
Tensor segment_decay(const Tensor& c) { return tril(exp(tril(sub(unsqueeze(c, -1), unsqueeze(c, -2)))), 0); }

// The composite chunked form (see the header), any dtype and device: x̄ = Δ x and a = Δ A per token.
tensor_list composite(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                      const Tensor& h0, int64_t chunk) {
  const int64_t H = x.shape()[2];
  auto per_head = [&](const Tensor& t) { return permute(expand_groups(t, H), {0, 2, 1, 3}); };  // [B, H, T, N]
  const Tensor dth = transpose(dt, 1, 2);                                              // [B, H, T]
  const Tensor xbar = mul(permute(x, {0, 2, 1, 3}), unsqueeze(dth, -1));               // [B, H, T, P]
  tensor_list r = ssd_composite(xbar, mul(dth, reshape(A, {1, -1, 1})), per_head(Bm), per_head(Cm), h0, chunk);
  return {permute(r[0], {0, 2, 1, 3}), r[1]};
}

// Backward by re-running the composite from the saved inputs themselves (saved[0..5], with their
// history: create_graph, or float64).
tensor_list composite_backward(const BackwardCtx& c, const tensor_list& g, int64_t chunk) {
  const bool create = GradMode::is_enabled();
  tensor_list local(6), diff;
  std::vector<size_t> idx;
  for (size_t i = 0; i < 6; ++i) {
    const Tensor& in = c.saved[i];
    if (!in.defined()) continue;
    const bool want = c.needs(i) && in.requires_grad();
    // create_graph: clone keeps the inputs' history, so the gradients can be differentiated again.
    local[i] = !want ? in.detach() : create ? clone(in) : in.detach().set_requires_grad(true);
    if (want) {
      diff.push_back(local[i]);
      idx.push_back(i);
    }
  }
  tensor_list result(6);
  if (diff.empty()) return result;
  tensor_list outs;
  {
    GradModeGuard on(true);
    outs = composite(local[0], local[1], local[2], local[3], local[4], local[5], chunk);
  }
  tensor_list live, gos;
  for (size_t k = 0; k < 2; ++k)
    if (g[k].defined() && outs[k].requires_grad()) {
      live.push_back(outs[k]);
      gos.push_back(g[k]);
    }
  if (live.empty()) return result;
  tensor_list gr = grad(live, diff, gos, create, create, /*allow_unused=*/true);
  for (size_t j = 0; j < idx.size(); ++j) result[idx[j]] = gr[j];
  return result;
}

// The fused kernel, on the contiguous inputs the forward used (saved[6..11]).
tensor_list fused_backward(const BackwardCtx& c, const tensor_list& g, const SSDShape& s) {
  const Tensor &x = c.saved[6], &dt = c.saved[7], &A = c.saved[8], &Bm = c.saved[9], &Cm = c.saved[10],
               &h0 = c.saved[11];
  const Tensor dy = g[0].defined() ? kc::contiguous(g[0]) : Tensor();
  const Tensor dh = g[1].defined() ? kc::contiguous(g[1]) : Tensor();
  auto like = [](const Tensor& t) { return empty(t.shape(), opts(t.dtype(), t.device())); };
  tensor_list out = {like(x), like(dt), like(A), like(Bm), like(Cm), h0.defined() ? like(h0) : Tensor()};
  SsdBackward k;
  k.s = s;
  k.x = x.data_ptr(), k.dt = dt.data_ptr(), k.A = A.data_ptr(), k.B = Bm.data_ptr(), k.C = Cm.data_ptr();
  k.h0 = ptr(h0), k.dy = ptr(dy), k.dh_final = ptr(dh);
  k.dx = out[0].data_ptr(), k.ddt = out[1].data_ptr(), k.dA = out[2].data_ptr(), k.dB = out[3].data_ptr();
  k.dC = out[4].data_ptr(), k.dh0 = ptr(out[5]);
  const Tensor ws = workspace(k.workspace_bytes(x.device()), x.device());
  k.workspace = ptr(ws);
  backend(x.device()).run(k);
  for (size_t i = 0; i < out.size(); ++i)
    if (!c.needs(i)) out[i] = Tensor();
  return out;
}

}  // namespace

Tensor expand_groups(const Tensor& t, int64_t heads) {
  const int64_t B = t.shape()[0], T = t.shape()[1], G = t.shape()[2], d = t.shape()[3];
  if (G == heads) return t;
  if (G <= 0 || heads % G != 0)
    throw std::invalid_argument("expand_groups: " + std::to_string(G) + " groups do not divide " +
                                std::to_string(heads) + " heads");
  return reshape(expand(unsqueeze(t, 3), {B, T, G, heads / G, d}), {B, T, heads, d});
}

tensor_list ssd_composite(const Tensor& xbar, const Tensor& a, const Tensor& b0, const Tensor& c0, const Tensor& h0,
                          int64_t chunk) {
  const int64_t Bz = xbar.shape()[0], H = xbar.shape()[1], T = xbar.shape()[2], P = xbar.shape()[3];
  const int64_t N = b0.shape()[3];
  const Tensor start = h0.defined() ? h0 : zeros({Bz, H, P, N}, opts(xbar.dtype(), xbar.device()));
  if (T == 0) return {zeros_like(xbar), start};
  const int64_t Q = std::min(chunk, T), K = (T + Q - 1) / Q, Tp = K * Q;
  auto chunks = [&](const Tensor& t, int64_t d) { return reshape(pad_time(t, Tp), {Bz, H, K, Q, d}); };
  const Tensor ac = reshape(pad_time(a, Tp), {Bz, H, K, Q});
  const Tensor xb = chunks(xbar, P), b = chunks(b0, N), c = chunks(c0, N);

  Tensor acum = cumsum(ac, -1);
  Tensor y_diag = matmul(mul(matmul(c, transpose(b, -2, -1)), segment_decay(acum)), xb);
  Tensor alast = narrow(acum, 3, Q - 1, 1);
  Tensor states = matmul(transpose(mul(xb, unsqueeze(exp(sub(alast, acum)), -1)), -2, -1), b);  // [B,H,K,P,N]
  Tensor zk = cumsum(reshape(alast, {Bz, H, K}), -1);
  Tensor zc = cat({zeros({Bz, H, 1}, opts(zk.dtype(), zk.device())), zk}, 2);                  // [B, H, K+1]
  Tensor s_all = reshape(cat({unsqueeze(start, 2), states}, 2), {Bz, H, K + 1, P * N});
  Tensor mixed = reshape(matmul(segment_decay(zc), s_all), {Bz, H, K + 1, P, N});
  Tensor h_in = narrow(mixed, 2, 0, K);
  Tensor y_off = mul(matmul(c, transpose(h_in, -2, -1)), unsqueeze(exp(acum), -1));
  Tensor y = reshape(add(y_diag, y_off), {Bz, H, Tp, P});
  if (Tp != T) y = narrow(y, 2, 0, T);
  return {y, reshape(narrow(mixed, 2, K, 1), {Bz, H, P, N})};
}

tensor_list ssd_scan(const Tensor& x0, const Tensor& dt0, const Tensor& A0, const Tensor& B0, const Tensor& C0,
                     const Tensor& h00, int64_t chunk, bool fused) {
  check_inputs(x0, dt0, A0, B0, C0, h00, chunk);
  const SSDShape s = shape_of(x0, B0, chunk);
  if (!fused || s.len == 0 || !ssd_unsupported(x0.device(), s).empty())
    return composite(x0, dt0, A0, B0, C0, h00, chunk);
  const Tensor x = kc::contiguous(x0), dt = kc::contiguous(dt0), A = kc::contiguous(A0), Bm = kc::contiguous(B0),
               Cm = kc::contiguous(C0), h0 = h00.defined() ? kc::contiguous(h00) : Tensor();
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  Tensor hT = empty({s.batch, s.heads, s.head_dim, s.state}, opts(x.dtype(), x.device()));
  {
    SsdForward k;
    k.s = s;
    k.x = x.data_ptr(), k.dt = dt.data_ptr(), k.A = A.data_ptr(), k.B = Bm.data_ptr(), k.C = Cm.data_ptr();
    k.h0 = ptr(h0), k.y = y.data_ptr(), k.h_final = hT.data_ptr();
    const Tensor ws = workspace(k.workspace_bytes(x.device()), x.device());
    k.workspace = ptr(ws);
    backend(x.device()).run(k);
  }
  if (needs_grad({x0, dt0, A0, B0, C0, h00})) {
    const tensor_list inputs = {x0, dt0, A0, B0, C0, h00};
    const tensor_list saved = {x0, dt0, A0, B0, C0, h00, x, dt, A, Bm, Cm, h0};
    record("ssd_scan", inputs, {y, hT}, saved, [s, chunk](BackwardCtx& c, const tensor_list& g) {
      if (GradMode::is_enabled() || c.saved[0].dtype() == DType::f64) return composite_backward(c, g, chunk);
      return fused_backward(c, g, s);
    });
  }
  return {y, hT};
}

}  // namespace ttt
