// autograd/ops/where.cpp — elementwise select, broadcasting cond, a and b together.
//
//   y = cond != 0 ? a : b
//   da = sum_to(where(cond, dy, 0), a.shape),  db = sum_to(where(cond, 0, dy), b.shape)
// cond (any dtype) is not differentiable. Saved: cond. The backward uses where itself, so it
// is differentiable w.r.t. dy (gradients of gradients).
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond, "cond");
  check_defined("where", a);
  check_defined("where", b);
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  check_same_dtype("where", a, b);
  Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor y = empty(s, opts(a.dtype(), a.device()));
  if (y.numel())
    backend(a.device()).where(y.view(), kc::broadcast_view(cond, s), kc::broadcast_view(a, s),
                              kc::broadcast_view(b, s));
  if (needs_grad({&a, &b})) {
    const Shape sa = a.shape(), sb = b.shape();
    record("where", {a, b}, {y}, {cond.detach()}, [sa, sb](BackwardCtx& c, const tensor_list& g) {
      const Tensor& dy = g[0];
      Tensor zero = zeros({}, opts(dy.dtype(), dy.device()));
      tensor_list out(2);
      if (c.needs(0)) out[0] = sum_to(where(c.saved[0], dy, zero), sa);
      if (c.needs(1)) out[1] = sum_to(where(c.saved[0], zero, dy), sb);
      return out;
    });
  }
  return y;
}

}  // namespace ttt
