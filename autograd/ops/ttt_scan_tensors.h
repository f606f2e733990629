// autograd/ops/ttt_scan_tensors.h — how the fused TTT scan ops (ttt_linear_scan.cpp,
// ttt_mlp_scan.cpp) hand Tensors to their kernels: [B, H, T, f] views, aligned rows, and output
// buffers in the layout the layer merges heads from for free. Not an op itself.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/ttt_linear_decode.h"  // HeadBlocks
#include "kernels/ttt_linear_scan.h"    // BHTView

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
// A [B, H, rows, c] state tensor with each head's trailing [rows, c] block contiguous (a broadcast over
// the batch stays a view), or a contiguous copy; `aligned`: also 16-byte aligned blocks and strides
// (kernels that read rows in 16-byte pieces). Undefined stays undefined.
inline Tensor head_blocks_unit(const Tensor& t, bool aligned = false) {
  if (!t.defined()) return t;
  const auto& s = t.strides();
  const int64_t per16 = 16 / static_cast<int64_t>(dtype_size(t.dtype()));
  const bool dense = s[3] == 1 && (s[2] == t.shape()[3] || t.shape()[2] == 1);
  const bool al = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && s[0] % per16 == 0 && s[1] % per16 == 0 &&
                  s[2] % per16 == 0;
  return dense && (!aligned || al) ? t : kc::contiguous(t);
}
inline HeadBlocks head_blocks(const Tensor& t) {
  return t.defined() ? HeadBlocks{t.data_ptr(), t.strides()[0], t.strides()[1]} : HeadBlocks{};
}
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
// A gradient buffer for input x (of dtype dt, x's own by default): x's layout when dense permuted
// with a unit last stride.
inline Tensor grad_like(const Tensor& x, std::optional<DType> dt = std::nullopt) {
  const DType d = dt.value_or(x.dtype());
  if (kc::dense_permuted(x) && x.strides().back() == 1) return kc::empty_like_layout(x, d);
  return empty_heads_last(x.shape(), d, x.device());
}
// x as dtype dt, not taped: x itself when it has it, else a copy in x's layout when x is a dense
// permuted view (heads of a projection, heads-last outputs: merging heads stays a free view),
// contiguous otherwise.
inline Tensor as_dtype(const Tensor& x, DType dt) {
  return !x.defined() || x.dtype() == dt ? x : kc::cast_in_layout(x, dt);
}
// Whether XQ, XK, XV of dtype `qkv` go with the scan's other inputs of dtype `others`: the same
// dtype, or bf16 storage of float32 (an autocast model's projections).
inline bool qkv_dtype_fits(DType qkv, DType others) {
  return qkv == others || (qkv == DType::bf16 && others == DType::f32);
}
// Throws, naming op, unless qkv_dtype_fits.
inline void check_qkv_dtype(const char* op, DType qkv, DType others) {
  if (!qkv_dtype_fits(qkv, others))
    throw std::invalid_argument(std::string(op) + ": XQ, XK, XV must have the other inputs' dtype, or be bf16 with "
                                "float32 others; got " + dtype_name(qkv) + " and " + dtype_name(others));
}
// fn on the inputs with XQ, XK, XV (x[0..2]) cast to dtype `to`, differentiably; its first result
// (the output) cast back to XQ's dtype: the float32 stand-in of a call with bf16-stored XQ/XK/XV
// (a CPU reference, the composite twin).
inline tensor_list with_qkv_as(const tensor_list& x, DType to, const std::function<tensor_list(const tensor_list&)>& fn) {
  tensor_list y = x;
  for (int i = 0; i < 3; ++i) y[i] = to_dtype(x[i], to);
  tensor_list r = fn(y);
  r[0] = to_dtype(r[0], x[0].dtype());
  return r;
}

}  // namespace ttt::scan_tensors
