// kernels/cpu/index.cpp — index_select (gather along a dim) and index_add (its scatter-add
// transpose, the backward of embedding lookups).
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/strided.h"

namespace ttt::cpu_impl {

namespace {
void check_index(int64_t idx, int64_t n, const char* op) {
  if (idx < 0 || idx >= n)
    throw std::out_of_range(std::string(op) + ": index " + std::to_string(idx) + " out of range [0, " +
                            std::to_string(n) + ")");
}
}  // namespace

void CpuBackend::index_select(const View& out, const View& in, int dim, const View& index) {
  if (out.dtype != in.dtype) throw std::invalid_argument("index_select: dtypes differ");
  const int64_t n_idx = index.numel(), n_in = in.size[dim];
  std::vector<int64_t> idx(static_cast<size_t>(n_idx));
  for (int64_t i = 0; i < n_idx; ++i) {
    idx[i] = load_index(index.data, index.dtype, i * (index.ndim ? index.stride[0] : 0));
    check_index(idx[i], n_in, "index_select");
  }
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* o = static_cast<T*>(out.data);
    const T* x = static_cast<const T*>(in.data);
    View oslice = out, islice = in;
    oslice.size[dim] = 1;
    islice.size[dim] = 1;
    const int64_t os = out.stride[dim], is = in.stride[dim];
#pragma omp parallel for schedule(static) if (n_idx * out.numel() / std::max<int64_t>(1, n_idx) >= kParallelGrain && n_idx > 1)
    for (int64_t i = 0; i < n_idx; ++i) {
      T* ob = o + i * os;
      const T* xb = x + idx[i] * is;
      for_each_element<2>(oslice, {&oslice, &islice},
                          [&](const std::array<int64_t, 2>& off) { ob[off[0]] = xb[off[1]]; });
    }
  });
}

void CpuBackend::index_add(const View& out, int dim, const View& index, const View& src) {
  if (out.dtype != src.dtype) throw std::invalid_argument("index_add: dtypes differ");
  const int64_t n_idx = index.numel(), n_out = out.size[dim];
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = decltype(to_compute(T{}));
    T* o = static_cast<T*>(out.data);
    const T* s = static_cast<const T*>(src.data);
    View oslice = out, sslice = src;
    oslice.size[dim] = 1;
    sslice.size[dim] = 1;
    const int64_t os = out.stride[dim], ss = src.stride[dim];
    // Sequential over indices: duplicates accumulate deterministically.
    for (int64_t i = 0; i < n_idx; ++i) {
      int64_t j = load_index(index.data, index.dtype, i * (index.ndim ? index.stride[0] : 0));
      check_index(j, n_out, "index_add");
      T* ob = o + j * os;
      const T* sb = s + i * ss;
      for_each_element<2>(oslice, {&oslice, &sslice}, [&](const std::array<int64_t, 2>& off) {
        ob[off[0]] = from_compute<T>(static_cast<C>(to_compute(ob[off[0]]) + to_compute(sb[off[1]])));
      });
    }
  });
}

}  // namespace ttt::cpu_impl
