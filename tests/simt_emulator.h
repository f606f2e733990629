// tests/simt_emulator.h — runs CUDA kernel bodies written against kernels/cuda/simt.cuh on the
// host: each thread of a block is a fiber (ucontext), scheduled cooperatively; block barriers,
// warp shuffles, ldmatrix and the bf16 MMA are emulated with the PTX ISA's semantics and
// fragment layouts. Compile the kernel headers with TTT_SIMT_EMULATE defined to use it.
//
// What it checks: index math, barrier placement (a thread waiting at a barrier that not every
// thread reaches is reported as a deadlock), warp-collective calls made by part of a warp (also a
// deadlock), fragment layouts, and the numbers (against the CPU reference). What it cannot see:
// real data races between warps (fibers run one at a time, in a fixed order), timing.
#pragma once

#include <functional>

namespace ttt::simt {

// Runs body() on `threads` fibers as one thread block (threads a multiple of 32). body gets the
// block's `smem_bytes` of shared memory from block_smem(), filled with NaN (a kernel that reads
// shared memory it never wrote shows it).
void emulate_block(int threads, size_t smem_bytes, const std::function<void()>& body);
// The current block's shared memory (16-byte aligned).
char* block_smem();

}  // namespace ttt::simt
