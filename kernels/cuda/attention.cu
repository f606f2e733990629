// kernels/cuda/attention.cu — the CUDA backend's fused attention (backend.h, AttentionShape):
// dispatch to the bf16 tensor-core kernels (attention_fwd.cu, attention_bwd.cu) or the float32
// CUDA-core kernels (attention_f32.cu), plus the small kernels around the backward:
//   D_i = rowsum(dout_i ∘ out_i) in float32 (read by every key tile of the backward),
//   dq = dq_accum (float32 atomics target) stored in dq's layout and dtype, and, in deterministic
//   mode (backend.h), dq = the key tiles' dQ slabs added in order (attention_bwd_ordered).
// Every operand is read and written in the layouts of its AttentionShape (AttentionLayout).
// Reference: kernels/cpu/attention.cpp; test: tests/test_cuda_attention.cpp.
//
// Supported: bf16 with head_dim % 8 == 0 (16-byte rows) and float32, head_dim in [1, 128]. The
// autograd op asks attention_supported() and otherwise takes the composite path (matmul,
// masked_fill, softmax) on the GPU, with a one-time message.
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_backend.cuh"

namespace ttt::cuda_impl {

namespace {

// One warp per row: D_i = Σ_d dout[i,d] · out[i,d], float32; rows r = bh · Tq + i.
template <class T>
__global__ void attention_delta_kernel(float* __restrict__ delta, const T* __restrict__ dout, const T* __restrict__ out,
                                       AttentionShape s) {
  const int lane = threadIdx.x % 32, D = static_cast<int>(s.head_dim);
  const int64_t rows = s.batch * s.heads * s.q_len, warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    const int64_t bh = r / s.q_len, i = r % s.q_len;
    const T* dr = dout + s.dout.row(bh, s.heads, i);
    const T* orow = out + s.out.row(bh, s.heads, i);
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) acc += to_compute(dr[d]) * to_compute(orow[d]);
    acc = warp_sum(acc);
    if (lane == 0) delta[r] = acc;
  }
}

// dq (layout s.dq) of heads [bh_begin, bh_begin + n) = Σ_t slabs[t · slab + e] over `tiles` slabs
// in increasing order, e the element's index in the contiguous float32 [n, Tq, D] accumulator (one
// slab: the atomics' accumulator converted; several: the deterministic key tiles' partials). One
// warp per row: the index arithmetic once per row, the row's D values read and written coalesced.
template <class T>
__global__ void store_dq_kernel(T* __restrict__ dq, const float* __restrict__ slabs, int64_t tiles, AttentionShape s,
                                int64_t bh_begin, int64_t n) {
  const int lane = threadIdx.x % 32, D = static_cast<int>(s.head_dim);
  const int64_t rows = n * s.q_len, slab = rows * D, warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    T* dst = dq + s.dq.row(bh_begin + r / s.q_len, s.heads, r % s.q_len);
    for (int d = lane; d < D; d += 32) {
      float acc = 0.f;
      for (int64_t t = 0; t < tiles; ++t) acc += slabs[t * slab + r * D + d];
      if constexpr (std::is_same_v<T, float>) dst[d] = acc;
      else dst[d] = bf16::from_float(acc);
    }
  }
}

// The slabs of the deterministic dQ: at most this many bytes at once (heads are processed in
// groups to stay under it; one head may exceed it).
constexpr size_t kDqSlabBudget = size_t{512} << 20;

void check_call(const CudaBackend& be, const AttentionShape& s, DType dt, std::initializer_list<const void*> bufs,
                const char* who) {
  if (!be.attention_supported(s.head_dim, dt))
    throw std::invalid_argument(std::string(who) + " on " + be.device().str() + ": head_dim " +
                                std::to_string(s.head_dim) + " " + dtype_name(dt) +
                                " is not supported (bfloat16 needs head_dim % 8 == 0; both need head_dim <= 128)");
  for (const void* p : bufs)
    if (p && !is_aligned(p, 16))
      throw std::invalid_argument(std::string(who) + ": buffers must be 16-byte aligned");
  // bf16 rows are read and written 16 bytes at a time; row strides are 32-bit in the kernels.
  const int64_t unit = dt == DType::bf16 ? 8 : 1;
  for (const AttentionLayout& l : {s.q, s.k, s.v, s.out, s.dout, s.dq, s.dk, s.dv}) {
    if (l.sb % unit || l.sh % unit || l.st % unit)
      throw std::invalid_argument(std::string(who) + ": bfloat16 row strides must be multiples of 8 elements");
    if (l.st < 0 || l.st >= (int64_t{1} << 31))
      throw std::invalid_argument(std::string(who) + ": row strides must be in [0, 2^31) elements, got " +
                                  std::to_string(l.st));
  }
}

}  // namespace

bool CudaBackend::attention_supported(int64_t head_dim, DType dt) const {
  if (head_dim < 1 || head_dim > 128) return false;
  if (dt == DType::bf16) return head_dim % 8 == 0;
  return dt == DType::f32;
}

void CudaBackend::attention_fwd(void* out, float* lse, const void* q, const void* k, const void* v,
                                const AttentionShape& shape, DType dt) {
  const AttentionShape s = shape.resolved();
  check_call(*this, s, dt, {out, q, k, v}, "attention");
  if (s.batch * s.heads * s.q_len == 0) return;
  activate();
  attn::FwdArgs a{q, k, v, out, lse, s};
  if (dt == DType::bf16) attn::launch_fwd_bf16(a, stream_);
  else attn::launch_fwd_f32(a, stream_);
}

void CudaBackend::attention_bwd(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                                const void* v, const void* out, const float* lse, const AttentionShape& shape,
                                DType dt) {
  const AttentionShape s = shape.resolved();
  check_call(*this, s, dt, {dq, dk, dv, dout, q, k, v, out}, "attention backward");
  const int64_t heads = s.batch * s.heads, q_rows = heads * s.q_len;
  if (heads * s.kv_len == 0) return;
  activate();
  if (q_rows == 0) {  // no queries: nothing reaches k and v
    zero_rows(dk, s.dk, s, dt);
    zero_rows(dv, s.dv, s, dt);
    return;
  }
  Scratch delta(*this, q_rows * sizeof(float));
  const int threads = 256;
  const unsigned blocks = grid_for(q_rows * 32, threads, sm_count_);
  if (dt == DType::bf16)
    attention_delta_kernel<bf16><<<blocks, threads, 0, stream_>>>(delta.as<float>(), static_cast<const bf16*>(dout),
                                                                  static_cast<const bf16*>(out), s);
  else
    attention_delta_kernel<float><<<blocks, threads, 0, stream_>>>(delta.as<float>(), static_cast<const float*>(dout),
                                                                   static_cast<const float*>(out), s);
  CUDA_CHECK_LAUNCH();
  attn::BwdArgs a{q, k, v, out, dout, lse, delta.as<float>(), nullptr, dk, dv, s};
  a.bh_count = heads;
  if (deterministic()) {
    attention_bwd_ordered(dq, a, dt);
    return;
  }
  const int64_t dq_numel = q_rows * s.head_dim;
  Scratch dq_accum(*this, dq_numel * sizeof(float));
  a.dq_accum = dq_accum.as<float>();
  CUDA_CHECK(cudaMemsetAsync(a.dq_accum, 0, dq_numel * sizeof(float), stream_));
  if (dt == DType::bf16) attn::launch_bwd_bf16(a, stream_);
  else attn::launch_bwd_f32(a, stream_);
  store_dq(dq, a, 1, dt);
}

// dq of the launch's heads from its float32 accumulator (tiles slabs of it, added in order).
void CudaBackend::store_dq(void* dq, const attn::BwdArgs& a, int64_t tiles, DType dt) {
  const unsigned blocks = grid_for(a.bh_count * a.s.q_len * 32, kThreads, sm_count_);  // a warp per row
  if (dt == DType::bf16)
    store_dq_kernel<bf16><<<blocks, kThreads, 0, stream_>>>(static_cast<bf16*>(dq), a.dq_accum, tiles, a.s,
                                                            a.bh_begin, a.bh_count);
  else
    store_dq_kernel<float><<<blocks, kThreads, 0, stream_>>>(static_cast<float*>(dq), a.dq_accum, tiles, a.s,
                                                             a.bh_begin, a.bh_count);
  CUDA_CHECK_LAUNCH();
}

// Zeros the kv_len rows of every head of a [B, H, Tk, D] buffer in layout l.
void CudaBackend::zero_rows(void* p, const AttentionLayout& l, const AttentionShape& s, DType dt) {
  const size_t es = dtype_size(dt);
  for (int64_t bh = 0; bh < s.batch * s.heads; ++bh)
    CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(p) + l.row(bh, s.heads, 0) * es, l.st * es, 0,
                                 s.head_dim * es, s.kv_len, stream_));
}

// Deterministic mode: the backward runs over groups of heads; each key tile writes its dQ partial
// to a slab of its own (no atomics) and store_dq adds the slabs in key-tile order. Memory: key
// tiles × group heads × Tq × Dh float32 (bounded by kDqSlabBudget per group).
void CudaBackend::attention_bwd_ordered(void* dq, const attn::BwdArgs& a, DType dt) {
  const AttentionShape& s = a.s;
  const int64_t heads = s.batch * s.heads, Dh = s.head_dim, Tq = s.q_len, Tk = s.kv_len;
  const int64_t tile = dt == DType::bf16 ? attn::bwd_key_tile_bf16(Dh) : attn::bwd_key_tile_f32();
  const int64_t k_tiles = (Tk + tile - 1) / tile;
  const size_t per_head = static_cast<size_t>(k_tiles * Tq * Dh) * sizeof(float);
  const int64_t group = std::clamp<int64_t>(static_cast<int64_t>(kDqSlabBudget / std::max<size_t>(per_head, 1)), 1, heads);
  Scratch slabs(*this, per_head * static_cast<size_t>(group));
  for (int64_t h0 = 0; h0 < heads; h0 += group) {
    attn::BwdArgs g = a;
    g.bh_begin = h0;
    g.bh_count = std::min(group, heads - h0);
    g.dq_accum = slabs.as<float>();
    g.dq_tile_stride = g.bh_count * Tq * Dh;
    CUDA_CHECK(cudaMemsetAsync(g.dq_accum, 0, per_head * static_cast<size_t>(g.bh_count), stream_));
    if (dt == DType::bf16) attn::launch_bwd_bf16(g, stream_);
    else attn::launch_bwd_f32(g, stream_);
    store_dq(dq, g, k_tiles, dt);
  }
}

}  // namespace ttt::cuda_impl
