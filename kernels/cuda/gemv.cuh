// kernels/cuda/gemv.cuh — products with few rows (gemv.cu): what CudaBackend::gemm hands over
// before cuBLASLt.
#pragma once

#include <cuda_runtime.h>

#include "kernels/backend.h"

namespace ttt::cuda_impl {

// Rows of A (a decoding batch's tokens) up to which the skinny kernel runs. Measured on an H200
// (125M decode steps, one call each): batch 1 0.893 ms per token (cuBLASLt: 1.010), but batch 16
// 2.122 ms per step (cuBLASLt: 1.029): every warp reads all of A, so beyond a few rows the tiled
// GEMM wins.
constexpr int kSkinnyMaxRows = 4;

// Whether skinny_gemm runs g: A [m, k] row-major (not transposed), B transposed ([n, k] row-major),
// m <= kSkinnyMaxRows, float32 or bf16 operands and output, 16-byte aligned rows.
bool skinny_gemm_applies(const GemmArgs& g);
void skinny_gemm(const GemmArgs& g, cudaStream_t stream);

}  // namespace ttt::cuda_impl
