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
                       int64_t chunk, const Tensor& h0, bool fused) {
  check_shapes("ssd_chunked", x, dt, A, Bm, Cm, h0);
  // The op's layout: time before heads, and every head its own group of B and C.
  tensor_list r = ssd_scan(permute(x, {0, 2, 1, 3}), transpose(dt, 1, 2), A, permute(Bm, {0, 2, 1, 3}),
                           permute(Cm, {0, 2, 1, 3}), h0, chunk, fused);
  return {permute(r[0], {0, 2, 1, 3}), r[1]};
}

ScanResult gated_linear_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                                int64_t chunk, const Tensor& M0) {
  for (const Tensor* t : {&q, &k, &v, &g, &beta}) check_defined("gated_linear_chunked", *t);
  if (q.dim() != 4 || v.dim() != 4 || k.shape() != q.shape() || chunk <= 0)
    throw std::invalid_argument("gated_linear_chunked: expected q, k [B, T, H, d_k], v [B, T, H, d_v] and chunk > 0, "
                                "got q " + q.shape().str() + ", k " + k.shape().str() + ", v " + v.shape().str());
  // SSD's chunked form with H = Mᵀ: x̄ = β v, log-decay g, b = k, c = q.
  auto heads_first = [](const Tensor& t) { return permute(t, {0, 2, 1, 3}); };
  const Tensor gh = transpose(g, 1, 2), bh = transpose(beta, 1, 2);  // [B, H, T]
  const tensor_list r = ssd_composite(mul(heads_first(v), unsqueeze(bh, -1)), gh, heads_first(k), heads_first(q),
                                      M0.defined() ? transpose(M0, 2, 3) : Tensor(), chunk);
  return {heads_first(r[0]), transpose(r[1], 2, 3)};
}

DeltaForm delta_form_of(const std::string& kernel) {
  if (kernel == "chunked" || kernel == "delta_chunked") return DeltaForm::chunked;
  if (kernel == "chunked_tc" || kernel == "delta_chunked_tc") return DeltaForm::chunked_tc;
  return DeltaForm::walk;
}

void require_gated_delta_kernels(const char* who, const char* key, const std::string& kernel, bool explicit_choice,
                                 const Tensor& q, const Tensor& v, int64_t chunk, DeltaForm form) {
  if (!explicit_choice) return;
  const std::string why = gated_delta_scan_unsupported(q, v, chunk, form);
  if (!why.empty())
    throw std::invalid_argument(std::string(who) + ": " + key + " is '" + kernel + "' but its fused scan cannot run on " +
                                q.device().str() + ": " + why + " (use auto or composite)");
}

ScanResult gated_linear_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                             int64_t chunk, const Tensor& M0, bool fused, DeltaForm form) {
  const GatedDeltaComposite twin = [chunk](const tensor_list& in) {
    const int64_t H = in[2].shape()[2];
    ScanResult r = gated_linear_chunked(expand_groups(in[0], H), expand_groups(in[1], H), in[2], in[3], in[4], chunk,
                                        in[5]);
    return tensor_list{r.y, r.state};
  };
  const tensor_list r = gated_delta_scan(q, k, v, g, beta, M0, chunk, twin, fused, /*erase=*/false, form);
  return {r[0], r[1]};
}

}  // namespace ttt

