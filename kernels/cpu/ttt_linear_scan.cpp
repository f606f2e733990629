// kernels/cpu/ttt_linear_scan.cpp — the CPU reference of the fused TTT-Linear scan
// (kernels/ttt_linear_scan.h): plain loops over one (batch, head) at a time, OpenMP across them,
// all arithmetic in double whatever the storage (float32 / float64). Also the call structs'
// dispatch, byte counts and workspace size, shared with the CUDA implementation.
//
// Backward of one chunk, given dout, the gradient (dW', db') of the state leaving it, and the
// forward's intermediates recomputed from the state (W, b) entering it (x̂1, σ1 = the inner LN of
// Z1, gx = ∂ℓ/∂x̂1, x̂o, σo = the output LN of Z̄, Mt = diag(tok) M):
//   dZ̄   = LN_bwd(dout ⊙ w; x̂o, σo);  dln_w += Σ dout ⊙ x̂o;  dln_b += Σ dout;  dXQ = dout
//   dW  += XQᵀ dZ̄,  db += Σ dZ̄,  dXQ += dZ̄ Wᵀ
//   dGp  = −Mtᵀ dZ̄;  dMt = −dZ̄ Gpᵀ (j ≤ i);  dtok_i += Σ_j dMt_ij M_ij;  dS = diag(tok) dMt
//   dXQ += dS XK,  dXK += dSᵀ XQ
//   commit: U = XK dW' + 1 db'ᵀ;  dGp −= tok_L U;  dXK −= tok_L Gp dW'ᵀ;  dtok_L −= Σ U ⊙ Gp;
//           dW += dW', db += db'
//   dlr_r = Σ_c G_rc dGp_rc,  dG = diag(lr) dGp
//   the LN-L2 gradient G = (gx − mean gx − x̂ mean(gx x̂)) / σ, gx = w ⊙ (w x̂ + β − tgt), as a
//   function of (x̂, σ, tgt, w, β):   L(v) = (v − mean v − x̂ mean(v x̂)) / σ
//     dgx = L(dG);  dx̂ = w² dgx − (mean(gx x̂) dG + gx mean(dG x̂)) / σ;  dσ = −Σ dG G / σ
//     dln_w += Σ dgx ⊙ (2 w x̂ + β − tgt);  dln_b += Σ dgx ⊙ w;  dtgt = −w dgx
//     dZ1 = L(dx̂) + dσ x̂ / f;  tgt = XV − XK: dXV = dtgt, dXK −= dtgt
//   (!ln: G = Z1 − XV, so dZ1 = dG and dXV = −dG; out = Z̄, so dZ̄ = dout.)
//   dW += XKᵀ dZ1,  db += Σ dZ1,  dXK += dZ1 Wᵀ;   then (dW, db) is the previous chunk's (dW', db').
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/fused_dispatch.h"
#include "kernels/cpu/ttt_scan_rows.h"
#include "kernels/ttt_linear_scan.h"

namespace ttt {

// --- the call structs (shared by both implementations) -------------------------------------------

using cpu_impl::scan_rows::io_bytes;

double TTTLinearScanForward::bytes() const { return io_bytes(s, 4, 1); }
double TTTLinearScanBackward::bytes() const { return io_bytes(s, 7, 2); }

TTTLinearScanPlan ttt_linear_scan_plan(const TTTLinearScanShape& s) {
  TTTLinearScanPlan plan;
  const int64_t bh = s.batch * s.heads, nc = s.chunks();
  const char* env = std::getenv("TTT_LINEAR_SCAN_PLAN");
  const std::string force = env ? env : "";
  // "chunks[:N]" / "chunks-serial[:N]": chunk-parallel (N chunks per range), overlapped or not.
  const bool serial = force.rfind("chunks-serial", 0) == 0;
  const std::string kind = serial ? "chunks-serial" : force.rfind("chunks", 0) == 0 ? "chunks" : force;
  int64_t forced_per_range = 0;
  if (kind != force && force.size() > kind.size()) {
    if (force[kind.size()] == ':') {
      try {
        forced_per_range = std::stoll(force.substr(kind.size() + 1));
      } catch (const std::exception&) {
      }
    }
    if (forced_per_range < 1)
      throw std::invalid_argument("TTT_LINEAR_SCAN_PLAN=" + kind + ":N needs a whole number N >= 1 (got '" + force + "')");
  } else if (!force.empty() && kind != "walk" && kind != "chunks" && kind != "chunks-serial" && kind != "auto") {
    throw std::invalid_argument("TTT_LINEAR_SCAN_PLAN must be walk, chunks, chunks:N, chunks-serial, chunks-serial:N or "
                                "auto (got '" + force + "')");
  }
  plan.chunk_parallel = kind == "chunks" || kind == "chunks-serial" || (kind != "walk" && bh < 64 && nc >= 16);
  plan.overlap = plan.chunk_parallel && !serial;
  plan.per_range = nc;
  if (plan.chunk_parallel) {
    // About 512 blocks in all (4 waves on an H200's 132 SMs, one block per SM), at least one chunk
    // each: at 2 x 8192 (B·H = 24) ranges of 24 chunks gave a 2.17 ms backward, of 12 2.24, of 6 2.32
    // (fewer, longer blocks start cold less often).
    const int64_t want = std::max<int64_t>(1, (512 + bh - 1) / bh);
    plan.per_range = forced_per_range > 0 ? std::min(forced_per_range, nc) : std::max<int64_t>(1, (nc + want - 1) / want);
    plan.ranges = (nc + plan.per_range - 1) / plan.per_range;
    // The forward's output blocks: a quarter of the backward's range (FwdSmem fits three blocks per
    // SM), at least 8 chunks (each block starts cold: at B 1, H 12, T 4096 on an H200 the forward
    // took 0.478 ms in ranges of 2 chunks, 0.429 of 4, 0.415 of 8, 0.424 of 16; a group of four such
    // calls 0.537, 0.474, 0.457, 0.466 ms). A forced plan (chunks:N) keeps N / 4: tests cut short
    // sequences into many ranges.
    plan.fwd_per_range = (plan.per_range + 3) / 4;
    if (forced_per_range == 0) plan.fwd_per_range = std::max<int64_t>(plan.fwd_per_range, 8);
  } else {
    plan.fwd_per_range = nc;
  }
  return plan;
}

size_t TTTLinearScanBackward::workspace_bytes(Device d) const {
  if (d.is_cpu()) return 0;  // the CPU reference keeps its intermediates itself
  // Per (b, h): the replayed state entering every chunk (the CUDA backward's replay kernel writes
  // them all first), and per (b, h, range) the parameter-gradient partials (dW, db, dln_w, dln_b,
  // dtok) reduced afterwards. Chunk-parallel adds per chunk the state gradient leaving it and the
  // serial walk's inputs (ttt_linear_chain.cuh: f² + f + 3·16·f + 16 floats), and per range two
  // 4-byte flags (the overlapped grid's signals).
  const TTTLinearScanPlan plan = ttt_linear_scan_plan(s);
  const int64_t f = s.head_dim, bh = s.batch * s.heads;
  const int64_t replay = s.chunks() * (f * f + f);
  const int64_t chain = plan.chunk_parallel ? s.chunks() * ((f * f + f) + (f * f + f + 48 * f + 16)) : 0;
  const int64_t partial = plan.ranges * (f * f + 3 * f + s.mini_batch);
  const int64_t flags = plan.chunk_parallel ? 2 * plan.ranges * 4 : 0;
  return static_cast<size_t>(bh * (replay + chain + partial)) * dtype_size(s.dtype) + static_cast<size_t>(bh * flags);
}

std::string ttt_linear_scan_unsupported(Device d, const TTTLinearScanShape& s) {
  if (s.dtype != DType::f32 && s.dtype != DType::f64) return "dtype must be float32 or float64";
  if (s.mini_batch < 1 || s.checkpoint_group < 1 || s.head_dim < 1) return "bad shape";
  if (s.bf16_io && !(s.dtype == DType::f32 && s.low_precision))
    return "bf16 storage of XQ/XK/XV needs float32 data and bf16 products (low_precision)";
  if (d.is_cpu()) return s.bf16_io ? "the CPU reference takes float32/float64 storage (cast bf16 first)" : "";
#if TTT_WITH_CUDA
  return cuda_impl::ttt_linear_scan_unsupported(s);
#else
  return "ttt was built without CUDA";
#endif
}

void TTTLinearScanForward::run(Backend& be) {
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ttt_linear_scan_forward,
                           [](Backend& b, auto& c) { cuda_impl::ttt_linear_scan_forward(b, c); });
}

double TTTLinearScanForwardGroup::bytes() const {
  double b = 0;
  for (const TTTLinearScanForward* c : calls) b += c->bytes();
  return b;
}

void TTTLinearScanForwardGroup::run(Backend& be) {
  cpu_impl::dispatch_fused(
      be, *this,
      [&](TTTLinearScanForwardGroup& g) {
        for (TTTLinearScanForward* c : g.calls) cpu_impl::ttt_linear_scan_forward(*c);
      },
      [](Backend& b, auto& g) { cuda_impl::ttt_linear_scan_forward_group(b, g); });
}

void TTTLinearScanBackward::run(Backend& be) {
  if (s.per_sequence_init)
    throw std::invalid_argument("ttt_linear_scan: the backward does not take per-sequence initial states");
  cpu_impl::dispatch_fused(be, *this, cpu_impl::ttt_linear_scan_backward,
                           [](Backend& b, auto& c) { cuda_impl::ttt_linear_scan_backward(b, c); });
}

namespace cpu_impl {

namespace {

using namespace scan_rows;

// Per-head constants: token scale, LN weight/bias, f.
struct Consts {
  int64_t f, K;
  double eps;
  bool ln, bias;
  Vec tok, w, beta;
};

template <class S>
Consts consts_of(const TTTLinearScanShape& s, const void* tok, const void* ln_w, const void* ln_b, int64_t h) {
  Consts c{s.head_dim, s.mini_batch, s.eps, s.ln_residual, s.bias, Vec(s.mini_batch), Vec(s.head_dim, 1.0),
           Vec(s.head_dim, 0.0)};
  for (int64_t i = 0; i < c.K; ++i) c.tok[i] = static_cast<const S*>(tok)[i];
  if (c.ln)
    for (int64_t j = 0; j < c.f; ++j) {
      c.w[j] = static_cast<const S*>(ln_w)[h * c.f + j];
      c.beta[j] = static_cast<const S*>(ln_b)[h * c.f + j];
    }
  return c;
}

// The forward intermediates of one chunk (n rows, f columns, row-major).
struct Chunk {
  int64_t t0 = 0, n = 0;
  bool commit = false;
  Vec z1, xh1, sig1, gx, G, Gp, M, zbar, xho, sigo;
};

// Runs chunk [t0, t0 + n) from state (W, b): fills ch and returns the outputs in `out` (n × f)
// when non-null. Does not update the state.
template <class S>
void chunk_forward(const Consts& c, const Head<S>& x, const Vec& W, const Vec& b, int64_t t0, int64_t n, Chunk& ch,
                   double* out) {
  const int64_t f = c.f;
  ch.t0 = t0;
  ch.n = n;
  ch.commit = n == c.K;
  for (Vec* v : {&ch.z1, &ch.xh1, &ch.gx, &ch.G, &ch.Gp, &ch.zbar, &ch.xho}) v->assign(n * f, 0.0);
  ch.sig1.assign(n, 1.0);
  ch.sigo.assign(n, 1.0);
  ch.M.assign(n * n, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double* z = &ch.z1[r * f];
    for (int64_t j = 0; j < f; ++j) z[j] = b[j];
    for (int64_t a = 0; a < f; ++a) {
      const double xa = x.k(t0 + r, a);
      for (int64_t j = 0; j < f; ++j) z[j] += xa * W[a * f + j];
    }
    double* g = &ch.G[r * f];
    if (c.ln) {
      Vec tgt(f);
      for (int64_t j = 0; j < f; ++j) tgt[j] = x.v(t0 + r, j) - x.k(t0 + r, j);
      ln_l2_grad_row(z, tgt.data(), c.w.data(), c.beta.data(), f, c.eps, &ch.xh1[r * f], &ch.sig1[r], &ch.gx[r * f], g);
    } else {
      for (int64_t j = 0; j < f; ++j) g[j] = z[j] - x.v(t0 + r, j);
    }
    const double lr = x.l(t0 + r);
    for (int64_t j = 0; j < f; ++j) ch.Gp[r * f + j] = lr * g[j];
  }
  const double beta = c.bias ? 1.0 : 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double sij = beta;
      for (int64_t a = 0; a < f; ++a) sij += x.q(t0 + i, a) * x.k(t0 + j, a);
      ch.M[i * n + j] = sij;
    }
  for (int64_t i = 0; i < n; ++i) {
    double* zb = &ch.zbar[i * f];
    for (int64_t j = 0; j < f; ++j) zb[j] = b[j];
    for (int64_t a = 0; a < f; ++a) {
      const double qa = x.q(t0 + i, a);
      for (int64_t j = 0; j < f; ++j) zb[j] += qa * W[a * f + j];
    }
    for (int64_t m = 0; m <= i; ++m) {
      const double coef = c.tok[i] * ch.M[i * n + m];
      for (int64_t j = 0; j < f; ++j) zb[j] -= coef * ch.Gp[m * f + j];
    }
    if (c.ln) normalize_row(zb, f, c.eps, &ch.xho[i * f], &ch.sigo[i]);
    if (!out) continue;
    for (int64_t j = 0; j < f; ++j)
      out[i * f + j] = c.ln ? x.q(t0 + i, j) + c.w[j] * ch.xho[i * f + j] + c.beta[j] : zb[j];
  }
}

// (W, b) ← (W, b) − scale · (XKᵀ Gp, Σ Gp) over the chunk's rows.
template <class S>
void apply_update(const Consts& c, const Head<S>& x, const Chunk& ch, double scale, Vec& W, Vec& b) {
  const int64_t f = c.f;
  for (int64_t r = 0; r < ch.n; ++r)
    for (int64_t a = 0; a < f; ++a) {
      const double xa = scale * x.k(ch.t0 + r, a);
      for (int64_t j = 0; j < f; ++j) W[a * f + j] -= xa * ch.Gp[r * f + j];
    }
  if (!c.bias) return;  // without an inner bias b stays 0
  for (int64_t r = 0; r < ch.n; ++r)
    for (int64_t j = 0; j < f; ++j) b[j] -= scale * ch.Gp[r * f + j];
}

template <class S>
void load_state(const S* p, int64_t f, Vec& W, Vec& b) {
  W.assign(p, p + f * f);
  b.assign(p + f * f, p + f * f + f);
}

template <class S>
void forward_typed(TTTLinearScanForward& a) {
  const TTTLinearScanShape& s = a.s;
  const int64_t f = s.head_dim, K = s.mini_batch, NC = s.chunks(), G = s.checkpoint_group;
  const int64_t state_size = f * f + f;
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
    const int64_t bi = bh / s.heads, h = bh % s.heads;
    const Consts c = consts_of<S>(s, a.tok, a.ln_w, a.ln_b, h);
    const Head<S> x = head_of<S>(a.xq, a.xk, a.xv, a.lr, bi, h);
    const int64_t i0 = s.per_sequence_init ? bh : h;  // which initial state
    Vec W(static_cast<const S*>(a.w0) + i0 * f * f, static_cast<const S*>(a.w0) + (i0 + 1) * f * f);
    Vec b(f, 0.0);
    if (s.bias) b.assign(static_cast<const S*>(a.b0) + i0 * f, static_cast<const S*>(a.b0) + (i0 + 1) * f);
    S* states = static_cast<S*>(a.states) + bh * s.groups() * state_size;
    S* out = static_cast<S*>(a.out.data) + bi * a.out.sb + h * a.out.sh;
    Vec acc_w(f * f, 0.0), acc_b(f, 0.0), o;
    Chunk ch;
    for (int64_t k = 0; k < NC; ++k) {
      if (k % G == 0) {
        S* st = states + (k / G) * state_size;
        for (int64_t i = 0; i < f * f; ++i) st[i] = static_cast<S>(W[i]);
        for (int64_t j = 0; j < f; ++j) st[f * f + j] = static_cast<S>(b[j]);
      }
      const int64_t t0 = k * K, n = std::min(K, s.len - t0);
      o.assign(n * f, 0.0);
      chunk_forward(c, x, W, b, t0, n, ch, o.data());
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < f; ++j) out[(t0 + r) * a.out.st + j] = static_cast<S>(o[r * f + j]);
      if (ch.commit) {
        apply_update(c, x, ch, c.tok[K - 1], W, b);
      } else {  // accumulators of the partial last chunk: XKᵀ Gp and Σ Gp
        apply_update(c, x, ch, -1.0, acc_w, acc_b);
      }
    }
    auto put = [&](void* dst, const Vec& v) {
      if (!dst) return;
      S* d = static_cast<S*>(dst) + bh * static_cast<int64_t>(v.size());
      for (size_t i = 0; i < v.size(); ++i) d[i] = static_cast<S>(v[i]);
    };
    put(a.w_final, W);
    put(a.b_final, b);
    put(a.acc_w, acc_w);
    put(a.acc_b, acc_b);
  }
}

// Per-(b, h) partial gradients of the shared parameters.
struct Partials {
  Vec dW, db, dlnw, dlnb, dtok;
};

// The backward of Z = X W + b over n rows given dZ: dW += Xᵀ dZ, db += Σ dZ, dX += dZ Wᵀ.
template <class XAt>
void linear_backward(int64_t n, int64_t f, XAt x, const Vec& dz, const Vec& W, Vec& dW, Vec& db, double* dx) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t a = 0; a < f; ++a) {
      const double xa = x(r, a);
      double s = 0;
      for (int64_t j = 0; j < f; ++j) {
        dW[a * f + j] += xa * dz[r * f + j];
        s += dz[r * f + j] * W[a * f + j];
      }
      dx[r * f + a] += s;
    }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < f; ++j) db[j] += dz[r * f + j];
}

// Backward of one chunk (see the header comment). dW/db hold (dW', db') on entry and the
// gradient of the state entering the chunk on exit.
template <class S>
void chunk_backward(const Consts& c, const Head<S>& x, const Vec& W, const Chunk& ch, const double* dout, Vec& dW,
                    Vec& db, Partials& p, double* dxq, double* dxk, double* dxv, double* dlr) {
  const int64_t f = c.f, n = ch.n, t0 = ch.t0;
  Vec dzbar(n * f), dGp(n * f, 0.0), dz1(n * f), dS(n * n, 0.0);
  std::fill(dxq, dxq + n * f, 0.0);
  std::fill(dxk, dxk + n * f, 0.0);
  // Output LN.
  for (int64_t r = 0; r < n; ++r) {
    const double* go = dout + r * f;
    if (c.ln) {
      for (int64_t j = 0; j < f; ++j) dxq[r * f + j] = go[j];
      output_ln_row_backward(go, &ch.xho[r * f], ch.sigo[r], c.w.data(), f, &dzbar[r * f], p.dlnw.data(), p.dlnb.data());
    } else {
      for (int64_t j = 0; j < f; ++j) dzbar[r * f + j] = go[j];
    }
  }
  // The state gradient flows through unchanged (W' = W + update): dW starts as dW'.
  const Vec dW_next = dW, db_next = db;  // (dW', db')
  // Z̄ = XQ W + b − Mt Gp.
  linear_backward(n, f, [&](int64_t r, int64_t a) { return x.q(t0 + r, a); }, dzbar, W, dW, db, dxq);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t m = 0; m <= i; ++m) {
      double dmt = 0;  // dMt_im = −dZ̄_i · Gp_m
      for (int64_t j = 0; j < f; ++j) dmt -= dzbar[i * f + j] * ch.Gp[m * f + j];
      p.dtok[i] += dmt * ch.M[i * n + m];
      dS[i * n + m] = c.tok[i] * dmt;
      const double coef = c.tok[i] * ch.M[i * n + m];
      for (int64_t j = 0; j < f; ++j) dGp[m * f + j] -= coef * dzbar[i * f + j];
    }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t m = 0; m <= i; ++m) {
      const double d = dS[i * n + m];
      for (int64_t a = 0; a < f; ++a) {
        dxq[i * f + a] += d * x.k(t0 + m, a);
        dxk[m * f + a] += d * x.q(t0 + i, a);
      }
    }
  // The state update W' = W − tok_L XKᵀ Gp, b' = b − tok_L Σ Gp.
  if (ch.commit) {
    const double tl = c.tok[c.K - 1];
    double dtl = 0;
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < f; ++j) {
        double u = c.bias ? db_next[j] : 0.0;
        for (int64_t a = 0; a < f; ++a) u += x.k(t0 + r, a) * dW_next[a * f + j];
        dGp[r * f + j] -= tl * u;
        dtl -= u * ch.Gp[r * f + j];
      }
      for (int64_t a = 0; a < f; ++a) {
        double s = 0;
        for (int64_t j = 0; j < f; ++j) s += ch.Gp[r * f + j] * dW_next[a * f + j];
        dxk[r * f + a] -= tl * s;
      }
    }
    p.dtok[c.K - 1] += dtl;
  }
  // Gp = diag(lr) G, then the LN-L2 gradient.
  for (int64_t r = 0; r < n; ++r) {
    const double lr = x.l(t0 + r);
    Vec dG(f);
    double dl = 0;
    for (int64_t j = 0; j < f; ++j) {
      dl += ch.G[r * f + j] * dGp[r * f + j];
      dG[j] = lr * dGp[r * f + j];
    }
    dlr[r] = dl;
    double* dz = &dz1[r * f];
    if (!c.ln) {
      for (int64_t j = 0; j < f; ++j) {
        dz[j] = dG[j];
        dxv[r * f + j] = -dG[j];
      }
      continue;
    }
    Vec tgt(f), dtgt(f);
    for (int64_t j = 0; j < f; ++j) tgt[j] = x.v(t0 + r, j) - x.k(t0 + r, j);
    ln_l2_grad_row_backward(dG.data(), &ch.xh1[r * f], ch.sig1[r], &ch.gx[r * f], &ch.G[r * f], tgt.data(), c.w.data(),
                            c.beta.data(), f, dz, dtgt.data(), p.dlnw.data(), p.dlnb.data());
    for (int64_t j = 0; j < f; ++j) {
      dxv[r * f + j] = dtgt[j];
      dxk[r * f + j] -= dtgt[j];
    }
  }
  // Z1 = XK W + b.
  linear_backward(n, f, [&](int64_t r, int64_t a) { return x.k(t0 + r, a); }, dz1, W, dW, db, dxk);
}

template <class S>
void backward_typed(TTTLinearScanBackward& a) {
  const TTTLinearScanShape& s = a.s;
  const int64_t f = s.head_dim, K = s.mini_batch, NC = s.chunks(), G = s.checkpoint_group, H = s.heads;
  const int64_t state_size = f * f + f, BH = s.batch * H;
  std::vector<Partials> parts(BH);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t bi = bh / H, h = bh % H;
    const Consts c = consts_of<S>(s, a.tok, a.ln_w, a.ln_b, h);
    const Head<S> x = head_of<S>(a.xq, a.xk, a.xv, a.lr, bi, h);
    Partials& p = parts[bh];
    p = {Vec(f * f, 0.0), Vec(f, 0.0), Vec(f, 0.0), Vec(f, 0.0), Vec(K, 0.0)};
    const S* states = static_cast<const S*>(a.states) + bh * s.groups() * state_size;
    auto row = [&](const BHTView& v, int64_t t) { return static_cast<S*>(v.data) + bi * v.sb + h * v.sh + t * v.st; };
    Vec dW(f * f, 0.0), db(f, 0.0), dout(K * f), dxq(K * f), dxk(K * f), dxv(K * f), dlr(K);
    std::vector<Vec> Ws(G), bs(G);
    Chunk ch;
    for (int64_t g = s.groups() - 1; g >= 0; --g) {
      const int64_t k0 = g * G, k1 = std::min(NC, k0 + G);
      // Replay the group from its stored state.
      load_state(states + g * state_size, f, Ws[0], bs[0]);
      for (int64_t k = k0; k + 1 < k1; ++k) {
        chunk_forward(c, x, Ws[k - k0], bs[k - k0], k * K, K, ch, nullptr);
        Ws[k - k0 + 1] = Ws[k - k0];
        bs[k - k0 + 1] = bs[k - k0];
        apply_update(c, x, ch, c.tok[K - 1], Ws[k - k0 + 1], bs[k - k0 + 1]);
      }
      for (int64_t k = k1 - 1; k >= k0; --k) {
        const int64_t t0 = k * K, n = std::min(K, s.len - t0);
        chunk_forward(c, x, Ws[k - k0], bs[k - k0], t0, n, ch, nullptr);
        for (int64_t r = 0; r < n; ++r)
          for (int64_t j = 0; j < f; ++j) dout[r * f + j] = static_cast<const S*>(row(a.dout, t0 + r))[j];
        chunk_backward(c, x, Ws[k - k0], ch, dout.data(), dW, db, p, dxq.data(), dxk.data(), dxv.data(), dlr.data());
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t j = 0; j < f; ++j) {
            row(a.dxq, t0 + r)[j] = static_cast<S>(dxq[r * f + j]);
            row(a.dxk, t0 + r)[j] = static_cast<S>(dxk[r * f + j]);
            row(a.dxv, t0 + r)[j] = static_cast<S>(dxv[r * f + j]);
          }
          row(a.dlr, t0 + r)[0] = static_cast<S>(dlr[r]);
        }
      }
    }
    p.dW = dW;
    p.db = db;
  }
  // Deterministic reductions over the batch (and heads for tok), in index order.
  const int64_t B = s.batch;
  reduce_over_batch<S>(a.dw0, B, H, f * f, [&](int64_t bh) { return parts[bh].dW.data(); });
  reduce_over_batch<S>(a.db0, B, H, f, [&](int64_t bh) { return parts[bh].db.data(); });
  reduce_over_batch<S>(a.dln_w, B, H, f, [&](int64_t bh) { return parts[bh].dlnw.data(); });
  reduce_over_batch<S>(a.dln_b, B, H, f, [&](int64_t bh) { return parts[bh].dlnb.data(); });
  reduce_over_batch<S>(a.dtok, BH, 1, K, [&](int64_t bh) { return parts[bh].dtok.data(); });
}

}  // namespace

void ttt_linear_scan_forward(TTTLinearScanForward& c) {
  by_dtype(c.s.dtype, "ttt_linear_scan", [&](auto tag) { forward_typed<decltype(tag)>(c); });
}

void ttt_linear_scan_backward(TTTLinearScanBackward& c) {
  by_dtype(c.s.dtype, "ttt_linear_scan", [&](auto tag) { backward_typed<decltype(tag)>(c); });
}

}  // namespace cpu_impl
}  // namespace ttt
