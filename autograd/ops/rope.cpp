// autograd/ops/rope.cpp — rotary position embedding of interleaved pairs as one op (one kernel).
//
//   y[2i]   = x[2i] c_ti − x[2i+1] s_ti          c_ti = cos[t, i], s_ti = sin[t, i],
//   y[2i+1] = x[2i] s_ti + x[2i+1] c_ti          t = the index of the pair along time_dim
// Each pair is multiplied by the rotation R(θ_ti), so y = R x and dx = Rᵀ dy = R(−θ) dy: the
// backward is the same op with `inverse` flipped, i.e. itself differentiable (gradients of any
// order, no composite fallback needed). The tables are constants (no gradient), as in every
// RoPE: they depend only on positions and theta. Nothing is saved.
//
// x may be any strided view (e.g. a [B, T, H, D] projection seen as [B, H, T, D]); the output is
// a fresh tensor of x's shape and dtype, written in the same pass: contiguous, or, when asked
// (keep_layout), dense in x's memory order (kc::memory_order_strides). The backward writes dx dense
// in x's memory order, so that the gradient of the [B, T, H, D] projection is contiguous again and
// merging heads is a free view. bf16 is rotated in float32 (the tables' type) and rounded once. Layers build and cache the tables
// (layers/rope.h); the composite formula this replaces is tested against it in
// tests/test_layers_basic.cpp ("RoPE: fused op = composite").
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

// The op with the output laid out with `strides` (dense permuted) when given, else contiguous.
Tensor rope_impl(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t time_dim, bool inverse,
                 const Shape* strides) {
  const char* op = "rope";
  kc::check_floating(x, op);
  check_defined(op, cos, "cos");
  check_defined(op, sin, "sin");
  check_same_device(op, x, cos);
  check_same_device(op, x, sin);
  const int nd = x.dim();
  if (nd < 2 || x.shape()[nd - 1] % 2 != 0)
    throw std::invalid_argument("rope: expected rank >= 2 with an even last dim, got " + x.shape().str());
  const int td = wrap_dim(time_dim, nd, op);
  if (td == nd - 1) throw std::invalid_argument("rope: time_dim must not be the feature (last) dim");
  const int64_t T = x.shape()[td], half = x.shape()[nd - 1] / 2;
  const DType tdt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  if (cos.shape() != Shape{T, half} || sin.shape() != Shape{T, half} || cos.dtype() != tdt || sin.dtype() != tdt)
    throw std::invalid_argument("rope: cos and sin must be " + std::string(dtype_name(tdt)) + " [" +
                                std::to_string(T) + ", " + std::to_string(half) + "] for x " + x.shape().str() +
                                " (time_dim " + std::to_string(td) + "), got " + cos.str() + " and " + sin.str());
  if (cos.requires_grad() || sin.requires_grad())
    throw std::invalid_argument("rope: the cos/sin tables are constants and must not require grad");
  const Tensor c = kc::contiguous(cos), s = kc::contiguous(sin);
  Tensor y = strides ? kc::empty_dense(x.shape(), *strides, x.dtype(), x.device())
                     : empty(x.shape(), opts(x.dtype(), x.device()));
  if (y.numel()) backend(x.device()).rope(y.view(), x.view(), c.view(), s.view(), td, inverse);
  if (needs_grad({&x})) {
    // dx densely in x's memory order (x's own layout when that is a dense permutation, contiguous
    // for a contiguous x; only the strides are kept, not x), so that the views x was made from stay
    // views on the way back.
    record("rope", {x}, {y}, {},
           [c, s, td, inverse, xs = kc::memory_order_strides(x)](BackwardCtx&, const tensor_list& g) {
             return tensor_list{rope_impl(g[0], c, s, td, !inverse, &xs)};
           });
  }
  return y;
}

}  // namespace

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t time_dim, bool inverse, bool keep_layout) {
  const Shape xs = keep_layout && x.defined() ? kc::memory_order_strides(x) : Shape{};
  return rope_impl(x, cos, sin, time_dim, inverse, xs.empty() ? nullptr : &xs);
}

}  // namespace ttt
