// kernels/cuda/reduce.cuh — how reduce.cu lays a reduction out: the dims split into kept and
// reduced sets (coalesced), and the block shape, grid and splits of the launch. The multi-tensor
// sum of squares (multi_tensor.cu) plans every tensor with the same functions and accumulates
// with the same square_add, so it adds each tensor's elements in the order reduce() does.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"

namespace ttt::cuda_impl {

struct ReduceGeom {
  int nk = 0, nr = 0;
  int64_t ksize[kMaxDims], kin[kMaxDims], kout[kMaxDims];
  int64_t rsize[kMaxDims], rin[kMaxDims];
  int64_t K = 1, R = 1;

  __device__ __forceinline__ void kept_offsets(int64_t k, int64_t& in_off, int64_t& out_off) const {
    in_off = 0;
    out_off = 0;
    for (int d = nk - 1; d >= 0; --d) {
      const int64_t q = k / ksize[d], i = k - q * ksize[d];
      in_off += i * kin[d];
      out_off += i * kout[d];
      k = q;
    }
  }
  __device__ __forceinline__ int64_t reduced_offset(int64_t r) const {
    if (nr == 1) return r * rin[0];
    int64_t off = 0;
    for (int d = nr - 1; d >= 0; --d) {
      const int64_t q = r / rsize[d];
      off += (r - q * rsize[d]) * rin[d];
      r = q;
    }
    return off;
  }
};

// Host-side planning: classify, order and coalesce the dims once per call, so the kernel only
// decomposes an output index (kept dims) and, with several reduced dims, a reduced index.
inline ReduceGeom plan_reduce(const View& out, const View& in) {
  if (out.ndim != in.ndim) throw std::invalid_argument("reduce: output rank differs from input rank");
  ReduceGeom g;
  struct Dim { int64_t size, sin, sout; };
  Dim kept[kMaxDims], red[kMaxDims];
  int nk = 0, nr = 0;
  for (int d = 0; d < in.ndim; ++d) {
    if (in.size[d] == 1 && out.size[d] == 1) continue;
    if (out.size[d] == in.size[d]) kept[nk++] = {in.size[d], in.stride[d], out.stride[d]};
    else if (out.size[d] == 1) red[nr++] = {in.size[d], in.stride[d], 0};
    else throw std::invalid_argument("reduce: output size must be 1 or the input size in every dim");
  }
  // Reduced dims: largest stride first, so the innermost loop walks the smallest stride.
  std::stable_sort(red, red + nr, [](const Dim& a, const Dim& b) {
    return std::abs(a.sin) > std::abs(b.sin);
  });
  for (int i = 0; i < nk; ++i) {
    if (g.nk > 0 && g.kin[g.nk - 1] == kept[i].sin * kept[i].size && g.kout[g.nk - 1] == kept[i].sout * kept[i].size) {
      g.ksize[g.nk - 1] *= kept[i].size;
      g.kin[g.nk - 1] = kept[i].sin;
      g.kout[g.nk - 1] = kept[i].sout;
    } else {
      g.ksize[g.nk] = kept[i].size;
      g.kin[g.nk] = kept[i].sin;
      g.kout[g.nk] = kept[i].sout;
      g.nk++;
    }
    g.K *= kept[i].size;
  }
  for (int i = 0; i < nr; ++i) {
    if (g.nr > 0 && g.rin[g.nr - 1] == red[i].sin * red[i].size) {
      g.rsize[g.nr - 1] *= red[i].size;
      g.rin[g.nr - 1] = red[i].sin;
    } else {
      g.rsize[g.nr] = red[i].size;
      g.rin[g.nr] = red[i].sin;
      g.nr++;
    }
    g.R *= red[i].size;
  }
  return g;
}

// acc + v*v as one explicitly rounded FMA: written out rather than left to the compiler's
// contraction, so reduce() and the multi-tensor sum of squares round alike.
template <class A> __device__ __forceinline__ A square_add(A acc, A v) {
  if constexpr (std::is_same_v<A, float>) return __fmaf_rn(v, v, acc);
  else if constexpr (std::is_same_v<A, double>) return __fma_rn(v, v, acc);
  else return acc + v * v;
}

// Block shape, grid and splitting of the reduced range of one reduce call; the multi-tensor sum
// of squares plans each tensor with it too, so both walk a tensor in the same order.
struct ReduceLaunch {
  bool row_mode = true;
  dim3 block;
  int64_t grid_x = 1, splits = 1, r_chunk = 1;
};
inline ReduceLaunch plan_launch(const ReduceGeom& g, int sm_count) {
  ReduceLaunch L;
  // Row mode when the reduced elements are adjacent in memory (or nothing better exists);
  // column mode when neighbouring outputs are adjacent, so a warp reads 32 consecutive values.
  const bool inner_reduced = g.nr > 0 && g.rin[g.nr - 1] == 1;
  const bool inner_kept = g.nk > 0 && g.kin[g.nk - 1] == 1;
  // Short reductions: one thread per output (column mode with a single lane).
  L.row_mode = g.R > 16 && (inner_reduced || !inner_kept);
  int64_t outputs_per_block;
  if (L.row_mode) {
    L.block.x = static_cast<unsigned>(std::clamp(next_pow2(ceil_div(g.R, 4)), 32, 512));
    L.block.y = std::max(1u, 256u / L.block.x);
    outputs_per_block = L.block.y;
  } else {
    L.block.x = 32;
    L.block.y = g.R <= 16 ? 1u : static_cast<unsigned>(std::clamp(next_pow2(ceil_div(g.R, 8)), 1, 16));
    outputs_per_block = 32;
  }
  const int nlanes = L.row_mode ? L.block.x : L.block.y;
  L.grid_x = ceil_div(g.K, outputs_per_block);
  // Split the reduced range when the outputs alone leave the GPU mostly idle.
  const int64_t target_threads = int64_t{sm_count} * 2048;
  const int64_t threads = L.grid_x * L.block.x * L.block.y;
  int64_t splits = 1;
  if (threads < target_threads && g.R >= int64_t{nlanes} * 64)
    splits = std::min<int64_t>({65535, ceil_div(target_threads, threads), ceil_div(g.R, int64_t{nlanes} * 32)});
  L.r_chunk = std::max<int64_t>(1, ceil_div(g.R, splits));
  L.splits = std::max<int64_t>(1, ceil_div(g.R, L.r_chunk));
  return L;
}

}  // namespace ttt::cuda_impl
