// kernels/attention_decode.h — one decoded token of causal self-attention against a KV cache, as one
// call (kernels/fused_call.h): RoPE of the new query and key at the position the device holds, the
// key and value appended to the cache, the query attended over the cache split into pieces that run
// side by side, and the position advanced. CPU reference: kernels/cpu/attention_decode.cpp; CUDA:
// kernels/cuda/attention_decode.cu. The composite path (layers/attention.cpp: apply_rope, a copy into
// the cache, scaled_dot_product_attention) is the oracle.
//
// Per batch element b and head h, with p = counters[0] (the token's absolute position) and
// n = counters[1] (the cache entries before it):
//   q' = rope(q, p), k' = rope(k, p)       (adjacent pairs (2i, 2i+1), angle p · θ^(−2i/D), as layers/rope.h)
//   K[n] = k', V[n] = v                    (cache entries; n < capacity)
//   out  = Σ_j softmax_j(scale · q'·K[j]) V[j]   over j in [max(0, n + 1 − window), n]  (window 0: [0, n])
//   counters += (1, 1)
// Why one call reading the counters from device memory: the step's launches and arguments are the
// same at every position, so a CUDA graph recorded once replays for every token (layers/decode_graphs.h),
// and the cache is read by ~capacity / kDecodeKeysPerSplit blocks per head instead of one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/backend.h"
#include "kernels/fused_call.h"

namespace ttt {

// Keys per block of the split cache (the CUDA kernel; the number of splits follows the capacity).
constexpr int64_t kDecodeKeysPerSplit = 128;

struct AttentionDecodeShape {
  int64_t batch = 0, heads = 0, head_dim = 0, capacity = 0;
  int64_t window = 0;  // 0: every cached key
  double scale = 1.0, theta = 10000.0;
  DType dtype = DType::f32;  // q, k, v, the caches and out: float32, or float64 (CPU only)
  int64_t splits() const { return capacity < 1 ? 1 : (capacity + kDecodeKeysPerSplit - 1) / kDecodeKeysPerSplit; }
};

// A [B, 1, H, D] tensor with unit stride in D: element (b, h, d) at data + b·sb + h·sh + d.
struct TokenHeads {
  void* data = nullptr;
  int64_t sb = 0, sh = 0;
};

struct AttentionDecodeStep final : FusedCall {
  AttentionDecodeShape s;
  TokenHeads q, k, v;  // the new token's projections, q and k before RoPE
  void* k_cache = nullptr;  // [B, H, capacity, D] contiguous
  void* v_cache = nullptr;
  int64_t* counters = nullptr;  // [2] on the call's device: position, cache length; advanced by one
  TokenHeads out;
  void* workspace = nullptr;  // workspace_bytes(): per split, the running max, sum and weighted values
  size_t workspace_bytes() const;
  const char* name() const override { return "attention_decode_step"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Why the device's kernel cannot run this shape (empty when it can).
std::string attention_decode_unsupported(Device device, const AttentionDecodeShape& s);

namespace cpu_impl {
void attention_decode_step(AttentionDecodeStep& c);
}  // namespace cpu_impl
namespace cuda_impl {
void attention_decode_step(Backend& be, AttentionDecodeStep& c);
std::string attention_decode_unsupported(const AttentionDecodeShape& s);
}  // namespace cuda_impl

}  // namespace ttt
