// kernels/cuda/ttt_linear_common.cuh — what the fused TTT-Linear forward and backward kernels
// (ttt_linear_fwd.cuh, ttt_linear_bwd.cuh) share: the configuration, the parameter block, tile
// loads, the 16x16 operand fragments and their products, and the row-wise helpers.
//
// Layout of the work (one thread block per (batch, head), f = F columns, chunk = K <= 16 tokens
// padded to 16 rows):
//  - F / 16 warps; for products whose output is a [16, F] tile (Z1, Z̄, gradients of tokens) warp w
//    owns columns 16w .. 16w+15 (two 8-wide n-tiles); for the [F, F] state and its gradient, warp w
//    owns rows 16w .. 16w+15 (F / 8 n-tiles), kept in registers in the MMA accumulator layout for
//    the whole sequence.
//  - Row-wise math (the LayerNorms and their gradients) runs with LPR lanes per row, CPL = F / LPR
//    consecutive columns per lane; row sums are butterfly shuffles inside the lane group.
//  - Operands of products live in shared memory as bf16 (MMA = true: tensor cores, fragments by
//    ldmatrix) or float32 (MMA = false: the same tiles multiplied with FMAs, exact float32); every
//    elementwise value is float32 either way.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/simt.cuh"
#include "kernels/ttt_linear_scan.h"

namespace ttt::cuda_impl::tttk {

using simt::lane;
using simt::tid;
using simt::warp;

constexpr int KP = 16;  // rows of a chunk tile (mini-batch <= 16)

// F: head_dim; MMA: bf16 tensor-core products (else exact float32 FMAs); BIO: XQ, XK, XV, out,
// dout and the gradients of XQ, XK, XV are stored as bf16 in global memory (else float32), so an
// autocast model hands its bf16 projections to the scan without a cast (the math is float32 either way).
template <int F_, bool MMA_, bool BIO_ = false>
struct Cfg {
  static constexpr int F = F_;
  static constexpr bool MMA = MMA_;
  static constexpr bool BIO = BIO_;
  using IO = std::conditional_t<BIO, uint16_t, float>;  // storage of the [B, H, T, F] tensors
  static constexpr int NW = F / 16;
  static constexpr int THREADS = 32 * NW;
  static constexpr int LPR = F == 96 ? 8 : F / 8;  // lanes per row: a power of two
  static constexpr int CPL = F / LPR;              // columns per lane
  static constexpr int RPP = THREADS / LPR;        // rows per pass (>= 16)
  static constexpr int FS = F + 4;                 // float32 row stride (bank spread)
  static constexpr int OS = MMA ? F + 8 : F + 4;   // operand row stride (16-byte aligned rows for ldmatrix)
  static constexpr int KS = MMA ? KP + 8 : KP + 4; // operand row stride of [16, 16] tiles
  using Op = std::conditional_t<MMA, uint16_t, float>;
  static_assert(F % 16 == 0 && F >= 16 && F <= 128, "head_dim must be a multiple of 16 in [16, 128]");
  static_assert(RPP >= KP && (32 / LPR) <= KP, "row mapping");
  static_assert(!BIO || MMA, "bf16 storage comes with bf16 products");
  static_assert(THREADS * 8 == KP * F, "a bf16 tile is one 16-byte piece per thread");
};

// --- parameters --------------------------------------------------------------------------------

struct Ten {  // [B, H, T(, F)] of float32 or bf16 (Cfg::IO) elements, unit stride in F
  void* p = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
  // The (b, h) slice's start: rows are then base + t · st (computed once per block).
  template <class T = float>
  TTT_DEV T* base(int b, int h) const {
    return p ? static_cast<T*>(p) + b * sb + h * sh : nullptr;
  }
};

struct Params {
  int B = 0, H = 0, T = 0, K = 16, G = 1, NC = 0, NG = 0;
  float eps = 1e-6f;
  bool ln = true, bias = true, vec = false;  // vec: every [.., F] row is 16-byte aligned (required)
  bool bio = false;                          // the [B, H, T, F] tensors are bf16 (Cfg::BIO)
  bool init_bh = false;                      // W0, b0 per (b, h) (per_sequence_init), else per h
  Ten xq, xk, xv, lr, out;
  const float *tok = nullptr, *w0 = nullptr, *b0 = nullptr, *lnw = nullptr, *lnb = nullptr;
  float *states = nullptr, *w_final = nullptr, *b_final = nullptr, *acc_w = nullptr, *acc_b = nullptr;
  // backward
  Ten dout, dxq, dxk, dxv, dlr;
  float* ws = nullptr;  // replay snapshots, (chunk-parallel: state gradients, chain inputs), partials
  bool par = false;     // chunk-parallel (TTTLinearScanPlan)
  bool overlap = false; // chunk-parallel backward as one grid whose blocks signal each other per range
  int R = 1, Q = 0;     // ranges of chunks per (b, h) and chunks per range (walk: 1 and NC)
  long long* probe = nullptr;  // phase cycle counters of block 0 (bench/ttt_scan_bench --phases), or null
};

// Cycles spent between consecutive marks, summed per phase slot, as seen by thread 0 of block 0
// (so barrier waits count toward the phase that waits). Off (one uniform branch) without a probe.
// Slots are offset by `base` (a kernel run twice in one call keeps its passes apart); total(slot)
// adds the cycles since construction.
struct PhaseClock {
  long long* probe;
  int base;
  long long start = 0, last = 0;
  TTT_DEV PhaseClock(const Params& p, int bh, int base_slot = 0)
      : probe(bh == 0 && tid() == 0 ? p.probe : nullptr), base(base_slot) {
    if (probe) start = last = simt::clock();
  }
  TTT_DEV void mark(int slot) {
    if (!probe) return;
    const long long now = simt::clock();
    probe[base + slot] += now - last;
    last = now;
  }
  TTT_DEV void total(int slot) {
    if (probe) probe[base + slot] += simt::clock() - start;
  }
};

// Cycles per phase of one walk, summed in registers (a PhaseClock mark is a global read-modify-
// write, which a walk of ~1,000 cycles a chunk would feel) and added to probe slots base.. at the end.
template <int N>
struct LocalPhases {
  long long* probe;
  long long sum[N] = {};
  long long last = 0;
  TTT_DEV LocalPhases(const Params& p, int bh) : probe(bh == 0 && tid() == 0 ? p.probe : nullptr) {
    if (probe) last = simt::clock();
  }
  TTT_DEV void mark(int i) {
    if (!probe) return;
    const long long now = simt::clock();
    sum[i] += now - last;
    last = now;
  }
  TTT_DEV void flush(int base) const {
    if (probe)
      for (int i = 0; i < N; ++i) probe[base + i] += sum[i];
  }
};

namespace detail {
inline Ten ten(const BHTView& v) { return {v.data, v.sb, v.sh, v.st}; }
// Every [.., F] row `align`-byte aligned: the data pointer and the strides (elements of `elem` bytes).
inline bool rows_aligned(std::initializer_list<Ten> ts, int elem, int align = 16) {
  const int64_t per = align / elem;
  for (const Ten& t : ts)
    if (reinterpret_cast<uintptr_t>(t.p) % align || t.sb % per || t.sh % per || t.st % per) return false;
  return true;
}
template <class Call>
Params common(const Call& c) {
  const TTTLinearScanShape& s = c.s;
  Params p;
  p.B = static_cast<int>(s.batch), p.H = static_cast<int>(s.heads), p.T = static_cast<int>(s.len);
  p.K = static_cast<int>(s.mini_batch), p.G = static_cast<int>(s.checkpoint_group);
  p.NC = static_cast<int>(s.chunks()), p.NG = static_cast<int>(s.groups());
  p.eps = static_cast<float>(s.eps), p.ln = s.ln_residual, p.bias = s.bias, p.bio = s.bf16_io;
  p.init_bh = s.per_sequence_init;
  p.xq = ten(c.xq), p.xk = ten(c.xk), p.xv = ten(c.xv), p.lr = ten(c.lr);
  p.tok = static_cast<const float*>(c.tok), p.w0 = static_cast<const float*>(c.w0);
  p.b0 = static_cast<const float*>(c.b0);
  p.lnw = static_cast<const float*>(c.ln_w), p.lnb = static_cast<const float*>(c.ln_b);
  return p;
}
}  // namespace detail

// The kernels' parameter blocks of the two calls (host side).
inline Params params_of(const TTTLinearScanForward& c) {
  Params p = detail::common(c);
  p.out = detail::ten(c.out);
  p.states = static_cast<float*>(c.states);
  p.w_final = static_cast<float*>(c.w_final), p.b_final = static_cast<float*>(c.b_final);
  p.acc_w = static_cast<float*>(c.acc_w), p.acc_b = static_cast<float*>(c.acc_b);
  p.vec = detail::rows_aligned({p.xq, p.xk, p.xv, p.out}, p.bio ? 2 : 4);
  // Chunk-parallel: the outputs in the plan's forward ranges; the launcher sets p.ws to the chunks'
  // state snapshots.
  const TTTLinearScanPlan plan = ttt_linear_scan_plan(c.s);
  p.par = plan.chunk_parallel, p.overlap = plan.overlap;
  p.Q = static_cast<int>(plan.fwd_per_range);
  p.R = (p.NC + p.Q - 1) / p.Q;
  p.probe = static_cast<long long*>(c.probe);
  return p;
}
inline Params params_of(const TTTLinearScanBackward& c) {
  Params p = detail::common(c);
  p.states = static_cast<float*>(const_cast<void*>(c.states));
  p.dout = detail::ten(c.dout), p.dxq = detail::ten(c.dxq), p.dxk = detail::ten(c.dxk);
  p.dxv = detail::ten(c.dxv), p.dlr = detail::ten(c.dlr);
  p.ws = static_cast<float*>(c.workspace);
  const TTTLinearScanPlan plan = ttt_linear_scan_plan(c.s);
  p.par = plan.chunk_parallel, p.R = static_cast<int>(plan.ranges), p.Q = static_cast<int>(plan.per_range);
  p.overlap = plan.overlap;
  p.vec = detail::rows_aligned({p.xq, p.xk, p.xv, p.dout, p.dxq, p.dxk, p.dxv}, p.bio ? 2 : 4);
  p.probe = static_cast<long long*>(c.probe);
  return p;
}

// --- operand stores ----------------------------------------------------------------------------

TTT_DEV void put_op(uint16_t* p, float v) { *p = bf16::from_float(v).bits; }
TTT_DEV void put_op(float* p, float v) { *p = v; }
// Two consecutive operands (p even-aligned).
TTT_DEV void put_op2(uint16_t* p, float a, float b) { *reinterpret_cast<uint32_t*>(p) = simt::pack_bf16(a, b); }
TTT_DEV void put_op2(float* p, float a, float b) {
  p[0] = a;
  p[1] = b;
}

// --- fragments -----------------------------------------------------------------------------------
// FragA: a 16x16 tile of the left operand; FragB: a 16 (k) x 16 (n) tile of the right operand,
// used as two 8-wide n-tiles. The MMA versions hold registers loaded by ldmatrix; the float32
// versions hold where the tile is (element (r, c) at p[r * rs + c * cs]).

template <bool MMA> struct FragA;
template <> struct FragA<true> { uint32_t r[4]; };
template <> struct FragA<false> { const float* p; int rs, cs; };
template <bool MMA> struct FragB;
template <> struct FragB<true> { uint32_t r[4]; };
template <> struct FragB<false> { const float* p; int rs, cs; };

// ldmatrix.x4 addresses: lane l feeds row (l & 7) of 8x8 matrix q = l >> 3.
TTT_DEV int ldsm_q() { return lane() >> 3; }
TTT_DEV int ldsm_i() { return lane() & 7; }

// Operand matrices in shared memory are row-major with row stride ld: a plain pointer, or
// SwizzledOps, bf16 rows of exactly ld elements (no padding) whose 16-byte pieces are XOR-permuted
// by row (piece j of row r at piece j ^ perm(r)), so the eight row addresses of an ldmatrix fall in
// eight distinct bank groups (CUTLASS's Swizzle<3,3,3> idea). Unpadded rows of a multiple of 128 bytes
// send all eight to the same four banks: an 8-way conflict on every load. op_at(m, ld, r, c): where
// element (r, c) is; c is a multiple of 8 for ldmatrix addresses, even for put_op2.
struct SwizzledOps {
  uint16_t* p;
};
TTT_DEV int swizzled_offset(int r, int c, int ld) {
  const int ppr = ld / 8;  // 16-byte pieces per row (ld a multiple of 16)
  const int perm = ppr >= 8 ? (r & 7) : (r / (8 / ppr)) & (ppr - 1);
  return r * ld + (((c >> 3) ^ perm) << 3) + (c & 7);
}
template <class OpT>
TTT_DEV OpT* op_at(OpT* m, int ld, int r, int c) { return m + r * ld + c; }
TTT_DEV uint16_t* op_at(SwizzledOps m, int ld, int r, int c) { return m.p + swizzled_offset(r, c, ld); }

// A from row-major [m][k] storage (row stride ld), tile at (m0, k0).
template <class M>
TTT_DEV void load_a(FragA<true>& a, M s, int ld, int m0, int k0) {
  const int q = ldsm_q(), i = ldsm_i();
  simt::ldsm_x4(a.r, op_at(s, ld, m0 + i + (q & 1) * 8, k0 + (q >> 1) * 8));
}
TTT_DEV void load_a(FragA<false>& a, const float* s, int ld, int m0, int k0) { a = {s + m0 * ld + k0, ld, 1}; }
// A = Xᵀ with X row-major [k][m] (row stride ld), tile at (m0, k0).
template <class M>
TTT_DEV void load_at(FragA<true>& a, M s, int ld, int m0, int k0) {
  const int q = ldsm_q(), i = ldsm_i();
  simt::ldsm_x4_t(a.r, op_at(s, ld, k0 + i + (q >> 1) * 8, m0 + (q & 1) * 8));
}
TTT_DEV void load_at(FragA<false>& a, const float* s, int ld, int m0, int k0) { a = {s + k0 * ld + m0, 1, ld}; }
// B = Yᵀ with Y row-major [n][k] (row stride ld), tile at (k0, n0).
template <class M>
TTT_DEV void load_bt(FragB<true>& b, M s, int ld, int k0, int n0) {
  const int q = ldsm_q(), i = ldsm_i();
  simt::ldsm_x4(b.r, op_at(s, ld, n0 + i + (q >> 1) * 8, k0 + (q & 1) * 8));
}
TTT_DEV void load_bt(FragB<false>& b, const float* s, int ld, int k0, int n0) { b = {s + n0 * ld + k0, 1, ld}; }
// B row-major [k][n] (row stride ld), tile at (k0, n0).
template <class M>
TTT_DEV void load_b(FragB<true>& b, M s, int ld, int k0, int n0) {
  const int q = ldsm_q(), i = ldsm_i();
  simt::ldsm_x4_t(b.r, op_at(s, ld, k0 + i + (q & 1) * 8, n0 + (q >> 1) * 8));
}
TTT_DEV void load_b(FragB<false>& b, const float* s, int ld, int k0, int n0) { b = {s + k0 * ld + n0, ld, 1}; }

// acc += A · B[:, 8 nt .. 8 nt + 7] (accumulator layout: rows g, g + 8; cols 2t, 2t + 1).
TTT_DEV void mma(float acc[4], const FragA<true>& a, const FragB<true>& b, int nt) {
  const uint32_t bb[2] = {b.r[2 * nt], b.r[2 * nt + 1]};
  simt::mma_bf16(acc, a.r, bb);
}
TTT_DEV void mma(float acc[4], const FragA<false>& a, const FragB<false>& b, int nt) {
  const int g = lane() >> 2, n = nt * 8 + 2 * (lane() & 3);
  const float *a0 = a.p + g * a.rs, *a1 = a.p + (g + 8) * a.rs;
  const float *b0 = b.p + n * b.cs, *b1 = b.p + (n + 1) * b.cs;
#pragma unroll 4
  for (int k = 0; k < 16; ++k) {
    const float x0 = a0[k * a.cs], x1 = a1[k * a.cs], y0 = b0[k * b.rs], y1 = b1[k * b.rs];
    acc[0] += x0 * y0;
    acc[1] += x0 * y1;
    acc[2] += x1 * y0;
    acc[3] += x1 * y1;
  }
}

// Row and column of accumulator element e (0..3) of n-tile nt in the m-tile at (m0, n0).
TTT_DEV int acc_row(int m0, int e) { return m0 + (lane() >> 2) + (e >> 1) * 8; }
TTT_DEV int acc_col(int n0, int nt, int e) { return n0 + nt * 8 + 2 * (lane() & 3) + (e & 1); }

// A [16, 16·NT] accumulator tile of one warp (NT n-tiles of 8 columns).
template <int NT>
struct Acc {
  float v[NT][4];
  TTT_DEV void fill(float x) {
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) v[n][e] = x;
  }
};

// acc (16 x 16·NT) += A · B over k = 16 · KT, with A and B loaded by the given loaders (lambdas
// (frag&, k0) and (frag&, k0, n0)). Every fragment is loaded first, then the MMAs run: the loads
// (ordered asm) pipeline instead of each waiting for the MMA before it, and the 2·(NT/2)
// accumulators give independent MMA chains. NT must be even (B fragments are 16 wide).
template <class C, int KT, int NT, class LA, class LB>
TTT_DEV void gemm_tile(Acc<NT>& acc, LA&& load_a_k, LB&& load_b_kn) {
  static_assert(NT % 2 == 0, "n-tiles come in pairs");
  FragA<C::MMA> a[KT];
  FragB<C::MMA> b[KT][NT / 2];
#pragma unroll
  for (int kt = 0; kt < KT; ++kt) {
    load_a_k(a[kt], kt * 16);
#pragma unroll
    for (int p = 0; p < NT / 2; ++p) load_b_kn(b[kt][p], kt * 16, p * 16);
  }
#pragma unroll
  for (int kt = 0; kt < KT; ++kt)
#pragma unroll
    for (int p = 0; p < NT / 2; ++p) {
      mma(acc.v[2 * p], a[kt], b[kt][p], 0);
      mma(acc.v[2 * p + 1], a[kt], b[kt][p], 1);
    }
}

// Two products with the same right operand: acc1 += A1 · B and acc2 += A2 · B (16 x 16 each),
// B's fragments loaded once; four independent MMA chains.
template <class C, int KT, class LA1, class LA2, class LB>
TTT_DEV void gemm_tile_pair(Acc<2>& acc1, Acc<2>& acc2, LA1&& load_a1, LA2&& load_a2, LB&& load_b) {
  FragA<C::MMA> a1[KT], a2[KT];
  FragB<C::MMA> b[KT];
#pragma unroll
  for (int kt = 0; kt < KT; ++kt) {
    load_a1(a1[kt], kt * 16);
    load_a2(a2[kt], kt * 16);
    load_b(b[kt], kt * 16);
  }
#pragma unroll
  for (int kt = 0; kt < KT; ++kt) {
    mma(acc1.v[0], a1[kt], b[kt], 0);
    mma(acc1.v[1], a1[kt], b[kt], 1);
    mma(acc2.v[0], a2[kt], b[kt], 0);
    mma(acc2.v[1], a2[kt], b[kt], 1);
  }
}

// Stores a warp's accumulator tile (rows m0.., columns n0..) into float32 smem (row stride ld),
// scaled. Rows are all 16 (padding rows hold whatever the product gave).
template <int NT>
TTT_DEV void store_f32(const Acc<NT>& acc, float* s, int ld, int m0, int n0, float scale = 1.f) {
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    const int r = acc_row(m0, 0), c = acc_col(n0, n, 0);
    s[r * ld + c] = scale * acc.v[n][0];
    s[r * ld + c + 1] = scale * acc.v[n][1];
    s[(r + 8) * ld + c] = scale * acc.v[n][2];
    s[(r + 8) * ld + c + 1] = scale * acc.v[n][3];
  }
}
template <class M, int NT>
TTT_DEV void store_op(const Acc<NT>& acc, M s, int ld, int m0, int n0) {
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    const int r = acc_row(m0, 0), c = acc_col(n0, n, 0);
    put_op2(op_at(s, ld, r, c), acc.v[n][0], acc.v[n][1]);
    put_op2(op_at(s, ld, r + 8, c), acc.v[n][2], acc.v[n][3]);
  }
}

// --- tiles from global memory ------------------------------------------------------------------

struct alignas(16) Vec4 {
  float x, y, z, w;
};
struct alignas(8) float2v {
  float x, y;
};
struct alignas(8) uint2v {
  uint32_t x, y;
};

// One [16, F] float32 tile of a [B, H, T, F] tensor in registers: thread tid holds the float4s at
// flat positions 4 (tid + j · THREADS), j = 0, 1 (THREADS = 2F, so exactly two). Rows at or past
// `rows` read as 0. `base` is the (b, h) slice (Ten::base), rows st apart and 16-byte aligned.
template <class C>
struct TileRegs {
  Vec4 v[2];
  TTT_DEV void load(const float* base, int64_t st, int64_t t0, int rows) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int e = 4 * (tid() + j * C::THREADS), r = e / C::F, c = e % C::F;
      v[j] = r < rows ? *reinterpret_cast<const Vec4*>(base + (t0 + r) * st + c) : Vec4{0.f, 0.f, 0.f, 0.f};
    }
  }
  // Into float32 smem (row stride FS) and, when op is non-null, the operand copy (row stride OS).
  TTT_DEV void store(float* s, typename C::Op* op) const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int e = 4 * (tid() + j * C::THREADS), r = e / C::F, c = e % C::F;
      *reinterpret_cast<Vec4*>(s + r * C::FS + c) = v[j];
      if (op) {
        put_op2(op + r * C::OS + c, v[j].x, v[j].y);
        put_op2(op + r * C::OS + c + 2, v[j].z, v[j].w);
      }
    }
  }
};

// The same tile stored as bf16 (Cfg::BIO): thread tid holds the 8 elements at flat position
// 8 tid (one 16-byte piece; THREADS · 8 = 16 F).
struct alignas(16) U4 {
  uint32_t x, y, z, w;
};
// The two bf16 halves of a packed register as floats.
TTT_DEV float bf_lo(uint32_t w) { return bf16{static_cast<uint16_t>(w & 0xffffu)}.to_float(); }
TTT_DEV float bf_hi(uint32_t w) { return bf16{static_cast<uint16_t>(w >> 16)}.to_float(); }
// 8 bf16 (a U4) into float32 smem s[0..8) and, when op is non-null, the operand copy op[0..8).
template <class C>
TTT_DEV void widen8(const U4& u, float* s, typename C::Op* op) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    s[2 * i] = bf_lo(w[i]);
    s[2 * i + 1] = bf_hi(w[i]);
  }
  if constexpr (C::MMA)
    if (op) *reinterpret_cast<U4*>(op) = u;
}
template <class C>
struct TileRegsBF16 {
  U4 v;
  TTT_DEV void load(const uint16_t* base, int64_t st, int64_t t0, int rows) {
    const int e = 8 * tid(), r = e / C::F, c = e % C::F;
    v = r < rows ? *reinterpret_cast<const U4*>(base + (t0 + r) * st + c) : U4{0, 0, 0, 0};
  }
  TTT_DEV void store(float* s, typename C::Op* op) const {
    const int e = 8 * tid(), r = e / C::F, c = e % C::F;
    widen8<C>(v, s + r * C::FS + c, op ? op + r * C::OS + c : nullptr);
  }
};
template <class C>
using TileIn = std::conditional_t<C::BIO, TileRegsBF16<C>, TileRegs<C>>;

// CPL consecutive floats (CPL % 4 == 0) between smem/global and registers, 16 bytes at a time.
template <int CPL>
TTT_DEV void load_vec(float (&dst)[CPL], const float* src) {
#pragma unroll
  for (int j = 0; j < CPL; j += 4) {
    const Vec4 v = *reinterpret_cast<const Vec4*>(src + j);
    dst[j] = v.x, dst[j + 1] = v.y, dst[j + 2] = v.z, dst[j + 3] = v.w;
  }
}
template <int CPL>
TTT_DEV void store_vec(float* dst, const float (&src)[CPL]) {
#pragma unroll
  for (int j = 0; j < CPL; j += 4) *reinterpret_cast<Vec4*>(dst + j) = Vec4{src[j], src[j + 1], src[j + 2], src[j + 3]};
}

// CPL consecutive floats into global storage of the IO type (bf16: rounded, 8 bytes at a time).
template <int CPL>
TTT_DEV void store_io(float* dst, const float (&src)[CPL]) {
  store_vec(dst, src);
}
template <int CPL>
TTT_DEV void store_io(uint16_t* dst, const float (&src)[CPL]) {
#pragma unroll
  for (int j = 0; j < CPL; j += 4)
    *reinterpret_cast<uint2v*>(dst + j) = uint2v{simt::pack_bf16(src[j], src[j + 1]), simt::pack_bf16(src[j + 2], src[j + 3])};
}
// Two consecutive floats into IO storage.
TTT_DEV void store_io2(float* dst, float a, float b) { *reinterpret_cast<float2v*>(dst) = float2v{a, b}; }
TTT_DEV void store_io2(uint16_t* dst, float a, float b) { *reinterpret_cast<uint32_t*>(dst) = simt::pack_bf16(a, b); }

// --- row-wise helpers ----------------------------------------------------------------------------

// The row-phase coordinates of this thread: row group rg (rows rg, rg + RPP, ...), columns
// c0 .. c0 + CPL − 1.
template <class C>
struct RowLane {
  int rg, c0;
  TTT_DEV RowLane() : rg(tid() / C::LPR), c0((tid() % C::LPR) * C::CPL) {}
  TTT_DEV bool first() const { return tid() % C::LPR == 0; }
};

template <class C>
TTT_DEV float row_sum(float v) {
  return simt::group_sum<C::LPR>(v);
}
// N independent row sums in one butterfly round (their shuffles interleave).
template <class C, int N>
TTT_DEV void row_sums(float (&v)[N]) {
#pragma unroll
  for (int m = C::LPR / 2; m > 0; m >>= 1)
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] += simt::shfl_xor(v[i], m);
}

// x̂ and σ of a row slice z[0..CPL) whose full row has F elements (biased variance, eps). One
// butterfly round: each lane's (mean, M2) of its CPL values are merged pairwise (Chan et al.'s
// parallel variance: M2 = M2a + M2b + δ² n / 2 for equal counts n), which is as stable as the
// two-pass form and gives every lane of the group the same bits.
template <class C>
TTT_DEV float normalize(const float* z, float* xh, float eps) {
  float mu = 0;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) mu += z[j];
  mu *= 1.f / C::CPL;
  float m2 = 0;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) m2 += (z[j] - mu) * (z[j] - mu);
  float n = C::CPL;
#pragma unroll
  for (int m = C::LPR / 2; m > 0; m >>= 1) {
    const float mu_o = simt::shfl_xor(mu, m), m2_o = simt::shfl_xor(m2, m);
    const float d = mu_o - mu;
    m2 = (m2 + m2_o) + d * d * (0.5f * n);
    mu = 0.5f * (mu + mu_o);
    n *= 2.f;
  }
  const float sig = sqrtf(m2 * (1.f / C::F) + eps);
  const float inv = 1.f / sig;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) xh[j] = (z[j] - mu) * inv;
  return sig;
}

// L(v) = (v − mean v − x̂ mean(v x̂)) / σ over a row.
template <class C>
TTT_DEV void ln_vjp(const float* v, const float* xh, float sig, float* out) {
  float s1 = 0, s2 = 0;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) {
    s1 += v[j];
    s2 += v[j] * xh[j];
  }
  const float m1 = row_sum<C>(s1) / C::F, m2 = row_sum<C>(s2) / C::F, inv = 1.f / sig;
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) out[j] = (v[j] - m1 - xh[j] * m2) * inv;
}

// The layer's output of one row slice: XQ + LN(z) (weight w, bias β at the slice's columns) with
// ln, else z itself. Every lane of the row's group calls it (the LN's statistics are shuffles).
template <class C>
TTT_DEV void ln_residual_row(bool ln, float eps, const float (&z)[C::CPL], const float* xq, const float* w,
                             const float* beta, float (&y)[C::CPL]) {
  if (!ln) {
#pragma unroll
    for (int j = 0; j < C::CPL; ++j) y[j] = z[j];
    return;
  }
  float xh[C::CPL], q[C::CPL], wv[C::CPL], be[C::CPL];
  normalize<C>(z, xh, eps);
  load_vec(q, xq);
  load_vec(wv, w);
  load_vec(be, beta);
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) y[j] = q[j] + wv[j] * xh[j] + be[j];
}

// The LN-L2 gradient of one row (ttt.py ln_fused_l2_bwd): from Z1 (z), the target tgt, LN w, β.
// Returns σ and fills x̂, gx = w (w x̂ + β − tgt) and G.
template <class C>
TTT_DEV float ln_l2_grad(const float* z, const float* tgt, const float* w, const float* beta, float eps, float* xh,
                         float* gx, float* G) {
  const float sig = normalize<C>(z, xh, eps);
#pragma unroll
  for (int j = 0; j < C::CPL; ++j) gx[j] = (w[j] * xh[j] + beta[j] - tgt[j]) * w[j];
  ln_vjp<C>(gx, xh, sig, G);
  return sig;
}

}  // namespace ttt::cuda_impl::tttk
