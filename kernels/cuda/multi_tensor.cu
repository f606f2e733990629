// kernels/cuda/multi_tensor.cu — the sums of squares of many tensors in two launches (SumSqMulti,
// kernels/multi_tensor.h): what the gradient-norm clipping of a training step needs.
//
// Bit for bit, each tensor's sum is what Backend::reduce(sum_sq) of the whole tensor gives
// (reduce.cu): every tensor is planned by the same plan_reduce / plan_launch, so it is cut into
// the same splits, each split is added by the same number of lanes in the same element order
// (square_add: one rounded FMA per element), the lanes are combined by the same xor-shuffle trees,
// and the splits' partials are added in index order by a second kernel. reduce() runs a split in a
// block of `lanes` threads (32..512) — or, for <= 16 elements, on one thread; here every block has
// 512 threads and the ones beyond the split's lanes hold 0, which the trees add exactly
// (sums of squares are >= +0, and x + 0 == x).
//
// As in random_adamw.cu's AdamW, a launch's tensor table travels as the kernel's parameters.
#include <vector>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/multi_tensor.h"

namespace ttt::cuda_impl {

namespace {

constexpr int kSumSqTensors = 512;
constexpr int kSumSqThreads = 512;  // the widest lane group reduce() uses

struct SumSqTable {
  const void* data[kSumSqTensors];
  float* out[kSumSqTensors];
  int64_t n[kSumSqTensors];
  int64_t r_chunk[kSumSqTensors];      // elements per split
  uint32_t block_end[kSumSqTensors];   // splits (= blocks) of tensors 0..i together
  uint16_t lanes[kSumSqTensors];       // threads adding one split: 32..512, or 1 (short tensors)
  uint8_t bf16[kSumSqTensors];         // elements are bf16 (else float32)
  int count;
};
static_assert(sizeof(SumSqTable) + sizeof(void*) <= 32764, "kernel parameters are limited to 32 KB");

__device__ __forceinline__ int tensor_of_block(const SumSqTable& t, uint32_t blk) {
  int lo = 0, hi = t.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (t.block_end[mid] <= blk) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// One split of one tensor per block: partial[blockIdx.x] = its sum of squares.
__global__ void __launch_bounds__(kSumSqThreads) sum_sq_split_kernel(const __grid_constant__ SumSqTable t,
                                                                     float* __restrict__ partial) {
  __shared__ float warp_sums[kSumSqThreads / 32];
  const uint32_t blk = blockIdx.x;
  const int i = tensor_of_block(t, blk);
  const int64_t split = blk - (i ? t.block_end[i - 1] : 0u);
  const int64_t r0 = split * t.r_chunk[i];
  const int64_t r1 = r0 + t.r_chunk[i] < t.n[i] ? r0 + t.r_chunk[i] : t.n[i];
  const int nlanes = t.lanes[i];
  const int lane = threadIdx.x;
  float acc = 0.0f;
  auto add_split = [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(t.data[i]);
    auto add = [&](T x) { acc = square_add(acc, static_cast<float>(to_compute(x))); };
    int64_t r = r0 + lane;
    // reduce_kernel's loop: four loads in flight, added in element order.
    for (; r + 3 * nlanes < r1; r += 4 * nlanes) {
      const T x0 = p[r], x1 = p[r + nlanes], x2 = p[r + 2 * nlanes], x3 = p[r + 3 * nlanes];
      add(x0);
      add(x1);
      add(x2);
      add(x3);
    }
    for (; r < r1; r += nlanes) add(p[r]);
  };
  if (lane < nlanes) {
    if (t.bf16[i]) add_split(bf16{});
    else add_split(float{});
  }
  // reduce_kernel's row-mode combination: xor tree in each warp, then over the warp sums.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc = acc + __shfl_xor_sync(0xffffffffu, acc, o);
  if ((lane & 31) == 0) warp_sums[lane >> 5] = acc;
  __syncthreads();
  if (lane < 32) {
    acc = lane < kSumSqThreads / 32 ? warp_sums[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc = acc + __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) partial[blk] = acc;
  }
}

// One thread per tensor: its splits' partials in index order (reduce_finish_kernel's loop), or
// the single split's sum as it is (reduce_kernel writes that one directly).
__global__ void sum_sq_finish_kernel(const __grid_constant__ SumSqTable t, const float* __restrict__ partial) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= t.count) return;
  const uint32_t first = i ? t.block_end[i - 1] : 0u, end = t.block_end[i];
  float acc = partial[first];
  if (end - first > 1) {
    acc = 0.0f;
    for (uint32_t s = first; s < end; ++s) acc = acc + partial[s];
  }
  *t.out[i] = acc;
}

}  // namespace

void sum_sq_multi(Backend& be0, const SumSqMulti& c) {
  CudaBackend& be = cuda_backend_of(be0, "sum_sq_multi");
  // The plan reduce() makes for each tensor as a float32 [n] -> [1] reduction (a bf16 gradient is
  // reduced through its float32 copy: same geometry, same float values).
  std::vector<ReduceLaunch> plans;
  plans.reserve(c.count);
  for (size_t i = 0; i < c.count; ++i) {
    View in, out;
    in.dtype = out.dtype = DType::f32;
    in.ndim = out.ndim = 1;
    in.size[0] = c.tensors[i].n;
    in.stride[0] = 1;
    out.size[0] = 1;
    out.stride[0] = 1;
    plans.push_back(plan_launch(plan_reduce(out, in), be.sm_count()));
    const ReduceLaunch& L = plans.back();
    if (L.grid_x != 1 || (!L.row_mode && L.block.y != 1))
      throw std::logic_error("sum_sq_multi: unexpected reduction plan for " + std::to_string(c.tensors[i].n) + " elements");
  }
  auto table = std::make_unique<SumSqTable>();
  SumSqTable& t = *table;
  launch_in_tables(
      c.count, kSumSqTensors, [&](size_t i) { return plans[i].splits; },
      [&](int k, size_t i, int64_t blocks_end) {
        const SumSqTensor& x = c.tensors[i];
        t.data[k] = x.data;
        t.out[k] = x.out;
        t.n[k] = x.n;
        t.r_chunk[k] = plans[i].r_chunk;
        t.block_end[k] = static_cast<uint32_t>(blocks_end);
        t.lanes[k] = static_cast<uint16_t>(plans[i].row_mode ? plans[i].block.x : 1);
        t.bf16[k] = x.dtype == DType::bf16;
      },
      [&](int entries, int64_t blocks) {
        t.count = entries;
        CudaBackend::Scratch partial(be, static_cast<size_t>(blocks) * sizeof(float));
        sum_sq_split_kernel<<<static_cast<unsigned>(blocks), kSumSqThreads, 0, be.stream()>>>(t, partial.as<float>());
        CUDA_CHECK_LAUNCH();
        sum_sq_finish_kernel<<<static_cast<unsigned>(ceil_div(entries, kThreads)), kThreads, 0, be.stream()>>>(
            t, partial.as<float>());
        CUDA_CHECK_LAUNCH();
      });
}

}  // namespace ttt::cuda_impl
