// kernels/cuda/simt.cuh — the thread-level primitives the fused TTT kernels are written against:
// thread and warp indices, block and warp barriers, warp shuffles, ldmatrix, the bf16 tensor-core MMA
// (m16n8k16, float32 accumulate), the tf32 one (m16n8k8), cp.async and thread block clusters
// (rank, cluster barrier, distributed shared memory).
//
// Why a layer of its own: the same kernel source compiles two ways.
//  - nvcc (the default): each primitive is the CUDA intrinsic / inline PTX instruction.
//  - TTT_SIMT_EMULATE (a host C++ build, tests/simt_emulator.*): each primitive calls a host
//    emulator that runs every thread of a block as a fiber, so the kernels' index math, barriers,
//    fragment layouts and shared-memory use are exercised on the CPU in CI, against the CPU
//    reference, without a GPU. The emulated MMA and ldmatrix follow the PTX ISA's fragment
//    layouts (mma.m16n8k16 .bf16: A rows g / g+8, cols 2t, 2t+1 (+8); B rows 2t, 2t+1 (+8), col g;
//    C rows g / g+8, cols 2t, 2t+1; g = lane / 4, t = lane % 4).
#pragma once

#include <cstdint>
#if defined(TTT_SIMT_EMULATE)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#endif

#include "kernels/dtype.h"

#if defined(TTT_SIMT_EMULATE)
#define TTT_DEV inline
#define TTT_SMEM_ALIGN alignas(16)
#else
#define TTT_DEV __device__ __forceinline__
#endif

namespace ttt::simt {

#if defined(TTT_SIMT_EMULATE)

// --- host emulation (implemented by tests/simt_emulator.cpp) ----------------------------------
int emu_tid();
int emu_block_threads();
void emu_sync();
void emu_syncwarp();
float emu_shfl_xor(float v, int mask);
void emu_ldmatrix(uint32_t* r, int n, const void* addr, bool trans);
void emu_mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]);
void emu_mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]);
int emu_cluster_rank();
int emu_cluster_size();
void emu_cluster_sync();
void* emu_map_rank(const void* p, int rank);

TTT_DEV long long clock() { return 0; }
TTT_DEV int tid() { return emu_tid(); }
TTT_DEV int threads() { return emu_block_threads(); }
TTT_DEV void sync() { emu_sync(); }
TTT_DEV void syncwarp() { emu_syncwarp(); }
TTT_DEV float shfl_xor(float v, int mask) { return emu_shfl_xor(v, mask); }
TTT_DEV void ldsm_x4(uint32_t r[4], const void* p) { emu_ldmatrix(r, 4, p, false); }
TTT_DEV void ldsm_x4_t(uint32_t r[4], const void* p) { emu_ldmatrix(r, 4, p, true); }
TTT_DEV void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) { emu_mma_bf16(d, a, b); }
TTT_DEV void mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) { emu_mma_tf32(d, a, b); }
TTT_DEV int cluster_rank() { return emu_cluster_rank(); }
TTT_DEV int cluster_size() { return emu_cluster_size(); }
TTT_DEV void cluster_sync() { emu_cluster_sync(); }
template <class T>
TTT_DEV T* map_rank(T* p, int rank) {
  return static_cast<T*>(emu_map_rank(p, rank));
}
// cvt.rna.tf32.f32: the 10-bit-mantissa rounding (to nearest, ties away from zero), as float bits.
TTT_DEV uint32_t to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;  // finite: round at bit 13, ties away
  return u & 0xffffe000u;
}
// prefetch.global.L2: a hint with no effect on results; nothing to emulate.
TTT_DEV void prefetch_l2(const void*) {}
// cp.async: the copy happens at once; waiting is a no-op.
TTT_DEV void cp_async16(void* dst, const void* src) { std::memcpy(dst, src, 16); }
TTT_DEV void cp_async4(void* dst, const void* src) { std::memcpy(dst, src, 4); }
TTT_DEV void cp_async_commit() {}
TTT_DEV void cp_async_wait_all() {}
template <int N>
TTT_DEV void cp_async_wait_group() {}
// Flags between blocks of one grid: the emulator runs blocks one after another, so a flag a block
// waits for must already be set (by an earlier block); if not, the kernel's order is wrong and
// waiting would never end on a GPU either.
TTT_DEV void flag_set(unsigned* f) { *f = 1u; }
TTT_DEV void flag_wait(const unsigned* f) {
  if (*f == 0u) {
    std::fprintf(stderr, "simt emulator: a block waits for a flag that no earlier block set\n");
    std::abort();
  }
}

#else

// --- CUDA ------------------------------------------------------------------------------------
TTT_DEV long long clock() { return clock64(); }
TTT_DEV int tid() { return static_cast<int>(threadIdx.x); }
TTT_DEV int threads() { return static_cast<int>(blockDim.x); }
TTT_DEV void sync() { __syncthreads(); }
// Brings the 128-byte line holding p into L2 (a hint: no register, no shared memory, no wait).
TTT_DEV void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
// Orders a warp's shared-memory writes before its lanes read each other's (an operand tile a warp
// writes and then loads by ldmatrix).
TTT_DEV void syncwarp() { __syncwarp(); }
TTT_DEV float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
TTT_DEV uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
TTT_DEV void ldsm_x4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
TTT_DEV void ldsm_x4_t(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// Not volatile: a pure register operation, so the compiler may schedule it around the (ordered)
// ldmatrix loads and other MMAs.
TTT_DEV void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// mma.m16n8k8 .tf32 (float32 accumulate): A rows g / g+8, cols t, t+4; B rows t, t+4, col g;
// C as m16n8k16's (g = lane / 4, t = lane % 4).
TTT_DEV void mma_tf32(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// cvt.rna.tf32.f32: the 10-bit-mantissa rounding (to nearest, ties away from zero), as float bits.
TTT_DEV uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
TTT_DEV void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src));
}
TTT_DEV void cp_async4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src));
}
TTT_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
TTT_DEV void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// Waits until at most N of this thread's most recent commit groups are still in flight.
template <int N>
TTT_DEV void cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
// Thread block clusters (sm_90): the block's rank in its cluster, the cluster's size, a barrier over
// every thread of the cluster (arrive has release, wait acquire semantics: shared-memory writes to
// any block of the cluster before it are visible to every thread after it), and the address of the
// same shared-memory location in block `rank` of the cluster (distributed shared memory; plain
// loads and stores reach it).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
TTT_DEV int cluster_rank() { return 0; }
TTT_DEV int cluster_size() { return 1; }
TTT_DEV void cluster_sync() { __trap(); }
template <class T>
TTT_DEV T* map_rank(T*, int) {
  __trap();
  return nullptr;
}
#else
TTT_DEV int cluster_rank() { return static_cast<int>(__clusterRelativeBlockRank()); }
TTT_DEV int cluster_size() { return static_cast<int>(__clusterSizeInBlocks()); }
TTT_DEV void cluster_sync() {
  __cluster_barrier_arrive();
  __cluster_barrier_wait();
}
template <class T>
TTT_DEV T* map_rank(T* p, int rank) {
  return static_cast<T*>(__cluster_map_shared_rank(p, static_cast<unsigned>(rank)));
}
#endif
// Flags between blocks of one grid (a block waits only for blocks the hardware started before it).
// flag_set: by one thread after a block barrier; the fence makes every write the block made before
// the barrier visible at device scope before the flag (cooperative groups' grid sync does the same).
TTT_DEV void flag_set(unsigned* f) {
  __threadfence();
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(f), "r"(1u) : "memory");
}
// flag_wait: each calling thread spins until the flag is set; its later reads see the setter's writes.
TTT_DEV void flag_wait(const unsigned* f) {
  unsigned v;
  for (;;) {
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(f) : "memory");
    if (v) break;
    __nanosleep(64);
  }
}

#endif

TTT_DEV int lane() { return tid() & 31; }
TTT_DEV int warp() { return tid() >> 5; }

// The float32 whose bit pattern is w.
TTT_DEV float float_of_bits(uint32_t w) {
#if defined(TTT_SIMT_EMULATE)
  float f;
  std::memcpy(&f, &w, 4);
  return f;
#else
  return __uint_as_float(w);
#endif
}

// Two floats as a bf16x2 register (lo in the low half), rounded to nearest even.
TTT_DEV uint32_t pack_bf16(float lo, float hi) {
#if defined(TTT_SIMT_EMULATE)
  return static_cast<uint32_t>(bf16::from_float(lo).bits) | (static_cast<uint32_t>(bf16::from_float(hi).bits) << 16);
#else
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#endif
}

// Sum over the `width` consecutive lanes of a group (width a power of two <= 32): every lane of
// the group gets the group's sum. The order of additions is fixed (butterfly), so it is
// deterministic.
template <int width>
TTT_DEV float group_sum(float v) {
#pragma unroll
  for (int m = width / 2; m > 0; m >>= 1) v += shfl_xor(v, m);
  return v;
}

}  // namespace ttt::simt
