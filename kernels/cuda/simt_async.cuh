// kernels/cuda/simt_async.cuh — exchanges between the blocks of a thread block cluster (sm_90)
// that signal through a transaction barrier (mbarrier) instead of a cluster barrier.
//
// Why: a cluster barrier's arrive has release semantics, so each thread's stores to other blocks'
// shared memory must be performed before it arrives; Nsight Compute on the TTT-MLP cluster kernels
// (BENCHMARKS.md, session 21) put that memory fence first among their stalls. An asynchronous store
// to distributed shared memory (`st.async ... mbarrier::complete_tx::bytes`) instead carries its
// byte count to the receiving block's mbarrier: the receiver's phase completes when its one local
// arrival (with the bytes it expects) and every byte have come, and its threads wait for that
// phase alone. Senders do not wait at all.
//
// Contract (as CUTLASS's transaction barriers, include/cutlass/arch/barrier.h, ClusterTransactionBarrier):
//  - xbar_init by one thread of every block, then xbar_init_fence, then a cluster barrier before
//    any block sends (the kernels' first cluster_sync).
//  - Per phase, one thread of the receiving block calls xbar_expect(bytes) once, after its wait of
//    the previous phase; bytes may arrive before it (the transaction count goes negative; the phase
//    cannot complete while its arrival is pending).
//  - A sender sends a phase's bytes to a block only once that block's previous phase on the same
//    barrier has completed: after a wait of its own that needs data the receiver sent after its
//    wait for that previous phase. (Bytes of two phases would otherwise mix in one count; a data
//    dependence that only shows the receiver started the previous phase is not enough.)
//  - xbar_wait(bar, parity) by each thread that reads the data: parity = phases completed before
//    this one, mod 2. A phase must not complete twice while a thread still waits for the first
//    (the kernels wait at each barrier once a chunk, with block barriers between).
//  - A sender may write a buffer again only once every reader has finished reading it: the kernels
//    derive that from the exchanges' order (their header comments say how).
//
// TTT_SIMT_EMULATE (tests/simt_emulator.cpp): a store is in flight until the scheduler lands it and
// counts its bytes on the receiver's barrier: after each scheduling pass, except stores to the
// cluster's last block, which land only when nothing else can move, newest first, until one
// completes a phase (whose waiters then run). Arming waits until every other thread of the cluster
// waits. So bytes arriving before the arm, and a phase completed by the next phase's bytes (the
// second rule broken: its data then is missing), both show on the CPU.
#pragma once

#include "kernels/cuda/simt.cuh"

namespace ttt::simt {

#if defined(TTT_SIMT_EMULATE)

void emu_xbar_init(uint64_t* bar);
void emu_xbar_expect(uint64_t* bar, uint32_t bytes);
void emu_xbar_wait(uint64_t* bar, uint32_t parity);
void emu_st_async(float* dst, int rank, const float* src, int n, uint64_t* bar);

TTT_DEV void xbar_init(uint64_t* bar) { emu_xbar_init(bar); }
TTT_DEV void xbar_init_fence() {}
TTT_DEV void xbar_expect(uint64_t* bar, uint32_t bytes) { emu_xbar_expect(bar, bytes); }
TTT_DEV void xbar_wait(uint64_t* bar, uint32_t parity) { emu_xbar_wait(bar, parity); }
// dst and bar are addresses in the calling block's shared memory; the store goes to the same
// locations in block `rank`.
TTT_DEV void st_async(float* dst, int rank, float v, uint64_t* bar) { emu_st_async(dst, rank, &v, 1, bar); }
TTT_DEV void st_async2(float* dst, int rank, float a, float b, uint64_t* bar) {
  const float v[2] = {a, b};
  emu_st_async(dst, rank, v, 2, bar);
}

#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900

TTT_DEV void xbar_init(uint64_t*) { __trap(); }
TTT_DEV void xbar_init_fence() { __trap(); }
TTT_DEV void xbar_expect(uint64_t*, uint32_t) { __trap(); }
TTT_DEV void xbar_wait(uint64_t*, uint32_t) { __trap(); }
TTT_DEV void st_async(float*, int, float, uint64_t*) { __trap(); }
TTT_DEV void st_async2(float*, int, float, float, uint64_t*) { __trap(); }

#else

// The shared::cluster address of a location of the calling block's shared memory in block `rank`.
// A pure function of its operands (not volatile): the compiler may share one mapa between the
// stores of a tile that count on the same barrier.
TTT_DEV uint32_t cluster_smem_addr(const void* p, int rank) {
  uint32_t r;
  asm("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(smem_addr(p)), "r"(rank));
  return r;
}
TTT_DEV void xbar_init(uint64_t* bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_addr(bar)) : "memory");
}
TTT_DEV void xbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
TTT_DEV void xbar_expect(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
TTT_DEV void xbar_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t a = smem_addr(bar);
  uint32_t done;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\n"
        " selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
}
TTT_DEV void st_async(float* dst, int rank, float v, uint64_t* bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n" ::"r"(
                   cluster_smem_addr(dst, rank)),
               "r"(__float_as_uint(v)), "r"(cluster_smem_addr(bar, rank))
               : "memory");
}
TTT_DEV void st_async2(float* dst, int rank, float a, float b, uint64_t* bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.b32 [%0], {%1, %2}, [%3];\n" ::"r"(
                   cluster_smem_addr(dst, rank)),
               "r"(__float_as_uint(a)), "r"(__float_as_uint(b)), "r"(cluster_smem_addr(bar, rank))
               : "memory");
}

#endif

}  // namespace ttt::simt
