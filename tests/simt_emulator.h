// tests/simt_emulator.h — runs CUDA kernel bodies written against kernels/cuda/simt.cuh on the
// host: each thread of a block is a fiber (ucontext), scheduled cooperatively; block barriers,
// warp shuffles, ldmatrix and the bf16 MMA are emulated with the PTX ISA's semantics and
// fragment layouts. Compile the kernel headers with TTT_SIMT_EMULATE defined to use it.
//
// What it checks: index math, barrier placement (a thread waiting at a barrier that not every
// thread reaches is reported as a deadlock), warp-collective calls made by part of a warp (also a
// deadlock), fragment layouts, and the numbers (against the CPU reference). Asynchronous stores to
// other blocks (kernels/cuda/simt_async.cuh) are in flight until the scheduler lands them, those to
// a cluster's last block late and newest first, so an exchange that lets two phases of one
// transaction barrier mix shows too. What it cannot see: timing, and races whose outcome the
// schedule orders below do not change (fibers run one at a time, each until it waits).
#pragma once

#include <functional>

namespace ttt::simt {

// The order in which the scheduler runs the block's fibers, each until it waits at a barrier (or
// a warp collective): thread order, its reverse, or a fresh seeded shuffle every round. Taken from
// the environment variable TTT_SIMT_ORDER (forward, the default; reverse; shuffle; blocks;
// blocks_last). Work split between threads without a barrier between a write and another thread's
// read (a race) gives results that depend on the order: CTest runs every emulated test in all three
// orders. `blocks` is for clusters: each block runs in thread order for as long as it can before the
// next one does, so that one block runs ahead of the others up to the next cluster barrier (a
// missing cluster barrier, or a buffer one block rewrites while another still reads it, shows);
// `blocks_last` the same with the last block ahead (block 0 has work of its own in the TTT-MLP
// kernels, so either may be the one that runs ahead on a GPU).
enum class Schedule { forward, reverse, shuffle, blocks, blocks_last };
Schedule schedule_from_env();

// Runs body() on `threads` fibers as one thread block (threads a multiple of 32). body gets the
// block's `smem_bytes` of shared memory from block_smem(), filled with NaN (a kernel that reads
// shared memory it never wrote shows it).
void emulate_block(int threads, size_t smem_bytes, const std::function<void()>& body);
// Runs body() as a thread block cluster (sm_90) of `blocks` blocks of `threads` fibers, all
// scheduled together: each block has its own shared memory (NaN-filled) and barrier;
// simt::cluster_sync() waits for every thread of the cluster, simt::map_rank() reaches another
// block's shared memory (distributed shared memory), simt::cluster_rank() is the block's rank.
void emulate_cluster(int blocks, int threads, size_t smem_bytes, const std::function<void()>& body);
// The current block's shared memory (16-byte aligned).
char* block_smem();

}  // namespace ttt::simt
