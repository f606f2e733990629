// kernels/cuda/attention.cu — the CUDA backend's fused attention (backend.h, AttentionShape):
// dispatch to the bf16 tensor-core kernels (attention_fwd.cu, attention_bwd.cu) or the float32
// CUDA-core kernels (attention_f32.cu), plus the two small kernels around the backward:
//   D_i = rowsum(dout_i ∘ out_i) in float32 (read by every key tile of the backward), and
//   dq = dq_accum (float32 atomics target) converted to bf16.
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

}  // namespace ttt::cuda_impl
