// layers/selective_scan.cpp — see selective_scan.h.
#include "layers/selective_scan.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/checkpoint.h"
#include "autograd/ops.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

// Steps t = 0..Q−1 of one stretch: inputs (u, delta, B, C [B, Q, ·], A, h) -> (y [B, Q, D], h_end).
tensor_list scan_steps(const tensor_list& in) {
  const Tensor &u = in[0], &delta = in[1], &Bm = in[2], &Cm = in[3], &A = in[4];
  Tensor h = in[5];
  const int64_t Q = u.shape()[1];
  const tensor_list dA = steps_of(exp(mul(unsqueeze(delta, -1), A)), 1);                  // [B, 1, D, N] each
  const tensor_list dBu = steps_of(mul(unsqueeze(mul(delta, u), -1), unsqueeze(Bm, 2)), 1);  // Δ u Bᵀ
  const tensor_list C = steps_of(Cm, 1);                                                   // [B, 1, N]
  tensor_list ys;
  for (int64_t t = 0; t < Q; ++t) {
    h = add(mul(squeeze(dA[t], 1), h), squeeze(dBu[t], 1));
    ys.push_back(transpose(matmul(h, transpose(C[t], 1, 2)), 1, 2));  // [B, 1, D]
  }
  return {cat(ys, 1), h};
}

}  // namespace

ScanResult selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                          const Tensor& h0, int64_t chunk) {
  for (const Tensor* t : {&u, &delta, &A, &Bm, &Cm}) check_defined("selective_scan", *t);
  if (u.dim() != 3 || A.dim() != 2)
    throw std::invalid_argument("selective_scan: u must be [B, T, D] and A [D, N], got " + u.shape().str() + ", " +
                                A.shape().str());
  const int64_t Bsz = u.shape()[0], T = u.shape()[1], D = u.shape()[2], N = A.shape()[1];
  if (delta.shape() != u.shape() || A.shape()[0] != D || Bm.shape() != Shape{Bsz, T, N} ||
      Cm.shape() != Shape{Bsz, T, N} || (h0.defined() && h0.shape() != Shape{Bsz, D, N}))
    throw std::invalid_argument("selective_scan: shapes do not fit: u " + u.shape().str() + ", delta " +
                                delta.shape().str() + ", A " + A.shape().str() + ", B " + Bm.shape().str() + ", C " +
                                Cm.shape().str());
  Tensor h = h0.defined() ? h0 : zeros({Bsz, D, N}, opts(u.dtype(), u.device()));
  if (T == 0) return {zeros_like(u), h};
  const int64_t Q = chunk > 0 ? std::min(chunk, T) : T;
  const bool keep_all = chunk <= 0 || !GradMode::is_enabled();
  tensor_list ys;
  for (int64_t t0 = 0; t0 < T; t0 += Q) {
    const int64_t len = std::min(Q, T - t0);
    tensor_list in = {narrow(u, 1, t0, len), narrow(delta, 1, t0, len), narrow(Bm, 1, t0, len),
                      narrow(Cm, 1, t0, len), A, h};
    tensor_list out = keep_all ? scan_steps(in) : checkpoint(scan_steps, in);
    ys.push_back(out[0]);
    h = out[1];
  }
  return {ys.size() == 1 ? ys[0] : cat(ys, 1), h};
}

ScanResult selective_scan_with_skip(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm,
                                    const Tensor& Cm, const Tensor& D, const Tensor& bias, const Tensor& h0,
                                    int64_t chunk) {
  ScanResult r = selective_scan(u, softplus(add(delta, bias)), A, Bm, Cm, h0, chunk);
  r.y = add(r.y, mul(u, D));
  return r;
}

}  // namespace ttt
