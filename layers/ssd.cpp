// layers/ssd.cpp — see ssd.h.
#include "layers/ssd.h"

#include <stdexcept>

#include "autograd/ops.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

void check_shapes(const char* who, const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                  const Tensor& Cm, const Tensor& h0) {
  for (const Tensor* t : {&x, &dt, &A, &Bm, &Cm}) check_defined(who, *t);
  if (x.dim() != 4) throw std::invalid_argument(std::string(who) + ": x must be [B, H, T, P], got " + x.shape().str());
  const int64_t B = x.shape()[0], H = x.shape()[1], T = x.shape()[2], P = x.shape()[3];
  const int64_t N = Bm.dim() == 4 ? Bm.shape()[3] : -1;
  const bool ok = dt.shape() == Shape{B, H, T} && A.shape() == Shape{H} && Bm.shape() == Shape{B, H, T, N} &&
                  Cm.shape() == Shape{B, H, T, N} && (!h0.defined() || h0.shape() == Shape{B, H, P, N});
  if (!ok)
    throw std::invalid_argument(std::string(who) + ": shapes do not fit: x " + x.shape().str() + ", dt " +
                                dt.shape().str() + ", A " + A.shape().str() + ", B " + Bm.shape().str() + ", C " +
                                Cm.shape().str() + (h0.defined() ? ", h0 " + h0.shape().str() : std::string()));
}

Tensor zero_state(const Tensor& x, const Tensor& Bm) {
  return zeros({x.shape()[0], x.shape()[1], x.shape()[3], Bm.shape()[3]}, opts(x.dtype(), x.device()));
}

}  // namespace

Tensor pad_to(const Tensor& x, int64_t dim, int64_t len) {
  const int d = dim < 0 ? x.dim() + static_cast<int>(dim) : static_cast<int>(dim);
  if (x.shape()[d] == len) return x;
  Shape s = x.shape();
  s[d] = len;
  return narrow_scatter(x, s, d, 0);
}

ScanResult ssd_recurrent(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                         const Tensor& h0) {
  check_shapes("ssd_recurrent", x, dt, A, Bm, Cm, h0);
  const int64_t T = x.shape()[2];
  Tensor h = h0.defined() ? h0 : zero_state(x, Bm);
  if (T == 0) return {zeros_like(x), h};
  const tensor_list decay = steps_of(exp(mul(dt, reshape(A, {1, -1, 1}))), 2);  // [B, H, 1] each
  const tensor_list xbar = steps_of(mul(x, unsqueeze(dt, -1)), 2);              // Δ x, [B, H, 1, P]
  const tensor_list b = steps_of(Bm, 2), c = steps_of(Cm, 2);
  tensor_list ys;
  for (int64_t t = 0; t < T; ++t) {
    h = add(mul(unsqueeze(decay[t], -1), h), matmul(transpose(xbar[t], -2, -1), b[t]));  // + x̄_t B_tᵀ
    ys.push_back(matmul(c[t], transpose(h, -2, -1)));  // y_tᵀ = C_tᵀ Hᵀ, [B, H, 1, P]
  }
  return {cat(ys, 2), h};
}

ScanResult ssd_chunked(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                       int64_t chunk, const Tensor& h0) {
  check_shapes("ssd_chunked", x, dt, A, Bm, Cm, h0);
  if (chunk <= 0) throw std::invalid_argument("ssd_chunked: chunk must be > 0, got " + std::to_string(chunk));
  const int64_t B = x.shape()[0], H = x.shape()[1], T = x.shape()[2], P = x.shape()[3], N = Bm.shape()[3];
  if (T == 0) return {zeros_like(x), h0.defined() ? h0 : zero_state(x, Bm)};
  const int64_t Q = std::min(chunk, T), K = (T + Q - 1) / Q, Tp = K * Q;

  // Chunked views [B, H, K, Q, ...]; the padded tail has Δ = 0 (no decay, no input).
  Tensor a = reshape(pad_to(mul(dt, reshape(A, {1, -1, 1})), 2, Tp), {B, H, K, Q});
  Tensor xbar = reshape(pad_to(mul(x, unsqueeze(dt, -1)), 2, Tp), {B, H, K, Q, P});
  Tensor b = reshape(pad_to(Bm, 2, Tp), {B, H, K, Q, N});
  Tensor c = reshape(pad_to(Cm, 2, Tp), {B, H, K, Q, N});

  Tensor acum = cumsum(a, -1);                                             // c_t within the chunk
  Tensor y_diag = matmul(mul(matmul(c, transpose(b, -2, -1)), decay_matrix(acum)), xbar);

  Tensor alast = narrow(acum, 3, Q - 1, 1);                                // [B, H, K, 1] log decay of a chunk
  Tensor to_end = unsqueeze(exp(sub(alast, acum)), -1);                    // e^{c_Q − c_s}
  Tensor states = matmul(transpose(mul(xbar, to_end), -2, -1), b);         // S_k [B, H, K, P, N]

  // States entering each chunk: H_in(k) = Σ_{j ≤ k} W[k, j] S'_j with S' = (H_0, S_0 … S_{K−1}) and
  // W the decay matrix of the chunk-level cumulative log decays (0, c_Q(0), c_Q(0)+c_Q(1), …).
  Tensor zk = cumsum(reshape(alast, {B, H, K}), -1);
  Tensor zc = cat({zeros({B, H, 1}, opts(zk.dtype(), zk.device())), zk}, 2);  // [B, H, K+1]
  Tensor start = h0.defined() ? h0 : zero_state(x, Bm);
  Tensor s_all = cat({unsqueeze(start, 2), states}, 2);                   // [B, H, K+1, P, N]
  Tensor mixed = reshape(matmul(decay_matrix(zc), reshape(s_all, {B, H, K + 1, P * N})), {B, H, K + 1, P, N});
  Tensor h_in = narrow(mixed, 2, 0, K);
  Tensor final_state = reshape(narrow(mixed, 2, K, 1), {B, H, P, N});

  Tensor y_off = mul(matmul(c, transpose(h_in, -2, -1)), unsqueeze(exp(acum), -1));  // e^{c_t} C_tᵀ H_inᵀ
  Tensor y = reshape(add(y_diag, y_off), {B, H, Tp, P});
  return {Tp == T ? y : narrow(y, 2, 0, T), final_state};
}

}  // namespace ttt
