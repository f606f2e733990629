// autograd/ops/ttt_scan_tensors.h — how the fused TTT scan ops (ttt_linear_scan.cpp,
// ttt_mlp_scan.cpp) hand Tensors to their kernels: [B, H, T, f] views, aligned rows, and output
// buffers in the layout the layer merges heads from for free. Not an op itself.
#pragma once

#include <cstdint>

#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/ttt_linear_scan.h"  // BHTView

namespace ttt::scan_tensors {

// t as the kernels read it: unit stride in its last dim and 16-byte aligned rows (the CUDA kernels
// move rows 16 bytes at a time); a contiguous copy otherwise.
inline Tensor unit_last(const Tensor& t) {
  const auto& s = t.strides();
  const int64_t per16 = 16 / static_cast<int64_t>(dtype_size(t.dtype()));
  const bool aligned = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && s[0] % per16 == 0 &&
                       s[1] % per16 == 0 && s[2] % per16 == 0;
  return s.back() == 1 && aligned ? t : kc::contiguous(t);
}
inline BHTView bht(const Tensor& t) { return {t.data_ptr(), t.strides()[0], t.strides()[1], t.strides()[2]}; }
// The data of an already contiguous tensor (null when undefined).
inline void* ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
// A contiguous t, or undefined when t is.
inline Tensor contiguous_or_none(const Tensor& t) { return t.defined() ? kc::contiguous(t) : Tensor(); }
// An uninitialized tensor of t's shape (undefined when t is).
inline Tensor empty_or_none(const Tensor& t, const TensorOptions& o) { return t.defined() ? empty(t.shape(), o) : Tensor(); }

// A [B, H, T, f] tensor stored in [B, T, H, f] order.
inline Tensor empty_heads_last(const Shape& s, DType dt, Device dev) {
  Tensor m = empty({s[0], s[2], s[1], s[3]}, opts(dt, dev));
  return make_view(m, s, {m.strides()[0], m.strides()[2], m.strides()[1], 1}, 0);
}
// A gradient buffer for input x: x's layout when dense permuted with a unit last stride.
inline Tensor grad_like(const Tensor& x) {
  if (kc::dense_permuted(x) && x.strides().back() == 1) return kc::empty_like_layout(x, x.dtype());
  return empty_heads_last(x.shape(), x.dtype(), x.device());
}

}  // namespace ttt::scan_tensors
