// layers/delta_rule.cpp — see delta_rule.h.
#include "layers/delta_rule.h"

#include <stdexcept>
#include <vector>

#include "autograd/ops.h"
#include "layers/ssm_util.h"

namespace ttt {

namespace {

void check_shapes(const char* who, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                  const Tensor& beta, const Tensor& M0) {
  for (const Tensor* t : {&q, &k, &v, &g, &beta}) check_defined(who, *t);
  if (q.dim() != 4 || v.dim() != 4)
    throw std::invalid_argument(std::string(who) + ": q, k, v must be [B, H, T, d], got " + q.shape().str());
  const int64_t B = q.shape()[0], H = q.shape()[1], T = q.shape()[2], dk = q.shape()[3], dv = v.shape()[3];
  const bool ok = k.shape() == q.shape() && v.shape() == Shape{B, H, T, dv} && g.shape() == Shape{B, H, T} &&
                  beta.shape() == Shape{B, H, T} && (!M0.defined() || M0.shape() == Shape{B, H, dk, dv});
  if (!ok)
    throw std::invalid_argument(std::string(who) + ": shapes do not fit: q " + q.shape().str() + ", k " +
                                k.shape().str() + ", v " + v.shape().str() + ", g " + g.shape().str() + ", beta " +
                                beta.shape().str() + (M0.defined() ? ", M0 " + M0.shape().str() : std::string()));
}

Tensor zero_state(const Tensor& q, const Tensor& v) {
  return zeros({q.shape()[0], q.shape()[1], q.shape()[3], v.shape()[3]}, opts(q.dtype(), q.device()));
}

// The n × n identity.
Tensor identity(int64_t n, DType d, Device dev) { return sub(lower_mask(n, d, dev), lower_mask(n, d, dev, true)); }

// Identity blocks [..., n, 1, 1] — the inverses of the 1×1 unit diagonal blocks.
Tensor unit_blocks(const Shape& lead, int64_t n, DType d, Device dev) {
  Shape s = lead;
  s.push_back(n);
  s.push_back(1);
  s.push_back(1);
  return ones(s, opts(d, dev));
}

// The inclusive scan of affine maps x ↦ A_c x + B_c along dimension `dim` (A [..., K, n, n],
// B [..., K, n, m]): entry c of the result is the composition of maps c, c − 1, ..., 0 (Hillis–Steele:
// at the level of stride s, entry c ≥ s composes with entry c − s of the level before).
struct AffineMaps {
  Tensor A, B;
};
AffineMaps affine_scan(AffineMaps m, int dim) {
  const int64_t K = m.A.shape()[dim];
  for (int64_t s = 1; s < K; s *= 2) {
    const Tensor A_hi = narrow(m.A, dim, s, K - s);
    const Tensor A = cat({narrow(m.A, dim, 0, s), matmul(A_hi, narrow(m.A, dim, 0, K - s))}, dim);
    const Tensor B_hi = add(matmul(A_hi, narrow(m.B, dim, 0, K - s)), narrow(m.B, dim, s, K - s));
    const Tensor B = cat({narrow(m.B, dim, 0, s), B_hi}, dim);
    m = {A, B};
  }
  return m;
}

}  // namespace

Tensor unit_lower_inverse(const Tensor& A) {
  check_defined("unit_lower_inverse", A);
  const int64_t Q = A.shape().back();
  if (A.dim() < 2 || A.shape()[A.dim() - 2] != Q || Q <= 0 || (Q & (Q - 1)) != 0)
    throw std::invalid_argument("unit_lower_inverse: expected [..., Q, Q] with Q a power of two, got " +
                                A.shape().str());
  const Shape lead(A.shape().begin(), A.shape().end() - 2);
  const int r = static_cast<int>(lead.size());  // the block index sits at dim r
  auto with = [&](std::initializer_list<int64_t> tail) {
    Shape s = lead;
    for (int64_t t : tail) s.push_back(t);
    return s;
  };
  Tensor X = unit_blocks(lead, Q, A.dtype(), A.device());  // inverses of the diagonal blocks of size s
  for (int64_t s = 1; s < Q; s *= 2) {
    const int64_t nb = Q / (2 * s);
    // The diagonal blocks of size 2s of A: [..., nb, 2s, nb, 2s] -> keep block j of row j.
    Tensor blocks = permute(reshape(A, with({nb, 2 * s, nb, 2 * s})), [&] {
      std::vector<int> p;
      for (int i = 0; i < r; ++i) p.push_back(i);
      for (int i : {0, 2, 1, 3}) p.push_back(r + i);
      return p;
    }());                                                                        // [..., nb, nb, 2s, 2s]
    const Tensor eye = unsqueeze(unsqueeze(identity(nb, A.dtype(), A.device()), -1), -1);  // [nb, nb, 1, 1]
    Tensor diag = sum(mul(blocks, eye), {r + 1});                                // [..., nb, 2s, 2s]
    Tensor L21 = narrow(narrow(diag, -2, s, s), -1, 0, s);                       // [..., nb, s, s]
    Tensor pairs = reshape(X, with({nb, 2, s, s}));
    Tensor X11 = squeeze(narrow(pairs, r + 1, 0, 1), r + 1);
    Tensor X22 = squeeze(narrow(pairs, r + 1, 1, 1), r + 1);
    Tensor X21 = neg(matmul(matmul(X22, L21), X11));
    Tensor top = cat({X11, zeros_like(X11)}, -1);
    Tensor bottom = cat({X21, X22}, -1);
    X = cat({top, bottom}, -2);                                                  // [..., nb, 2s, 2s]
  }
  return reshape(X, with({Q, Q}));
}

ScanResult gated_delta_recurrent(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                 const Tensor& beta, const Tensor& M0) {
  check_shapes("gated_delta_recurrent", q, k, v, g, beta, M0);
  const int64_t T = q.shape()[2];
  Tensor M = M0.defined() ? M0 : zero_state(q, v);
  if (T == 0) return {zeros_like(v), M};
  const tensor_list qs = steps_of(q, 2), ks = steps_of(k, 2), vs = steps_of(v, 2);  // [B, H, 1, d]
  const tensor_list as = steps_of(exp(g), 2), bs = steps_of(beta, 2);               // [B, H, 1]
  tensor_list os;
  for (int64_t t = 0; t < T; ++t) {
    Tensor a = unsqueeze(as[t], -1), b = unsqueeze(bs[t], -1);         // [B, H, 1, 1]
    Tensor ktT = transpose(ks[t], -2, -1);                             // [B, H, d_k, 1]
    Tensor erased = sub(M, mul(b, matmul(ktT, matmul(ks[t], M))));     // (I − β k kᵀ) M
    M = add(mul(a, erased), mul(b, matmul(ktT, vs[t])));               // + β k vᵀ
    os.push_back(matmul(qs[t], M));                                    // oᵀ = qᵀ M
  }
  return {cat(os, 2), M};
}

ScanResult gated_delta_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                               int64_t chunk, const Tensor& M0) {
  check_shapes("gated_delta_chunked", q, k, v, g, beta, M0);
  if (chunk <= 0 || (chunk & (chunk - 1)) != 0)
    throw std::invalid_argument("gated_delta_chunked: chunk must be a power of two, got " + std::to_string(chunk));
  const int64_t B = q.shape()[0], H = q.shape()[1], T = q.shape()[2], dk = q.shape()[3], dv = v.shape()[3];
  if (T == 0) return {zeros_like(v), M0.defined() ? M0 : zero_state(q, v)};
  int64_t Q = 1;
  while (Q < T && Q < chunk) Q *= 2;  // a short input (decoding) uses a smaller chunk
  const int64_t K = (T + Q - 1) / Q, Tp = K * Q;
  auto chunks = [&](const Tensor& t, int64_t d) { return reshape(pad_to(t, 2, Tp), {B, H, K, Q, d}); };
  Tensor qc = chunks(q, dk), kc = chunks(k, dk), vc = chunks(v, dv);
  Tensor gc = cumsum(reshape(pad_to(g, 2, Tp), {B, H, K, Q}), -1);  // log γ_t
  Tensor bc = reshape(pad_to(beta, 2, Tp), {B, H, K, Q});
  Tensor Gamma = decay_matrix(gc);                                   // γ_t/γ_s for s ≤ t, else 0
  Tensor kT = transpose(kc, -2, -1);

  // The UT transform, for every chunk at once.
  Tensor A = mul(mul(unsqueeze(bc, -1), mul(Gamma, matmul(kc, kT))), lower_mask(Q, q.dtype(), q.device(), true));
  Tensor Tinv = unit_lower_inverse(A);
  Tensor gamma = exp(gc);
  Tensor W = matmul(Tinv, mul(kc, unsqueeze(mul(bc, gamma), -1)));   // T diag(βγ) K   [.., Q, d_k]
  Tensor U0 = matmul(Tinv, mul(vc, unsqueeze(bc, -1)));               // T diag(β) V    [.., Q, d_v]
  Tensor QK = mul(matmul(qc, kT), Gamma);                              // causal, decayed q·k
  Tensor qg = mul(qc, unsqueeze(gamma, -1));
  Tensor glast = narrow(gc, 3, Q - 1, 1);                              // [B, H, K, 1]
  Tensor kd = mul(kc, unsqueeze(exp(sub(glast, gc)), -1));             // (γ_Q/γ_s) k_s
  Tensor gQ = unsqueeze(exp(glast), -1);                               // [B, H, K, 1, 1]

  // The state hand-off. Chunk c maps the state entering it affinely, M_{c+1} = A_c M_c + B_c with
  // A_c = γ_Q I − kdᵀ W and B_c = kdᵀ U0 (from U = U0 − W M_c), so the states entering every chunk are
  // an inclusive scan of these maps over the chunks, log₂ K levels of batched products
  // (affine_scan), instead of K dependent steps of small ones.
  const Tensor M0s = reshape(M0.defined() ? M0 : zero_state(q, v), {B, H, 1, dk, dv});
  const Tensor kdT = transpose(kd, -2, -1);                                      // [B, H, K, d_k, Q]
  const Tensor eye = identity(dk, q.dtype(), q.device());
  const AffineMaps maps = affine_scan({sub(mul(gQ, eye), matmul(kdT, W)), matmul(kdT, U0)}, 2);
  const Tensor leaving = add(matmul(maps.A, M0s), maps.B);                     // M_{c+1}
  const Tensor Min = K == 1 ? M0s : cat({M0s, narrow(leaving, 2, 0, K - 1)}, 2);  // M_c
  const Tensor U = sub(U0, matmul(W, Min));
  const Tensor M = narrow(leaving, 2, K - 1, 1);
  const Tensor outs = add(matmul(qg, Min), matmul(QK, U));                    // [B, H, K, Q, d_v]
  Tensor o = reshape(outs, {B, H, Tp, dv});
  return {Tp == T ? o : narrow(o, 2, 0, T), reshape(M, {B, H, dk, dv})};
}

ScanResult gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                            int64_t chunk, const Tensor& M0, bool fused, DeltaForm form) {
  // The twin sees the op's heads-last inputs and answers in the same layout.
  const GatedDeltaComposite composite = [chunk](const tensor_list& in) {
    auto heads_first = [](const Tensor& t) { return permute(t, {0, 2, 1, 3}); };
    const int64_t H = in[2].shape()[2];
    ScanResult r = gated_delta_chunked(heads_first(expand_groups(in[0], H)), heads_first(expand_groups(in[1], H)),
                                       heads_first(in[2]),
                                       transpose(in[3], 1, 2), transpose(in[4], 1, 2), chunk, in[5]);
    return tensor_list{heads_first(r.y), r.state};
  };
  const tensor_list r = gated_delta_scan(q, k, v, g, beta, M0, chunk, composite, fused, true, form);
  return {r[0], r[1]};
}

}  // namespace ttt
