// kernels/cpu/strided.h — iteration over N operands that share a shape but have their own
// strides (the CPU side of `View`). Dimensions are first coalesced (adjacent dims that are
// contiguous in every operand merge into one), then the outer dims are walked with OpenMP when
// the tensor is large enough to pay for the threads, and the last dim is a plain strided loop.
#pragma once

#include <array>
#include <cstdint>

#include "kernels/backend.h"

namespace ttt::cpu_impl {

constexpr int64_t kParallelGrain = 32768;  // elements below which we stay on one thread

template <int N> struct StridedLayout {
  int ndim = 0;
  int64_t size[kMaxDims];
  int64_t stride[N][kMaxDims];
};

// Coalesces the shape `shape` with the strides of each operand.
template <int N> StridedLayout<N> coalesce(const View& shape, const std::array<const View*, N>& ops) {
  StridedLayout<N> L;
  for (int d = 0; d < shape.ndim; ++d) {
    if (shape.size[d] == 1) continue;
    int k = L.ndim;
    bool merge = k > 0;
    for (int o = 0; o < N && merge; ++o)
      merge = L.stride[o][k - 1] == ops[o]->stride[d] * shape.size[d];
    if (merge) {
      L.size[k - 1] *= shape.size[d];
      for (int o = 0; o < N; ++o) L.stride[o][k - 1] = ops[o]->stride[d];
    } else {
      L.size[k] = shape.size[d];
      for (int o = 0; o < N; ++o) L.stride[o][k] = ops[o]->stride[d];
      L.ndim++;
    }
  }
  if (L.ndim == 0) {  // a single element
    L.ndim = 1;
    L.size[0] = 1;
    for (int o = 0; o < N; ++o) L.stride[o][0] = 0;
  }
  return L;
}

// Calls f(offsets, inner_len, inner_strides) for every row of the coalesced layout, where
// offsets[o] is the element offset of operand o at the row start.
template <int N, class F> void for_each_row(const StridedLayout<N>& L, F&& f) {
  const int nd = L.ndim;
  const int64_t inner = L.size[nd - 1];
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; ++d) rows *= L.size[d];
  std::array<int64_t, N> inner_stride;
  for (int o = 0; o < N; ++o) inner_stride[o] = L.stride[o][nd - 1];
  auto body = [&](int64_t r) {
    std::array<int64_t, N> off{};
    int64_t rem = r;
    for (int d = nd - 2; d >= 0; --d) {
      int64_t i = rem % L.size[d];
      rem /= L.size[d];
      for (int o = 0; o < N; ++o) off[o] += i * L.stride[o][d];
    }
    f(off, inner, inner_stride);
  };
  if (rows * inner >= kParallelGrain && rows > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) body(r);
  } else {
    for (int64_t r = 0; r < rows; ++r) body(r);
  }
}

// Calls f(index, offsets) for every element; for large inner dims splits them across threads.
template <int N, class F> void for_each_element(const View& shape, const std::array<const View*, N>& ops, F&& f) {
  auto L = coalesce<N>(shape, ops);
  if (L.ndim == 1 && L.size[0] >= kParallelGrain) {
    const int64_t n = L.size[0];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      std::array<int64_t, N> off;
      for (int o = 0; o < N; ++o) off[o] = i * L.stride[o][0];
      f(off);
    }
    return;
  }
  for_each_row<N>(L, [&](const std::array<int64_t, N>& base, int64_t len, const std::array<int64_t, N>& st) {
    std::array<int64_t, N> off = base;
    for (int64_t i = 0; i < len; ++i) {
      f(off);
      for (int o = 0; o < N; ++o) off[o] += st[o];
    }
  });
}

}  // namespace ttt::cpu_impl
