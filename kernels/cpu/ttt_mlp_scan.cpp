// kernels/cpu/ttt_mlp_scan.cpp — the CPU reference of the fused TTT-MLP scan (kernels/ttt_mlp_scan.h):
// loops and small dgemms over one (batch, head) at a time, OpenMP across them, all arithmetic in double
// whatever the storage (float32 / float64). Also the call structs' dispatch, byte counts and
// workspace size.
//
// Backward of one chunk, given dout, the gradient dS' = (dW1', db1', dW2', db2') of the state
// leaving it, and the forward's intermediates recomputed from the state entering it
// (Mt1 = diag(tok) tril(XQ XKᵀ + β), Mt2 = diag(tok) tril(X̄2 X2ᵀ + β), P = G2 W2ᵀ):
//   dZ̄2 = LN_bwd(dout ⊙ w);  dln_w += Σ dout ⊙ x̂o;  dln_b += Σ dout;  dXQ = dout      (ln)
//   dW2 += X̄2ᵀ dZ̄2,  db2 += Σ dZ̄2,  dX̄2 = dZ̄2 W2ᵀ
//   dMt2 = −dZ̄2 Gp2ᵀ (j ≤ i): dtok_i += Σ_j dMt2_ij M2_ij;  dS2 = diag(tok) dMt2
//   dGp2 = −Mt2ᵀ dZ̄2;  dX̄2 += dS2 X2;  dX2 = dS2ᵀ X̄2
//   dZ̄1 = dX̄2 ⊙ gelu'(Z̄1);  dW1 += XQᵀ dZ̄1,  db1 += Σ dZ̄1,  dXQ += dZ̄1 W1ᵀ
//   dMt1 = −dZ̄1 Gp1ᵀ (j ≤ i): dtok_i += Σ_j dMt1_ij M1_ij;  dS1 = diag(tok) dMt1
//   dGp1 = −Mt1ᵀ dZ̄1;  dXQ += dS1 XK;  dXK += dS1ᵀ XQ
//   commit (τ = tok[K−1]): U1 = XK dW1' + 1 db1'ᵀ, U2 = X2 dW2' + 1 db2'ᵀ;  dGp1 −= τ U1, dGp2 −= τ U2;
//     dτ −= Σ U1 ⊙ Gp1 + Σ U2 ⊙ Gp2;  dXK −= τ Gp1 dW1'ᵀ;  dX2 −= τ Gp2 dW2'ᵀ;  dS += dS'
//   dlr_r = Σ_c (G1 ⊙ dGp1 + G2 ⊙ dGp2)_rc;  dG1 = diag(lr) dGp1, dG2 = diag(lr) dGp2
//   G1 = P ⊙ gelu'(Z1):  dP = dG1 ⊙ gelu'(Z1);  dZ1 = dG1 ⊙ P ⊙ gelu''(Z1)
//   P = G2 W2ᵀ:  dG2 += dP W2;  dW2 += dPᵀ G2
//   G2 = LN-L2 gradient of Z2 (kernels/cpu/ttt_scan_rows.h) → dZ2, dtgt: dXV = dtgt, dXK −= dtgt
//     (without ln: G2 = Z2 − XV: dZ2 = dG2, dXV = −dG2)
//   dW2 += X2ᵀ dZ2, db2 += Σ dZ2, dX2 += dZ2 W2ᵀ;  dZ1 += dX2 ⊙ gelu'(Z1)
//   dW1 += XKᵀ dZ1, db1 += Σ dZ1, dXK += dZ1 W1ᵀ;  then dS is the previous chunk's dS'.
#include <cblas.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/ttt_scan_rows.h"
#include "kernels/scalar_math.h"
#include "kernels/ttt_mlp_scan.h"

namespace ttt {

// --- the call structs ------------------------------------------------------------------------------

using cpu_impl::scan_rows::io_bytes;

double TTTMLPScanForward::bytes() const { return io_bytes(s, 4, 1); }
double TTTMLPScanBackward::bytes() const { return io_bytes(s, 7, 2); }

size_t TTTMLPScanBackward::workspace_bytes() const {
  // Per (b, h): the parameter-gradient partials (dW1, db1, dW2, db2, dln_w, dln_b, dtok) that a
  // device implementation reduces over the batch afterwards, then (with checkpoint groups > 1) the
  // state entering every chunk inside a group (G − 1 per group, replay_snapshot_bytes() each), which
  // the CUDA backward's replay kernel writes before the reverse walk, then 4 flags per group for the
  // overlapped backward (kernels/cuda/ttt_mlp_bwd_overlap.cuh). The CPU reference keeps its own.
  const int64_t partial = s.state_size() + 2 * s.head_dim + (s.mini_batch + 3) / 4 * 4;  // 16-byte multiples
  const int64_t replay = s.checkpoint_group > 1 ? s.groups() * (s.checkpoint_group - 1) * s.replay_snapshot_bytes() : 0;
  const int64_t flags = s.checkpoint_group > 1 ? s.groups() * 4 * 4 : 0;
  // With split_walk, a record per chunk after the flags, then a flag per chunk
  // (kernels/cuda/ttt_mlp_bwd_split.cuh, ttt_mlp_bwd_split_grid.cuh).
  const int64_t records = s.split_walk ? s.chunks() * (s.split_record_bytes() + 4) : 0;
  return static_cast<size_t>(s.batch * s.heads) *
         (static_cast<size_t>(partial) * dtype_size(s.dtype) + replay + flags + records);
}

std::string ttt_mlp_scan_unsupported(Device d, const TTTMLPScanShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.mini_batch < 1 || s.checkpoint_group < 1 || s.head_dim < 1 || s.hidden < 1) return "bad shape";
  if (s.cluster != 0 && s.cluster != 1 && s.cluster != 2 && s.cluster != 4)
    return "cluster must be 0 (auto), 1, 2 or 4 blocks (got " + std::to_string(s.cluster) + ")";
  if (d.is_cpu()) return s.bf16_io ? "the CPU reference takes float32/float64 storage (cast bf16 first)" : "";
#if TTT_WITH_CUDA
  return cuda_impl::ttt_mlp_scan_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

void TTTMLPScanForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ttt_mlp_scan_forward,
                           [](Backend& b, auto& c) { cuda_impl::ttt_mlp_scan_forward(b, c); });
}

void TTTMLPScanBackward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ttt_mlp_scan_backward,
                           [](Backend& b, auto& c) { cuda_impl::ttt_mlp_scan_backward(b, c); });
}

namespace cpu_impl {

namespace {

using namespace scan_rows;

// C (n × m) += alpha · op(A) op(B), row-major; op(A) is n × k (A stored k × n when ta), op(B) is
// k × m (B stored m × k when tb). OpenBLAS's dgemm (as kernels/cpu/gemm.cpp): these products are
// most of the scan's time. Matrices this small run on the calling thread, in a fixed order.
void gemm(bool ta, bool tb, int64_t n, int64_t m, int64_t k, double alpha, const double* A, const double* B,
          double* C) {
  if (n == 0 || m == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(n),
              static_cast<int>(m), static_cast<int>(k), alpha, A, static_cast<int>(ta ? n : k), B,
              static_cast<int>(tb ? k : m), 1.0, C, static_cast<int>(m));
}

// Rows of a matrix set to a broadcast bias (or 0 without one).
void fill_rows(Vec& z, int64_t n, const Vec& bias) {
  const int64_t m = static_cast<int64_t>(bias.size());
  z.resize(n * m);
  for (int64_t r = 0; r < n; ++r) std::copy(bias.begin(), bias.end(), z.begin() + r * m);
}
// Column sums of an n-row matrix added to acc.
void add_col_sums(const Vec& z, int64_t n, Vec& acc) {
  const int64_t m = static_cast<int64_t>(acc.size());
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < m; ++j) acc[j] += z[r * m + j];
}

// The inner state (or its gradient, or accumulators): W1 [f, h], b1 [h], W2 [h, f], b2 [f].
struct State {
  Vec w1, b1, w2, b2;
  State() = default;
  State(int64_t f, int64_t h) : w1(f * h, 0.0), b1(h, 0.0), w2(h * f, 0.0), b2(f, 0.0) {}
  template <class S>
  void load(const S* p) {
    for (Vec* v : {&w1, &b1, &w2, &b2}) {
      std::copy(p, p + v->size(), v->begin());
      p += v->size();
    }
  }
  template <class S>
  void store(S* p) const {
    for (const Vec* v : {&w1, &b1, &w2, &b2})
      for (double x : *v) *p++ = static_cast<S>(x);
  }
};

// Per-head constants: token scale, LN weight/bias, sizes.
struct Consts {
  int64_t f, h, K;
  double eps, beta_attn;  // β: 1 with the inner biases, else 0
  bool ln, bias;
  Vec tok, w, beta;
};

template <class S>
Consts consts_of(const TTTMLPScanShape& s, const void* tok, const void* ln_w, const void* ln_b, int64_t h) {
  Consts c{s.head_dim, s.hidden, s.mini_batch, s.eps, s.bias ? 1.0 : 0.0, s.ln_residual, s.bias,
           Vec(s.mini_batch), Vec(s.head_dim, 1.0), Vec(s.head_dim, 0.0)};
  for (int64_t i = 0; i < c.K; ++i) c.tok[i] = static_cast<const S*>(tok)[i];
  if (c.ln)
    for (int64_t j = 0; j < c.f; ++j) {
      c.w[j] = static_cast<const S*>(ln_w)[h * c.f + j];
      c.beta[j] = static_cast<const S*>(ln_b)[h * c.f + j];
    }
  return c;
}

// The initial state of head h from W1, b1, W2, b2.
template <class S>
State initial_state(const Consts& c, const void* w1, const void* b1, const void* w2, const void* b2, int64_t h) {
  State st(c.f, c.h);
  auto copy = [&](const void* src, int64_t size, Vec& dst) {
    if (src) std::copy(static_cast<const S*>(src) + h * size, static_cast<const S*>(src) + (h + 1) * size, dst.begin());
  };
  copy(w1, c.f * c.h, st.w1);
  copy(w2, c.h * c.f, st.w2);
  if (c.bias) copy(b1, c.h, st.b1), copy(b2, c.f, st.b2);
  return st;
}

// The forward intermediates of one chunk (n rows, row-major).
struct Chunk {
  int64_t t0 = 0, n = 0;
  bool commit = false;
  Vec xq, xk, tgt, lr;               // inputs: [n, f] (tgt: the inner loss target), [n]
  Vec z1, x2, gp1, gpp1;             // [n, h]: Z1, gelu(Z1), gelu'(Z1), gelu''(Z1)
  Vec z2, xh2, sig2, gx2, G2;        // [n, f] (sig2 [n]): Z2 and its LN-L2 gradient
  Vec P, G1, Gp1, Gp2;               // [n, h], [n, h], [n, h], [n, f]
  Vec M1, zb1, xb2, gpb1, M2, zb2, xho, sigo;  // [n, n], [n, h] (Z̄1, gelu, gelu'), [n, n], [n, f] × 2, [n]
};

// tril(A Bᵀ + β) of two n-row matrices with m columns, rows scaled by nothing: M[i, j], j ≤ i.
void causal_scores(const Vec& A, const Vec& B, int64_t n, int64_t m, double beta, Vec& M) {
  M.assign(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = beta;
      for (int64_t a = 0; a < m; ++a) s += A[i * m + a] * B[j * m + a];
      M[i * n + j] = s;
    }
}
// diag(tok) M (n × n).
Vec row_scaled(const Vec& M, const Vec& tok, int64_t n) {
  Vec T(M);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) T[i * n + j] *= tok[i];
  return T;
}

// Runs chunk [t0, t0 + n) from state st: fills ch; writes the outputs (n × f) when out is non-null.
template <class S>
void chunk_forward(const Consts& c, const Head<S>& x, const State& st, int64_t t0, int64_t n, Chunk& ch, double* out) {
  const int64_t f = c.f, h = c.h;
  ch.t0 = t0, ch.n = n, ch.commit = n == c.K;
  ch.xq.resize(n * f), ch.xk.resize(n * f), ch.tgt.resize(n * f), ch.lr.resize(n);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < f; ++j) {
      ch.xq[r * f + j] = x.q(t0 + r, j);
      ch.xk[r * f + j] = x.k(t0 + r, j);
      ch.tgt[r * f + j] = c.ln ? x.v(t0 + r, j) - x.k(t0 + r, j) : x.v(t0 + r, j);
    }
    ch.lr[r] = x.l(t0 + r);
  }
  // The training path: Z1, X2, Z2 and the inner gradients G2, G1.
  fill_rows(ch.z1, n, st.b1);
  gemm(false, false, n, h, f, 1.0, ch.xk.data(), st.w1.data(), ch.z1.data());
  ch.x2.resize(n * h), ch.gp1.resize(n * h), ch.gpp1.resize(n * h);
  for (int64_t i = 0; i < n * h; ++i) {
    const smath::GeluTerms<double> g = smath::gelu_tanh_terms(ch.z1[i]);
    ch.x2[i] = g.y, ch.gp1[i] = g.d1, ch.gpp1[i] = g.d2;
  }
  fill_rows(ch.z2, n, st.b2);
  gemm(false, false, n, f, h, 1.0, ch.x2.data(), st.w2.data(), ch.z2.data());
  ch.G2.assign(n * f, 0.0), ch.xh2.assign(n * f, 0.0), ch.gx2.assign(n * f, 0.0), ch.sig2.assign(n, 1.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t o = r * f;
    if (c.ln)
      ln_l2_grad_row(&ch.z2[o], &ch.tgt[o], c.w.data(), c.beta.data(), f, c.eps, &ch.xh2[o], &ch.sig2[r], &ch.gx2[o],
                     &ch.G2[o]);
    else
      for (int64_t j = 0; j < f; ++j) ch.G2[o + j] = ch.z2[o + j] - ch.tgt[o + j];
  }
  ch.P.assign(n * h, 0.0);
  gemm(false, true, n, h, f, 1.0, ch.G2.data(), st.w2.data(), ch.P.data());
  ch.G1.resize(n * h), ch.Gp1.resize(n * h), ch.Gp2.resize(n * f);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < h; ++j) {
      ch.G1[r * h + j] = ch.P[r * h + j] * ch.gp1[r * h + j];
      ch.Gp1[r * h + j] = ch.lr[r] * ch.G1[r * h + j];
    }
    for (int64_t j = 0; j < f; ++j) ch.Gp2[r * f + j] = ch.lr[r] * ch.G2[r * f + j];
  }
  // The test path: Z̄1, X̄2, Z̄2 with the in-chunk updates.
  causal_scores(ch.xq, ch.xk, n, f, c.beta_attn, ch.M1);
  fill_rows(ch.zb1, n, st.b1);
  gemm(false, false, n, h, f, 1.0, ch.xq.data(), st.w1.data(), ch.zb1.data());
  gemm(false, false, n, h, n, -1.0, row_scaled(ch.M1, c.tok, n).data(), ch.Gp1.data(), ch.zb1.data());
  ch.xb2.resize(n * h), ch.gpb1.resize(n * h);
  for (int64_t i = 0; i < n * h; ++i) {
    const smath::GeluTerms<double> g = smath::gelu_tanh_terms(ch.zb1[i]);
    ch.xb2[i] = g.y, ch.gpb1[i] = g.d1;
  }
  causal_scores(ch.xb2, ch.x2, n, h, c.beta_attn, ch.M2);
  fill_rows(ch.zb2, n, st.b2);
  gemm(false, false, n, f, h, 1.0, ch.xb2.data(), st.w2.data(), ch.zb2.data());
  gemm(false, false, n, f, n, -1.0, row_scaled(ch.M2, c.tok, n).data(), ch.Gp2.data(), ch.zb2.data());
  ch.xho.assign(n * f, 0.0), ch.sigo.assign(n, 1.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t o = r * f;
    if (c.ln) normalize_row(&ch.zb2[o], f, c.eps, &ch.xho[o], &ch.sigo[r]);
    if (!out) continue;
    for (int64_t j = 0; j < f; ++j)
      out[o + j] = c.ln ? ch.xq[o + j] + c.w[j] * ch.xho[o + j] + c.beta[j] : ch.zb2[o + j];
  }
}

// st ← st − scale · (XKᵀ Gp1, Σ Gp1, X2ᵀ Gp2, Σ Gp2) over the chunk's rows.
void apply_update(const Consts& c, const Chunk& ch, double scale, State& st) {
  const int64_t f = c.f, h = c.h, n = ch.n;
  gemm(true, false, f, h, n, -scale, ch.xk.data(), ch.Gp1.data(), st.w1.data());
  gemm(true, false, h, f, n, -scale, ch.x2.data(), ch.Gp2.data(), st.w2.data());
  if (!c.bias) return;  // without inner biases they stay 0
  Vec s1(h, 0.0), s2(f, 0.0);
  add_col_sums(ch.Gp1, n, s1);
  add_col_sums(ch.Gp2, n, s2);
  for (int64_t j = 0; j < h; ++j) st.b1[j] -= scale * s1[j];
  for (int64_t j = 0; j < f; ++j) st.b2[j] -= scale * s2[j];
}

template <class S>
void forward_typed(TTTMLPScanForward& a) {
  const TTTMLPScanShape& s = a.s;
  const int64_t f = s.head_dim, K = s.mini_batch, NC = s.chunks(), G = s.checkpoint_group, SS = s.state_size();
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
    const int64_t bi = bh / s.heads, h = bh % s.heads;
    const Consts c = consts_of<S>(s, a.tok, a.ln_w, a.ln_b, h);
    const Head<S> x = head_of<S>(a.xq, a.xk, a.xv, a.lr, bi, h);
    State st = initial_state<S>(c, a.w1, a.b1, a.w2, a.b2, h), acc(c.f, c.h);
    S* states = static_cast<S*>(a.states) + bh * s.groups() * SS;
    S* out = static_cast<S*>(a.out.data) + bi * a.out.sb + h * a.out.sh;
    Vec o;
    Chunk ch;
    for (int64_t k = 0; k < NC; ++k) {
      if (k % G == 0) st.store(states + (k / G) * SS);
      const int64_t t0 = k * K, n = std::min(K, s.len - t0);
      o.assign(n * f, 0.0);
      chunk_forward(c, x, st, t0, n, ch, o.data());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < f; ++j) out[(t0 + r) * a.out.st + j] = static_cast<S>(o[r * f + j]);
      if (ch.commit)
        apply_update(c, ch, c.tok[K - 1], st);
      else  // the accumulators of the partial last chunk
        apply_update(c, ch, -1.0, acc);
    }
    if (a.final_state) st.store(static_cast<S*>(a.final_state) + bh * SS);
    if (a.acc) acc.store(static_cast<S*>(a.acc) + bh * SS);
  }
}

// Per-(b, h) partial gradients of the shared parameters.
struct Partials {
  State dS;
  Vec dlnw, dlnb, dtok;
};

// The backward of the test path's layer Z̄ = X̄ W + b − Mt Gp (Mt = diag(tok) M, X the training
// input that M compares X̄ with), given dZ̄ (n × c) and X̄ (n × a): adds to dW, db, dX̄, dX, dGp, dtok.
void test_layer_backward(const Consts& c, int64_t n, int64_t a_dim, int64_t c_dim, const Vec& xbar, const Vec& xtrain,
                         const Vec& W, const Vec& M, const Vec& Gp, const Vec& dz, Vec& dW, Vec& db, Vec& dxbar,
                         Vec& dxtrain, Vec& dGp, Vec& dtok) {
  gemm(true, false, a_dim, c_dim, n, 1.0, xbar.data(), dz.data(), dW.data());
  if (c.bias) add_col_sums(dz, n, db);
  gemm(false, true, n, a_dim, c_dim, 1.0, dz.data(), W.data(), dxbar.data());
  Vec dS(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t m = 0; m <= i; ++m) {
      double dmt = 0;  // dMt_im = −dZ̄_i · Gp_m
      for (int64_t j = 0; j < c_dim; ++j) dmt -= dz[i * c_dim + j] * Gp[m * c_dim + j];
      dtok[i] += dmt * M[i * n + m];
      dS[i * n + m] = c.tok[i] * dmt;
    }
  gemm(true, false, n, c_dim, n, -1.0, row_scaled(M, c.tok, n).data(), dz.data(), dGp.data());
  gemm(false, false, n, a_dim, n, 1.0, dS.data(), xtrain.data(), dxbar.data());
  gemm(true, false, n, a_dim, n, 1.0, dS.data(), xbar.data(), dxtrain.data());
}

// The backward of a chunk in three parts, as a chunk-parallel device backward would run it (the
// header comment's steps, regrouped):
//  - test_path_backward: everything the gradient dS' of the state leaving the chunk does not reach
//    (the output LN and the test path Z̄1, X̄2, Z̄2): dXQ in full, parts of dXK, dGp1, dGp2, dX2,
//    dtok, and the test path's contribution R to the state's gradient. It needs only the chunk's
//    forward intermediates, so every chunk's can be formed at once.
//  - chain_step: dS' → dS through the state update and the training path (Z1, X2, Z2, G2, G1):
//    the one sequential part. Its products are U1 = XK dW1', U2 = X2 dW2', Gp2 dW2'ᵀ, dP W2,
//    dZ2 W2ᵀ and the accumulations XKᵀ dZ1, X2ᵀ dZ2, dPᵀ G2 (and R added).
//  - token_dxk: the rows' dXK from the chain's dZ1, dtgt and Gp1 dW1'ᵀ.
// backward_typed forms every chunk's test path of a checkpoint group before the chain walks the
// group (which shows that the chain alone carries dS').
struct TestPath {
  State R;                  // the test path's part of dS: X̄2ᵀ dZ̄2, Σ dZ̄2, XQᵀ dZ̄1, Σ dZ̄1
  Vec dGp1, dGp2, dx2;      // [n, h], [n, f], [n, h]: −Mt1ᵀ dZ̄1, −Mt2ᵀ dZ̄2, dS2ᵀ X̄2
  Vec dxq, dxk;             // [n, f]: dXQ in full; dS1ᵀ XQ
  Vec dlnw, dlnb, dtok;     // the chunk's parts of the shared parameters' gradients (the chain adds
                            // them, so that the sums' order does not depend on the checkpoint groups)
};

void test_path_backward(const Consts& c, const State& st, const Chunk& ch, const double* dout, TestPath& t) {
  const int64_t f = c.f, h = c.h, n = ch.n;
  t.R = State(f, h);
  t.dlnw.assign(f, 0.0), t.dlnb.assign(f, 0.0), t.dtok.assign(c.K, 0.0);
  t.dGp1.assign(n * h, 0.0), t.dGp2.assign(n * f, 0.0), t.dx2.assign(n * h, 0.0), t.dxk.assign(n * f, 0.0);
  t.dxq.assign(n * f, 0.0);
  Vec dzb2(n * f), dxb2(n * h, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const double* go = dout + r * f;
    if (!c.ln) {
      std::copy(go, go + f, &dzb2[r * f]);
      continue;
    }
    std::copy(go, go + f, &t.dxq[r * f]);
    output_ln_row_backward(go, &ch.xho[r * f], ch.sigo[r], c.w.data(), f, &dzb2[r * f], t.dlnw.data(), t.dlnb.data());
  }
  test_layer_backward(c, n, h, f, ch.xb2, ch.x2, st.w2, ch.M2, ch.Gp2, dzb2, t.R.w2, t.R.b2, dxb2, t.dx2, t.dGp2,
                      t.dtok);
  Vec dzb1(n * h);
  for (int64_t i = 0; i < n * h; ++i) dzb1[i] = dxb2[i] * ch.gpb1[i];
  test_layer_backward(c, n, f, h, ch.xq, ch.xk, st.w1, ch.M1, ch.Gp1, dzb1, t.R.w1, t.R.b1, t.dxq, t.dxk, t.dGp1,
                      t.dtok);
}

// What the chain hands the token rows: [n, h], [n, f], [n, f], [n]. dtgt is dXV and dlr the rows'
// gradient of lr as they are.
struct ChainRows {
  Vec dz1, dtgt, v1, dlr;  // dZ1, the inner loss target's gradient, Gp1 dW1'ᵀ (commit), dlr
};

// d holds dS' on entry and the gradient of the state entering the chunk on exit.
void chain_step(const Consts& c, const State& st, const Chunk& ch, const TestPath& t, State& d, Partials& p,
                ChainRows& o) {
  const int64_t f = c.f, h = c.h, n = ch.n;
  Vec dGp1(t.dGp1), dGp2(t.dGp2), dx2(t.dx2);
  o.v1.assign(n * f, 0.0);
  if (ch.commit) {  // st' = st − τ (XKᵀ Gp1, Σ Gp1, X2ᵀ Gp2, Σ Gp2)
    const double tl = c.tok[c.K - 1];
    Vec U1, U2;
    fill_rows(U1, n, d.b1);
    fill_rows(U2, n, d.b2);
    gemm(false, false, n, h, f, 1.0, ch.xk.data(), d.w1.data(), U1.data());
    gemm(false, false, n, f, h, 1.0, ch.x2.data(), d.w2.data(), U2.data());
    double dtl = 0;
    for (int64_t i = 0; i < n * h; ++i) dGp1[i] -= tl * U1[i], dtl -= U1[i] * ch.Gp1[i];
    for (int64_t i = 0; i < n * f; ++i) dGp2[i] -= tl * U2[i], dtl -= U2[i] * ch.Gp2[i];
    p.dtok[c.K - 1] += dtl;
    gemm(false, true, n, f, h, 1.0, ch.Gp1.data(), d.w1.data(), o.v1.data());
    gemm(false, true, n, h, f, -tl, ch.Gp2.data(), d.w2.data(), dx2.data());
  }
  for (const auto& [acc, add] : {std::pair{&d.w1, &t.R.w1}, {&d.b1, &t.R.b1}, {&d.w2, &t.R.w2}, {&d.b2, &t.R.b2},
                                 {&p.dlnw, &t.dlnw}, {&p.dlnb, &t.dlnb}, {&p.dtok, &t.dtok}})
    for (size_t i = 0; i < acc->size(); ++i) (*acc)[i] += (*add)[i];
  // Gp = diag(lr) G; G1 = P ⊙ gelu'(Z1), P = G2 W2ᵀ.
  Vec dG2(n * f), dP(n * h);
  o.dz1.assign(n * h, 0.0), o.dlr.assign(n, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double dl = 0;
    for (int64_t j = 0; j < h; ++j) {
      const int64_t i = r * h + j;
      dl += ch.G1[i] * dGp1[i];
      const double dg1 = ch.lr[r] * dGp1[i];
      dP[i] = dg1 * ch.gp1[i];
      o.dz1[i] = dg1 * ch.P[i] * ch.gpp1[i];
    }
    for (int64_t j = 0; j < f; ++j) {
      dl += ch.G2[r * f + j] * dGp2[r * f + j];
      dG2[r * f + j] = ch.lr[r] * dGp2[r * f + j];
    }
    o.dlr[r] = dl;
  }
  gemm(false, false, n, f, h, 1.0, dP.data(), st.w2.data(), dG2.data());
  gemm(true, false, h, f, n, 1.0, dP.data(), ch.G2.data(), d.w2.data());
  // G2: the inner loss gradient of Z2 (without ln: G2 = Z2 − XV, dZ2 = dG2, dtgt = −dG2).
  Vec dz2(n * f);
  o.dtgt.assign(n * f, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t o2 = r * f;
    if (c.ln)
      ln_l2_grad_row_backward(&dG2[o2], &ch.xh2[o2], ch.sig2[r], &ch.gx2[o2], &ch.G2[o2], &ch.tgt[o2], c.w.data(),
                              c.beta.data(), f, &dz2[o2], &o.dtgt[o2], p.dlnw.data(), p.dlnb.data());
    else
      for (int64_t j = 0; j < f; ++j) dz2[o2 + j] = dG2[o2 + j], o.dtgt[o2 + j] = -dG2[o2 + j];
  }
  // Z2 = X2 W2 + b2, X2 = gelu(Z1), Z1 = XK W1 + b1.
  gemm(true, false, h, f, n, 1.0, ch.x2.data(), dz2.data(), d.w2.data());
  if (c.bias) add_col_sums(dz2, n, d.b2);
  gemm(false, true, n, h, f, 1.0, dz2.data(), st.w2.data(), dx2.data());
  for (int64_t i = 0; i < n * h; ++i) o.dz1[i] += dx2[i] * ch.gp1[i];
  gemm(true, false, f, h, n, 1.0, ch.xk.data(), o.dz1.data(), d.w1.data());
  if (c.bias) add_col_sums(o.dz1, n, d.b1);
}

// The rows' dXK = dS1ᵀ XQ − τ Gp1 dW1'ᵀ + dZ1 W1ᵀ − dtgt (ln) or + 0 (the target is XV); dXQ is the
// test path's, dXV and dlr the chain's.
void token_dxk(const Consts& c, const State& st, const Chunk& ch, const TestPath& t, const ChainRows& o, Vec& dxk) {
  const int64_t f = c.f, h = c.h, n = ch.n;
  dxk = t.dxk;
  const double tl = ch.commit ? c.tok[c.K - 1] : 0.0;
  for (int64_t i = 0; i < n * f; ++i) dxk[i] -= tl * o.v1[i] + (c.ln ? o.dtgt[i] : 0.0);
  gemm(false, true, n, f, h, 1.0, o.dz1.data(), st.w1.data(), dxk.data());
}

template <class S>
void backward_typed(TTTMLPScanBackward& a) {
  const TTTMLPScanShape& s = a.s;
  const int64_t f = s.head_dim, K = s.mini_batch, NC = s.chunks(), G = s.checkpoint_group, H = s.heads;
  const int64_t SS = s.state_size(), BH = s.batch * H;
  std::vector<Partials> parts(BH);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t bi = bh / H, h = bh % H;
    const Consts c = consts_of<S>(s, a.tok, a.ln_w, a.ln_b, h);
    const Head<S> x = head_of<S>(a.xq, a.xk, a.xv, a.lr, bi, h);
    Partials& p = parts[bh];
    p = {State(c.f, c.h), Vec(f, 0.0), Vec(f, 0.0), Vec(K, 0.0)};
    const S* states = static_cast<const S*>(a.states) + bh * s.groups() * SS;
    auto row = [&](const BHTView& v, int64_t t) { return static_cast<S*>(v.data) + bi * v.sb + h * v.sh + t * v.st; };
    std::vector<State> sts(std::min(G, NC));
    std::vector<Chunk> chunks(std::min(G, NC));
    std::vector<TestPath> tps(std::min(G, NC));
    Vec dout(K * f);
    ChainRows cr;
    Vec dxk;
    for (int64_t g = s.groups() - 1; g >= 0; --g) {
      const int64_t k0 = g * G, k1 = std::min(NC, k0 + G);
      // Replay the group from its stored state, keeping every chunk's intermediates.
      sts[0] = State(c.f, c.h);
      sts[0].load(states + g * SS);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t t0 = k * K, n = std::min(K, s.len - t0);
        chunk_forward(c, x, sts[k - k0], t0, n, chunks[k - k0], nullptr);
        if (k + 1 < k1) {
          sts[k - k0 + 1] = sts[k - k0];
          apply_update(c, chunks[k - k0], c.tok[K - 1], sts[k - k0 + 1]);
        }
      }
      // Every chunk's test path first (they are independent of each other and of dS'), then the chain.
      for (int64_t k = k0; k < k1; ++k) {
        const Chunk& ch = chunks[k - k0];
        for (int64_t r = 0; r < ch.n; ++r)
          for (int64_t j = 0; j < f; ++j) dout[r * f + j] = static_cast<const S*>(row(a.dout, ch.t0 + r))[j];
        test_path_backward(c, sts[k - k0], ch, dout.data(), tps[k - k0]);
      }
      for (int64_t k = k1 - 1; k >= k0; --k) {
        const Chunk& ch = chunks[k - k0];
        const int64_t t0 = ch.t0, n = ch.n;
        chain_step(c, sts[k - k0], ch, tps[k - k0], p.dS, p, cr);
        token_dxk(c, sts[k - k0], ch, tps[k - k0], cr, dxk);
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t j = 0; j < f; ++j) {
            row(a.dxq, t0 + r)[j] = static_cast<S>(tps[k - k0].dxq[r * f + j]);
            row(a.dxk, t0 + r)[j] = static_cast<S>(dxk[r * f + j]);
            row(a.dxv, t0 + r)[j] = static_cast<S>(cr.dtgt[r * f + j]);
          }
          row(a.dlr, t0 + r)[0] = static_cast<S>(cr.dlr[r]);
        }
      }
    }
  }
  // Deterministic reductions over the batch (and heads for tok), in index order.
  const int64_t B = s.batch, hd = s.hidden;
  reduce_over_batch<S>(a.dw1, B, H, f * hd, [&](int64_t bh) { return parts[bh].dS.w1.data(); });
  reduce_over_batch<S>(a.dw2, B, H, hd * f, [&](int64_t bh) { return parts[bh].dS.w2.data(); });
  if (s.bias) {
    reduce_over_batch<S>(a.db1, B, H, hd, [&](int64_t bh) { return parts[bh].dS.b1.data(); });
    reduce_over_batch<S>(a.db2, B, H, f, [&](int64_t bh) { return parts[bh].dS.b2.data(); });
  }
  reduce_over_batch<S>(a.dln_w, B, H, f, [&](int64_t bh) { return parts[bh].dlnw.data(); });
  reduce_over_batch<S>(a.dln_b, B, H, f, [&](int64_t bh) { return parts[bh].dlnb.data(); });
  reduce_over_batch<S>(a.dtok, BH, 1, K, [&](int64_t bh) { return parts[bh].dtok.data(); });
}

}  // namespace

void ttt_mlp_scan_forward(TTTMLPScanForward& c) {
  by_dtype(c.s.dtype, "ttt_mlp_scan", [&](auto tag) { forward_typed<decltype(tag)>(c); });
}

void ttt_mlp_scan_backward(TTTMLPScanBackward& c) {
  by_dtype(c.s.dtype, "ttt_mlp_scan", [&](auto tag) { backward_typed<decltype(tag)>(c); });
}

}  // namespace cpu_impl
}  // namespace ttt
