// kernels/cuda/attention.cuh — shared pieces of the fused attention kernels (attention.cu,
// attention_fwd.cu, attention_bwd.cu, attention_f32.cu): argument blocks, the launchers each
// file defines, and the warp-level tensor-core primitives (cp.async, ldmatrix, mma.sync) the
// bfloat16 kernels are built from.
//
// Note [mma.sync m16n8k16 fragments] (PTX ISA, "Matrix fragments for mma.m16n8k16"), for a lane
// with g = lane / 4 and t = lane % 4:
//   A (16x16, row-major, 4 regs of 2 bf16): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..],
//                                           a3 = A[g+8][2t+8..]
//   B (16x8, "col": k contiguous, 2 regs):  b0 = B[2t..2t+1][g],   b1 = B[2t+8..2t+9][g]
//   C (16x8, float32, 4 regs):              c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// So the C fragments of two neighbouring n8 tiles, packed to bf16 pairs, are exactly the A
// fragment of a 16x16 tile: probabilities computed in registers feed the next product without
// a trip through shared memory.
// ldmatrix.x4 loads four 8x8 bf16 matrices whose row addresses come from lanes 0-7, 8-15, 16-23,
// 24-31; lane l receives, of matrix m, row l/4 elements 2(l%4), 2(l%4)+1 (with .trans: column
// l/4, rows 2(l%4), 2(l%4)+1). Which rows each lane points at selects the A, B or transposed-B
// pattern; the three address helpers below encode them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_common.cuh"

namespace ttt::cuda_impl::attn {

// --- arguments ---------------------------------------------------------------------------------

// Operands are [B,H,Tq|Tk,Dh] in the layouts of s (resolved: every layout set), rows 16-byte
// aligned for bf16.
struct FwdArgs {
  const void *q, *k, *v;
  void* out;

  float* lse;             // [B,H,Tq]
  AttentionShape s;
};

struct BwdArgs {
  const void *q, *k, *v, *out, *dout;
  const float* lse;    // [B,H,Tq], from the forward
  const float* delta;  // [B,H,Tq] = rowsum(dout ∘ out), from attention.cu's preprocessing kernel
  float* dq_accum;     // [B,H,Tq,Dh] float32 contiguous, zeroed; receives scale · dS K by atomics
  void *dk, *dv;       // in the layouts s.dk, s.dv, fully written
  AttentionShape s;
  // > 0: deterministic mode. No atomics: key tile t (blockIdx.y) stores its dQ partial at
  // dq_accum + t · dq_tile_stride + (bh·Tq + i)·Dh + d (each element of a tile is written by one
  // thread once; dq_accum zeroed, one slab per key tile), and the caller adds the slabs in order.
  int64_t dq_tile_stride = 0;
  // The flat heads (b·H + h) of this launch, bh_begin + blockIdx.x: all of them, or a group in
  // deterministic mode. dq_accum is indexed from head bh_begin; lse and delta from head 0.
  int64_t bh_begin = 0, bh_count = 0;
};

// Keys per block of the backward kernels: the key tiles of the deterministic dQ partials.
int64_t bwd_key_tile_bf16(int64_t head_dim);
int64_t bwd_key_tile_f32();

// Launchers (stream-ordered; they check the launch). The bf16 ones need Dh % 8 == 0, Dh <= 128.
void launch_fwd_bf16(const FwdArgs& a, cudaStream_t stream);
void launch_bwd_bf16(const BwdArgs& a, cudaStream_t stream);
// float32, any Dh <= 128: simple CUDA-core kernels; dq_accum is the float32 dq itself.
void launch_fwd_f32(const FwdArgs& a, cudaStream_t stream);
void launch_bwd_f32(const BwdArgs& a, cudaStream_t stream);

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Raises the dynamic shared-memory limit of `kernel` to `bytes` (needed above 48 KB). Called
// before every launch: the attribute is per device, and the call costs about a microsecond.
template <class K> void allow_smem(K kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

#if defined(__CUDACC__)

// --- async copies ---------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, bypassing L1; zero-fills the destination when !valid (src must
// still be a mapped address: pass the tensor's base).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// --- tensor-core fragments -----------------------------------------------------------------------

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// c += a · b  (bf16 inputs, float32 accumulators)
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 2^x with the special-function unit (about 2 ulp; 2^-inf = 0), as softmax kernels use it.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// Two floats as a bf16 pair (lo in the low half: the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Row/column offsets, inside a 16x16 block of a shared row-major [rows][ld] bf16 tile, that lane
// `l` passes to ldsm_x4 for each pattern (see the Note above):
//   A pattern (tile rows = the A rows):                 regs = a0..a3
//   B pattern (tile rows = the n index, k contiguous):  regs = b0,b1 of n-tile 0, b0,b1 of n-tile 1
//   Bt pattern, with ldsm_x4_trans (tile rows = k):    regs = b0,b1 of n-tile 0, b0,b1 of n-tile 1
// A^T pattern, with ldsm_x4_trans (tile rows = k = A's columns, tile columns = A's rows):
//   regs = a0..a3 of the 16x16 A block.
__device__ __forceinline__ int a_row(int l) { return l % 16; }
__device__ __forceinline__ int a_col(int l) { return (l / 16) * 8; }
__device__ __forceinline__ int b_row(int l) { return l % 8 + (l / 16) * 8; }
__device__ __forceinline__ int b_col(int l) { return ((l / 8) % 2) * 8; }
__device__ __forceinline__ int bt_row(int l) { return l % 16; }
__device__ __forceinline__ int bt_col(int l) { return (l / 16) * 8; }
__device__ __forceinline__ int at_row(int l) { return l % 8 + (l / 16) * 8; }
__device__ __forceinline__ int at_col(int l) { return ((l / 8) % 2) * 8; }

// (batch, head) of the flat head bh = b · heads + h, in 32-bit arithmetic (a 64-bit division costs
// the tensor-core kernels registers they cannot spare; grids have fewer than 2^31 heads).
struct HeadIndex {
  int b, h;
  __device__ __forceinline__ HeadIndex(int64_t bh, int64_t heads)
      : b(static_cast<int>(bh) / static_cast<int>(heads)), h(static_cast<int>(bh) - b * static_cast<int>(heads)) {}
};

// Rows [row0, row0 + kRows) of a bf16 matrix with n_rows rows of Dh values, row stride ld
// (elements, a multiple of 8, below 2^31: AttentionShape's row strides, checked by the launchers)
// -> shared [kRows][D + 8], zero-filled past n_rows and Dh. All threads take part; one cp.async
// per 16 bytes.
template <int D, int kRows, int kThreads>
__device__ __forceinline__ void load_rows(__nv_bfloat16* dst, const __nv_bfloat16* src, int64_t row0,
                                          int64_t n_rows, int Dh, int ld) {
  constexpr int kChunks = D / 8;
  const __nv_bfloat16* base = src + row0 * ld;  // 32-bit offsets from here: fewer registers
  const int64_t left = n_rows - row0;
  const int rows = left < kRows ? static_cast<int>(left) : kRows;
#pragma unroll
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool ok = r < rows && col < Dh;
    cp_async16(dst + r * (D + 8) + col, ok ? base + r * ld + col : src, ok);
  }
}

#endif  // __CUDACC__

}  // namespace ttt::cuda_impl::attn
