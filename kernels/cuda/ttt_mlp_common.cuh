// kernels/cuda/ttt_mlp_common.cuh — what the fused TTT-MLP forward and backward kernels
// (ttt_mlp_fwd.cuh, ttt_mlp_bwd.cuh) share: the configuration, the parameter block, the chunk tile
// loads, the products over the hidden units and the state's register layout. Math:
// kernels/ttt_mlp_scan.h. The fragment, MMA and row helpers are the TTT-Linear scan's
// (ttt_linear_common.cuh), which these kernels reuse through a Cfg with the same member names.
//
// Layout of the work (one thread block per (batch, head); f = F, hidden HD = 4F; chunk = K <= 16
// tokens padded to 16 rows):
//  - NW = HD / 16 warps; warp w owns hidden units hw = 16w .. 16w+15: the columns hw of W1 [F, HD]
//    and the rows hw of W2 [HD, F], kept in registers (float32, MMA accumulator layout) for the whole
//    sequence, 2F + 2F = 4F floats per lane (64 at F = 64); and the columns hw of every [16, HD]
//    intermediate (Z1, X2, G1, Z̄1, X̄2), so the first layer and both state updates need no data of
//    other warps.
//  - A [16, F] product contracting over the hidden units (Z2 = X2 W2, Z̄2 = X̄2 W2) is split over the
//    warps as CB = F/16 column blocks × NKS = 4 contraction slices of F hidden units; the slices'
//    partial tiles go to shared memory and the row phase after it adds them.
//  - Row phases (LayerNorms, the LN-L2 gradient and its vjp) run on 16 row groups of LPR lanes
//    (CPL = F / LPR columns per lane), as in the TTT-Linear kernels: 8 lanes at F = 16 and 32, 16 at
//    F = 64 (Cfg says why).
//  - Operands live in shared memory as bf16 (MMA: tensor cores, ldmatrix) or float32 (the same tiles
//    multiplied with FMAs, exact); every elementwise value and the state are float32.
#pragma once

#include <type_traits>

#include "kernels/cuda/ttt_linear_common.cuh"
#include "kernels/scalar_math.h"
#include "kernels/ttt_mlp_scan.h"

namespace ttt::cuda_impl::tttm {

using simt::lane;
using simt::tid;
using simt::warp;
using tttk::Acc;
using tttk::acc_col;
using tttk::acc_row;
using tttk::FragA;
using tttk::FragB;
using tttk::gemm_tile;
using tttk::KP;
using tttk::load_a;
using tttk::load_at;
using tttk::load_b;
using tttk::load_bt;
using tttk::load_vec;
using tttk::mma;
using tttk::put_op;
using tttk::put_op2;
using tttk::RowLane;
using tttk::store_f32;
using tttk::store_op;
using tttk::store_vec;
using tttk::SwizzledOps;
using tttk::op_at;
using tttk::Ten;

constexpr int SP = KP + 1;  // row stride of float32 [16, 16] tiles

// An operand matrix W1, dW1' [F, HD] or W2, dW2' [HD, F] of the one-block backward's shared memory as
// the products read and write it: unpadded bf16 rows, XOR-swizzled (SwizzledOps) with MMA; padded
// float32 rows without.
template <class C>
TTT_DEV auto op_rows(typename C::Op* m) {
  if constexpr (C::MMA) return SwizzledOps{m}; else return m;
}

// Whether C is a cluster configuration (ClusterCfg: has NCTA; nvcc compiles C++17, no requires).
template <class C, class = void>
struct is_cluster_cfg : std::false_type {};
template <class C>
struct is_cluster_cfg<C, std::void_t<decltype(C::NCTA)>> : std::true_type {};

// Whether a thread of C's block has at most 128 registers (blocks of 512 threads or more: 64 K
// registers a block), as in the one-block kernels at F = 64, whose state alone is 64 floats a
// thread. Those recompute Z1 and Zq where a later phase reads them instead of holding them
// through the phases between (first_layer_again): ptxas then spills far less.
template <class C>
constexpr bool register_lean() {
  return C::THREADS >= 512;
}

// F: head_dim (hidden 4F); MMA: bf16 tensor-core products (else exact float32 FMAs).
template <int F_, bool MMA_>
struct Cfg {
  static constexpr int F = F_;
  static constexpr int HD = 4 * F_;
  static constexpr bool MMA = MMA_;
  static constexpr bool BIO = false;
  using IO = float;
  static constexpr int HDL = HD;  // hidden units of the block (all: one block a head)
  static constexpr int NW = HD / 16;
  static constexpr int THREADS = 32 * NW;  // 8F: a [16, F] tile is 2 floats per thread
  // Row phases: LPR lanes per row, CPL columns per lane. At F = 64, 16 lanes of 4 columns: the rows
  // then spread over 8 warps instead of 4 (the other warps wait at the barrier after a row phase),
  // and the row threads' arrays crowd the state's 64 registers a lane less.
  static constexpr int LPR = F == 64 ? 16 : F / 8;
  static constexpr int CPL = F / LPR;
  static constexpr int RW = KP * LPR / 32;  // row warps: the warps holding the chunk's rows
  static constexpr int RPP = THREADS / LPR;
  static constexpr int FS = F + 4;                  // float32 row stride of [16, F] tiles
  static constexpr int OS = MMA ? F + 8 : F + 4;    // operand row stride of [., F] tiles
  static constexpr int HS = MMA ? HD + 8 : HD + 4;  // operand row stride of [., HD] tiles
  static constexpr int KS = MMA ? KP + 8 : KP + 4;  // operand row stride of [16, 16] tiles
  // Row strides of the backward's operand matrices W1, dW1' [F, HD] and W2, dW2' [HD, F]: unpadded
  // with bf16, to fit shared memory at F = 64, their rows XOR-swizzled (SwizzledOps) so that
  // ldmatrix meets no bank conflicts on them.
  static constexpr int W1S = MMA ? HD : HD + 4;
  static constexpr int WS = MMA ? F : F + 4;
  static constexpr int CB = F / 16;                 // column blocks of a [16, F] product
  static constexpr int NKS = NW / CB;               // contraction slices of a product over HD (4)
  static constexpr int KSPAN = HD / NKS;            // hidden units per slice (F)
  using Op = std::conditional_t<MMA, uint16_t, float>;
  static_assert(F == 16 || F == 32 || F == 64, "head_dim 16, 32 or 64");
  static_assert(THREADS * 2 == KP * F && RPP >= KP && NKS * CB == NW, "work mapping");
};

// --- parameters --------------------------------------------------------------------------------

struct Params {
  int B = 0, H = 0, T = 0, K = 16, G = 1, NC = 0, NG = 0;
  float eps = 1e-6f;
  bool ln = true, bias = true;
  bool bio = false;  // XQ, XK, XV, out, dout, dXQ, dXK, dXV stored as bf16 (IORows), else float32
  Ten xq, xk, xv, lr, out;
  const float *tok = nullptr, *w1 = nullptr, *b1 = nullptr, *w2 = nullptr, *b2 = nullptr;
  const float *lnw = nullptr, *lnb = nullptr;
  float *states = nullptr, *final_state = nullptr, *acc = nullptr;
  // backward
  Ten dout, dxq, dxk, dxv, dlr;
  float* ws = nullptr;
  bool overlap = false;  // the replay and the walks in one grid (ttt_mlp_bwd_overlap.cuh)
};

// Elements of one state (W1 [F, HD], b1 [HD], W2 [HD, F], b2 [F]) and the offsets of its parts.
TTT_HD int64_t state_size(int F) { return 8 * static_cast<int64_t>(F) * F + 4 * F + F; }
TTT_HD int64_t off_b1(int F) { return 4 * static_cast<int64_t>(F) * F; }
TTT_HD int64_t off_w2(int F) { return off_b1(F) + 4 * F; }
TTT_HD int64_t off_b2(int F) { return off_w2(F) + 4 * static_cast<int64_t>(F) * F; }

namespace detail {
inline Ten ten(const BHTView& v) { return {v.data, v.sb, v.sh, v.st}; }
template <class Call>
Params common(const Call& c) {
  const TTTMLPScanShape& s = c.s;
  Params p;
  p.B = static_cast<int>(s.batch), p.H = static_cast<int>(s.heads), p.T = static_cast<int>(s.len);
  p.K = static_cast<int>(s.mini_batch), p.G = static_cast<int>(s.checkpoint_group);
  p.NC = static_cast<int>(s.chunks()), p.NG = static_cast<int>(s.groups());
  p.eps = static_cast<float>(s.eps), p.ln = s.ln_residual, p.bias = s.bias, p.bio = s.bf16_io;
  p.xq = ten(c.xq), p.xk = ten(c.xk), p.xv = ten(c.xv), p.lr = ten(c.lr);
  p.tok = static_cast<const float*>(c.tok);
  p.w1 = static_cast<const float*>(c.w1), p.b1 = static_cast<const float*>(c.b1);
  p.w2 = static_cast<const float*>(c.w2), p.b2 = static_cast<const float*>(c.b2);
  p.lnw = static_cast<const float*>(c.ln_w), p.lnb = static_cast<const float*>(c.ln_b);
  return p;
}
}  // namespace detail

inline Params params_of(const TTTMLPScanForward& c) {
  Params p = detail::common(c);
  p.out = detail::ten(c.out);
  p.states = static_cast<float*>(c.states);
  p.final_state = static_cast<float*>(c.final_state), p.acc = static_cast<float*>(c.acc);
  return p;
}
inline Params params_of(const TTTMLPScanBackward& c) {
  Params p = detail::common(c);
  p.states = static_cast<float*>(const_cast<void*>(c.states));
  p.dout = detail::ten(c.dout), p.dxq = detail::ten(c.dxq), p.dxk = detail::ten(c.dxk);
  p.dxv = detail::ten(c.dxv), p.dlr = detail::ten(c.dlr);
  p.ws = static_cast<float*>(c.workspace);
  return p;
}

// --- chunk tiles -------------------------------------------------------------------------------

// Rows of chunk k (K, or fewer for the last).
TTT_DEV int chunk_rows(const Params& p, int k) {
  const int64_t t0 = static_cast<int64_t>(k) * p.K;
  return static_cast<int>(p.T - t0 < p.K ? p.T - t0 : p.K);
}

// A (b, h) slice [T, F] of a [B, H, T, F] tensor stored as float32, or as bf16 when Params::bio
// (model.ttt.bf16_io: the op hands over its bf16 XQ, XK, XV and dout, and takes bf16 out, dXQ, dXK,
// dXV, with no float32 copies). Values go in and out as float32; bf16 is rounded to nearest even on
// the way out. Alignment (checked by the launcher): float32 rows 16-byte aligned, bf16 rows 8-byte.
struct IORows {
  void* p = nullptr;
  int64_t st = 0;
  bool bf16 = false;
  TTT_DEV IORows(const Ten& t, bool bf, int b, int h)
      : p(bf ? static_cast<void*>(t.base<uint16_t>(b, h)) : static_cast<void*>(t.base<float>(b, h))), st(t.st), bf16(bf) {}
  // Asks L2 for line `line` (128 bytes) of row t (a row of F columns spans ⌈F · 2 or 4 / 128⌉ lines).
  TTT_DEV void prefetch_line(int64_t t, int line) const {
    const char* row = static_cast<const char*>(p) + t * st * (bf16 ? 2 : 4);
    simt::prefetch_l2(row + 128 * line);
  }
  // N (even) consecutive elements of row t from column c as the words they are stored in: N float32
  // bit patterns, or N / 2 packed bf16 pairs (w[N / 2 ..] untouched). In 16-byte (float32) or
  // 8-byte (bf16) vectors where N is a multiple of 4, else in pairs (bf16) or singly (float32). No
  // conversion, so nothing waits for the load here (widen() does, where the values are used).
  template <int N>
  TTT_DEV void load_words(uint32_t (&w)[N], int64_t t, int c) const {
    static_assert(N % 2 == 0, "pairs");
    if (bf16) {
      const uint16_t* s = static_cast<const uint16_t*>(p) + t * st + c;
#pragma unroll
      for (int j = 0; j < N / 2; j += (N % 4 == 0 ? 2 : 1)) {
        if constexpr (N % 4 == 0) {
          const tttk::uint2v u = *reinterpret_cast<const tttk::uint2v*>(s + 2 * j);
          w[j] = u.x, w[j + 1] = u.y;
        } else {
          w[j] = *reinterpret_cast<const uint32_t*>(s + 2 * j);
        }
      }
    } else {
      const uint32_t* s = reinterpret_cast<const uint32_t*>(static_cast<const float*>(p) + t * st + c);
#pragma unroll
      for (int j = 0; j < N; j += (N % 4 == 0 ? 4 : 1)) {
        if constexpr (N % 4 == 0) {
          const tttk::U4 u = *reinterpret_cast<const tttk::U4*>(s + j);
          w[j] = u.x, w[j + 1] = u.y, w[j + 2] = u.z, w[j + 3] = u.w;
        } else {
          w[j] = s[j];
        }
      }
    }
  }
  // Words of load_words as N float32 values.
  template <int N>
  TTT_DEV static void widen(bool bf16, const uint32_t (&w)[N], float (&v)[N]) {
    if (bf16) {
#pragma unroll
      for (int j = N / 2 - 1; j >= 0; --j) v[2 * j] = tttk::bf_lo(w[j]), v[2 * j + 1] = tttk::bf_hi(w[j]);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) v[j] = simt::float_of_bits(w[j]);
    }
  }
  // N (even) consecutive elements of row t from column c as float32.
  template <int N>
  TTT_DEV void load(float (&v)[N], int64_t t, int c) const {
    uint32_t w[N];
    load_words(w, t, c);
    widen(bf16, w, v);
  }
  template <int N>
  TTT_DEV void store(int64_t t, int c, const float (&v)[N]) const {
    static_assert(N % 4 == 0, "16-byte float32 vectors");
    if (bf16) {
      uint16_t* d = static_cast<uint16_t*>(p) + t * st + c;
#pragma unroll
      for (int j = 0; j < N; j += 4)
        *reinterpret_cast<tttk::uint2v*>(d + j) =
            tttk::uint2v{simt::pack_bf16(v[j], v[j + 1]), simt::pack_bf16(v[j + 2], v[j + 3])};
    } else {
      store_vec(static_cast<float*>(p) + t * st + c, v);
    }
  }
};

// One [16, F] float32 tile of a [B, H, T, F] tensor: thread tid holds the E = 16 F / THREADS
// consecutive elements at flat position E tid (2 with one block a head, 8 with four blocks of a
// cluster sharing it). Rows at or past `rows` read as 0.
// The tile keeps the words as loaded (IORows::load_words) and widens them to float32 where it is
// stored: the forward loads the next chunk's tiles a chunk ahead, and a conversion inside load()
// made every thread wait for each of the three loads in turn right there (Nsight Compute on an H100,
// one 125M layer at 2 x 8192 on clusters of 2: those waits were 11% of the forward's warp stall
// samples and 17% of the replay's; BENCHMARKS.md, session 28).
template <class C>
struct Tile2 {
  static constexpr int E = KP * C::F / C::THREADS;
  static_assert(E % 2 == 0 && E * C::THREADS == KP * C::F, "a tile is an even number of elements a thread");
  uint32_t w[E];
  bool bf16 = false;
  TTT_DEV static int row() { return E * tid() / C::F; }
  TTT_DEV static int col() { return E * tid() % C::F; }
  TTT_DEV void load(const IORows& s, int64_t t0, int rows) {
    const int r = row(), c = col();
    bf16 = s.bf16;
    if (r < rows) {
      s.load_words(w, t0 + r, c);
    } else {
#pragma unroll
      for (int j = 0; j < E; ++j) w[j] = 0u;  // 0.0 as float32 and as a bf16 pair
    }
  }
  TTT_DEV void values(float (&v)[E]) const { IORows::widen(bf16, w, v); }
  // Into float32 smem (row stride FS) when s is non-null and, when op is non-null, its operand copy
  // (row stride OS).
  TTT_DEV void store(float* s, typename C::Op* op) const {
    const int r = row(), c = col();
    float v[E];
    values(v);
    if (s)
#pragma unroll
      for (int j = 0; j < E; ++j) s[r * C::FS + c + j] = v[j];
    if (op)
#pragma unroll
      for (int j = 0; j < E; j += 2) put_op2(op + r * C::OS + c + j, v[j], v[j + 1]);
  }
};

// The inner loss target of the chunk's rows (XV − XK with the LN + residual, else XV) into float32
// smem (row stride FS), from the thread's elements of the XK and XV tiles.
template <class C>
TTT_DEV void store_target(const Tile2<C>& k, const Tile2<C>& v, bool ln, float* tgt) {
  const int r = Tile2<C>::row(), c = Tile2<C>::col();
  float kv[Tile2<C>::E], vv[Tile2<C>::E];
  k.values(kv);
  v.values(vv);
#pragma unroll
  for (int j = 0; j < Tile2<C>::E; ++j) tgt[r * C::FS + c + j] = ln ? vv[j] - kv[j] : vv[j];
}

// The (b, h) slices of the [B, H, T, F] inputs.
struct InBases {
  IORows xq, xk, xv;
  const float* lr;
  TTT_DEV InBases(const Params& p, int b, int h)
      : xq(p.xq, p.bio, b, h), xk(p.xk, p.bio, b, h), xv(p.xv, p.bio, b, h), lr(p.lr.base(b, h)) {}
};

// The chunk tiles a block needs next, held in registers while the current chunk computes.
template <class C>
struct ChunkRegs {
  Tile2<C> q, k, v;
  float lr = 0;
  TTT_DEV void load(const Params& p, const InBases& hb, int chunk) {
    const int64_t t0 = static_cast<int64_t>(chunk) * p.K;
    const int rows = chunk_rows(p, chunk);
    q.load(hb.xq, t0, rows);
    k.load(hb.xk, t0, rows);
    v.load(hb.xv, t0, rows);
    lr = tid() < rows ? hb.lr[(t0 + tid()) * p.lr.st] : 0.f;
  }
};

// y += Σ over the NKS contraction slices of their [16, F] float32 partial tiles in `part` (row
// stride FS, one tile after another), at offset o (a row phase's row and columns).
template <class C>
TTT_DEV void add_slice_partials(float (&y)[C::CPL], const float* part, int o) {
#pragma unroll
  for (int s = 0; s < C::NKS; ++s) {
    float t[C::CPL];
    load_vec(t, part + s * KP * C::FS + o);
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] += t[j];
  }
}

// --- the state in registers --------------------------------------------------------------------

// The warp's slice of a state (or of its gradient): W1[:, hw] as F/16 tiles [16, 16] (m-tile mt:
// rows 16 mt ..), W2[hw, :] as one [16, F] tile.
template <class C>
struct StateRegs {
  Acc<2> w1[C::F / 16];
  Acc<C::F / 8> w2;
  TTT_DEV void fill(float x) {
#pragma unroll
    for (int mt = 0; mt < C::F / 16; ++mt) w1[mt].fill(x);
    w2.fill(x);
  }
  // From / to a flat state (W1 [F, HD] at 0, W2 [HD, F] at off_w2), scaled on the way out; h0: the
  // first hidden unit of the block (a cluster's blocks share a head's hidden units).
  TTT_DEV void load(const float* st, int h0 = 0) { load(st, st + off_w2(C::F), h0); }
  // W1 [F, HD] from s1, W2 [HD, F] from s2 (the model's parameters of a head, or a flat state).
  TTT_DEV void load(const float* s1, const float* s2, int h0) {
    const int hw = h0 + 16 * warp();
#pragma unroll
    for (int mt = 0; mt < C::F / 16; ++mt)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) w1[mt].v[nt][e] = s1[acc_row(16 * mt, e) * C::HD + acc_col(hw, nt, e)];
#pragma unroll
    for (int nt = 0; nt < C::F / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) w2.v[nt][e] = s2[acc_row(hw, e) * C::F + acc_col(0, nt, e)];
  }
  TTT_DEV void store(float* st, float scale = 1.f, int h0 = 0) const {
    const int hw = h0 + 16 * warp();
#pragma unroll
    for (int mt = 0; mt < C::F / 16; ++mt) store_f32(w1[mt], st, C::HD, 16 * mt, hw, scale);
    store_f32(w2, st + off_w2(C::F), C::F, hw, 0, scale);
  }
  // The operand copies: W1 [F, HD] (row stride ld: a pointer or SwizzledOps), W2 [HD, F] (row stride
  // OS); each warp its slice.
  template <class M>
  TTT_DEV void store_w1_op(M ow1, int ld) const {
#pragma unroll
    for (int mt = 0; mt < C::F / 16; ++mt) store_op(w1[mt], ow1, ld, 16 * mt, 16 * warp());
  }
  TTT_DEV void store_w2_op(typename C::Op* ow2) const { store_op(w2, ow2, C::OS, 16 * warp(), 0); }
};

// --- products ----------------------------------------------------------------------------------

// acc (16 x 16: rows of the chunk, columns cw..) += X Y[:, cw..] over k = 16 KT, X an operand tile
// (row stride xs, columns k0x..), Y row-major (row stride ys, rows k0y..; a pointer or SwizzledOps).
template <class C, int KT, class Y>
TTT_DEV void xy(Acc<2>& acc, const typename C::Op* x, int xs, int k0x, Y y, int ys, int k0y, int cw) {
  gemm_tile<C, KT>(acc, [&](FragA<C::MMA>& a, int k0) { load_a(a, x, xs, 0, k0x + k0); },
                   [&](FragB<C::MMA>& b, int k0, int n0) { load_b(b, y, ys, k0y + k0, cw + n0); });
}
// acc (16 x 16, columns cw..) += X Y[cw.., :]ᵀ over k = 16 KT: Y row-major with its rows as the
// output columns (row stride ys), contraction over its columns k0y...
template <class C, int KT, class Y>
TTT_DEV void xyt(Acc<2>& acc, const typename C::Op* x, int xs, int k0x, Y y, int ys, int k0y, int cw) {
  gemm_tile<C, KT>(acc, [&](FragA<C::MMA>& a, int k0) { load_a(a, x, xs, 0, k0x + k0); },
                   [&](FragB<C::MMA>& b, int k0, int n0) { load_bt(b, y, ys, k0y + k0, cw + n0); });
}
// acc (16 x NT·8: rows m0.. of Xᵀ, columns n0..) += X[:, m0..]ᵀ Y[:, n0..] over the chunk's 16 rows.
template <class C, int NT>
TTT_DEV void xty(Acc<NT>& acc, const typename C::Op* x, int xs, int m0, const typename C::Op* y, int ys, int n0) {
  gemm_tile<C, 1>(acc, [&](FragA<C::MMA>& a, int k0) { load_at(a, x, xs, m0, k0); },
                  [&](FragB<C::MMA>& b, int k0, int nn) { load_b(b, y, ys, k0, n0 + nn); });
}

// The warp's column block and contraction slice of a [16, F] product over the hidden units.
template <class C>
struct Split {
  int cb, ks;
  TTT_DEV Split() : cb(warp() % C::CB), ks(warp() / C::CB) {}
  TTT_DEV int col() const { return 16 * cb; }
  TTT_DEV int k0() const { return ks * C::KSPAN; }
};

// The warp's slice partial of X W (X an operand [16, HD] tile, W an operand [HD, F] with row stride
// ws; a pointer or SwizzledOps): its column block of the product over its contraction slice. X W2,
// X̄2 W2, X2 dW2', dP W2 are all such products.
template <class C, class W>
TTT_DEV Acc<2> hidden_xw_partial(const typename C::Op* x, W w, int ws, const Split<C>& sp) {
  Acc<2> acc;
  acc.fill(0.f);
  xy<C, C::KSPAN / 16>(acc, x, C::HS, sp.k0(), w, ws, sp.k0(), sp.col());
  return acc;
}

// Slice partial of X W2 (W2 the operand [HD, F]) into part[ks].
template <class C, class W2>
TTT_DEV void x_w2_partial(const typename C::Op* x, W2 ow2, int ws, float* part) {
  const Split<C> sp;
  store_f32(hidden_xw_partial<C>(x, ow2, ws, sp), part + sp.ks * KP * C::FS, C::FS, 0, sp.col());
}

// Σ over the chunk's 16 rows of each column of a warp's [16, 16] accumulator tile: lanes 0..3 get
// the sums of columns 2t, 2t+1 of n-tiles 0 and 1 (s[nt][0..1]); every lane takes part.
TTT_DEV void column_sums(const Acc<2>& acc, float (&s)[2][2]) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v = acc.v[nt][h] + acc.v[nt][h + 2];
      v += simt::shfl_xor(v, 4);
      v += simt::shfl_xor(v, 8);
      v += simt::shfl_xor(v, 16);
      s[nt][h] = v;
    }
}

// Per-head constants into smem: the LN weight/bias (or 1/0), tok (0 past K).
template <class C, class S>
TTT_DEV void load_ln_tok(const Params& p, int h, S& sm) {
  for (int i = tid(); i < C::F; i += C::THREADS) {
    sm.lnw[i] = p.ln ? p.lnw[h * C::F + i] : 1.f;
    sm.lnb[i] = p.ln ? p.lnb[h * C::F + i] : 0.f;
  }
  for (int i = tid(); i < KP; i += C::THREADS) sm.tok[i] = i < p.K ? p.tok[i] : 0.f;
}

// Row r of Mt = diag(tok) tril(S + β) over the first n rows (0 elsewhere), S the sum of np partial
// [16, 16] tiles (stride SP, np apart by KP·SP), by the LPR lanes of row r's group (columns li,
// li + LPR, ...): to the operand tile omt (if non-null), the float32 tile mt (if non-null) and the
// raw masked tril(S + β) mraw (if non-null).
template <class C>
TTT_DEV void causal_row(const float* parts, int np, const float* tok, int r, int n, float beta, typename C::Op* omt,
                        float* mt, float* mraw) {
  for (int j = tid() % C::LPR; j < KP; j += C::LPR) {
    float s = beta;
    for (int w = 0; w < np; ++w) s += parts[w * KP * SP + r * SP + j];
    const float m = (j <= r && r < n) ? s : 0.f;
    if (omt) put_op(omt + r * C::KS + j, tok[r] * m);
    if (mt) mt[r * SP + j] = tok[r] * m;
    if (mraw) mraw[r * SP + j] = m;
  }
}

}  // namespace ttt::cuda_impl::tttm
