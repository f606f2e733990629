// kernels/cuda/attention.cu — the CUDA backend's fused attention (backend.h, AttentionShape):
// dispatch to the bf16 tensor-core kernels (attention_fwd.cu, attention_bwd.cu) or the float32
// CUDA-core kernels (attention_f32.cu), plus the small kernels around the backward:
//   D_i = rowsum(dout_i ∘ out_i) in float32 (read by every key tile of the backward),
//   dq = dq_accum (float32 atomics target) converted to bf16, and, in deterministic mode
//   (backend.h), dq = the key tiles' dQ slabs added in order (attention_bwd_ordered).
// Reference: kernels/cpu/attention.cpp; test: tests/test_cuda_attention.cpp.
//
// Supported: bf16 with head_dim % 8 == 0 (16-byte rows) and float32, head_dim in [1, 128]. The
// autograd op asks attention_supported() and otherwise takes the composite path (matmul,
// masked_fill, softmax) on the GPU, with a one-time message.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {

// One warp per row: D_i = Σ_d dout[i,d] · out[i,d], float32.
template <class T>
__global__ void attention_delta_kernel(float* __restrict__ delta, const T* __restrict__ dout, const T* __restrict__ out,
                                       int64_t rows, int D) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) acc += to_compute(dout[r * D + d]) * to_compute(out[r * D + d]);
    acc = warp_sum(acc);
    if (lane == 0) delta[r] = acc;
  }
}

// Deterministic dQ: dst[e] = Σ_t slabs[t · n + e] over the key tiles t in increasing order.
template <class T>
__global__ void sum_slabs_kernel(T* __restrict__ dst, const float* __restrict__ slabs, int64_t tiles, int64_t n) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t t = 0; t < tiles; ++t) acc += slabs[t * n + e];
    if constexpr (std::is_same_v<T, float>) dst[e] = acc;
    else dst[e] = bf16::from_float(acc);
  }
}

// The slabs of the deterministic dQ: at most this many bytes at once (heads are processed in
// groups to stay under it; one head may exceed it).
constexpr size_t kDqSlabBudget = size_t{512} << 20;

__global__ void float_to_bf16_kernel(bf16* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = bf16::from_float(src[i]);
}

void check_call(const CudaBackend& be, const AttentionShape& s, DType dt, std::initializer_list<const void*> bufs,
                const char* who) {
  if (!be.attention_supported(s.head_dim, dt))
    throw std::invalid_argument(std::string(who) + " on " + be.device().str() + ": head_dim " +
                                std::to_string(s.head_dim) + " " + dtype_name(dt) +
                                " is not supported (bfloat16 needs head_dim % 8 == 0; both need head_dim <= 128)");
  for (const void* p : bufs)
    if (p && !is_aligned(p, 16))
      throw std::invalid_argument(std::string(who) + ": buffers must be 16-byte aligned");
}

}  // namespace

bool CudaBackend::attention_supported(int64_t head_dim, DType dt) const {
  if (head_dim < 1 || head_dim > 128) return false;
  if (dt == DType::bf16) return head_dim % 8 == 0;
  return dt == DType::f32;
}

void CudaBackend::attention_fwd(void* out, float* lse, const void* q, const void* k, const void* v,
                                const AttentionShape& s, DType dt) {
  check_call(*this, s, dt, {out, q, k, v}, "attention");
  if (s.batch * s.heads * s.q_len == 0) return;
  activate();
  attn::FwdArgs a{q, k, v, out, lse, s};
  if (dt == DType::bf16) attn::launch_fwd_bf16(a, stream_);
  else attn::launch_fwd_f32(a, stream_);
}

void CudaBackend::attention_bwd(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                                const void* v, const void* out, const float* lse, const AttentionShape& s,
                                DType dt) {
  check_call(*this, s, dt, {dq, dk, dv, dout, q, k, v, out}, "attention backward");
  const int64_t heads = s.batch * s.heads, q_rows = heads * s.q_len;
  const size_t esize = dtype_size(dt);
  if (heads * s.kv_len == 0) return;
  activate();
  if (q_rows == 0) {  // no queries: nothing reaches k and v
    CUDA_CHECK(cudaMemsetAsync(dk, 0, heads * s.kv_len * s.head_dim * esize, stream_));
    CUDA_CHECK(cudaMemsetAsync(dv, 0, heads * s.kv_len * s.head_dim * esize, stream_));
    return;
  }
  Scratch delta(*this, q_rows * sizeof(float));
  const int threads = 256;
  const unsigned blocks = grid_for(q_rows * 32, threads, sm_count_);
  if (dt == DType::bf16)
    attention_delta_kernel<bf16><<<blocks, threads, 0, stream_>>>(
        delta.as<float>(), static_cast<const bf16*>(dout), static_cast<const bf16*>(out), q_rows,
        static_cast<int>(s.head_dim));
  else
    attention_delta_kernel<float><<<blocks, threads, 0, stream_>>>(
        delta.as<float>(), static_cast<const float*>(dout), static_cast<const float*>(out), q_rows,
        static_cast<int>(s.head_dim));
  CUDA_CHECK_LAUNCH();
  const int64_t dq_numel = q_rows * s.head_dim;
  attn::BwdArgs a{q, k, v, out, dout, lse, delta.as<float>(), nullptr, dk, dv, s};
  if (deterministic()) {
    attention_bwd_ordered(dq, a, dt);
    return;
  }
  if (dt == DType::f32) {  // dq itself is the float32 atomics target
    a.dq_accum = static_cast<float*>(dq);
    CUDA_CHECK(cudaMemsetAsync(dq, 0, dq_numel * sizeof(float), stream_));
    attn::launch_bwd_f32(a, stream_);
    return;
  }
  Scratch dq_accum(*this, dq_numel * sizeof(float));
  a.dq_accum = dq_accum.as<float>();
  CUDA_CHECK(cudaMemsetAsync(a.dq_accum, 0, dq_numel * sizeof(float), stream_));
  attn::launch_bwd_bf16(a, stream_);
  float_to_bf16_kernel<<<grid_for(dq_numel, kThreads, sm_count_), kThreads, 0, stream_>>>(
      static_cast<bf16*>(dq), a.dq_accum, dq_numel);
  CUDA_CHECK_LAUNCH();
}

// Deterministic mode: the backward runs over groups of heads; each key tile writes its dQ partial
// to a slab of its own (no atomics) and sum_slabs_kernel adds the slabs in key-tile order. Memory:
// key tiles × group heads × Tq × Dh float32 (bounded by kDqSlabBudget per group).
void CudaBackend::attention_bwd_ordered(void* dq, const attn::BwdArgs& a, DType dt) {
  const AttentionShape& s = a.s;
  const int64_t heads = s.batch * s.heads, Dh = s.head_dim, Tq = s.q_len, Tk = s.kv_len;
  const int64_t tile = dt == DType::bf16 ? attn::bwd_key_tile_bf16(Dh) : attn::bwd_key_tile_f32();
  const int64_t k_tiles = (Tk + tile - 1) / tile;
  const size_t per_head = static_cast<size_t>(k_tiles * Tq * Dh) * sizeof(float);
  const int64_t group = std::clamp<int64_t>(static_cast<int64_t>(kDqSlabBudget / std::max<size_t>(per_head, 1)), 1, heads);
  const size_t es = dtype_size(dt);
  Scratch slabs(*this, per_head * static_cast<size_t>(group));
  for (int64_t h0 = 0; h0 < heads; h0 += group) {
    const int64_t n = std::min(group, heads - h0);
    attn::BwdArgs g = a;
    auto at = [&](const void* p, int64_t rows) {
      return static_cast<const char*>(p) + static_cast<size_t>(h0 * rows * Dh) * es;
    };
    g.q = at(a.q, Tq);
    g.out = at(a.out, Tq);
    g.dout = at(a.dout, Tq);
    g.k = at(a.k, Tk);
    g.v = at(a.v, Tk);
    g.dk = const_cast<char*>(at(a.dk, Tk));
    g.dv = const_cast<char*>(at(a.dv, Tk));
    g.lse = a.lse + h0 * Tq;
    g.delta = a.delta + h0 * Tq;
    g.s.batch = n;
    g.s.heads = 1;
    g.dq_accum = slabs.as<float>();
    g.dq_tile_stride = n * Tq * Dh;
    CUDA_CHECK(cudaMemsetAsync(g.dq_accum, 0, per_head * static_cast<size_t>(n), stream_));
    if (dt == DType::bf16) attn::launch_bwd_bf16(g, stream_);
    else attn::launch_bwd_f32(g, stream_);
    const int64_t numel = n * Tq * Dh;
    void* dst = static_cast<char*>(dq) + static_cast<size_t>(h0 * Tq * Dh) * es;
    if (dt == DType::bf16)
      sum_slabs_kernel<bf16><<<grid_for(numel, kThreads, sm_count_), kThreads, 0, stream_>>>(
          static_cast<bf16*>(dst), g.dq_accum, k_tiles, numel);
    else
      sum_slabs_kernel<float><<<grid_for(numel, kThreads, sm_count_), kThreads, 0, stream_>>>(
          static_cast<float*>(dst), g.dq_accum, k_tiles, numel);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace ttt::cuda_impl
