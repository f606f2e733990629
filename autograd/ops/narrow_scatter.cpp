// autograd/ops/narrow_scatter.cpp — zeros of a given shape with x written into a slice:
// the backward of narrow (and of split/chunk).
//
//   y = zeros(shape); y.narrow(dim, start, x.size(dim)) = x
//   dx = narrow(dy, dim, start, x.size(dim))
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor narrow_scatter(const Tensor& x, const Shape& shape, int64_t dim, int64_t start) {
  check_defined("narrow_scatter", x);
  int d = wrap_dim(dim, x.dim(), "narrow_scatter");
  const int64_t len = x.shape()[d];
  bool ok = shape.size() == x.dim() && start >= 0 && start + len <= shape[d];
  for (int i = 0; ok && i < x.dim(); ++i)
    if (i != d && shape[i] != x.shape()[i]) ok = false;
  if (!ok)
    throw std::invalid_argument("narrow_scatter: " + x.shape().str() + " does not fit into " + shape.str() +
                                " at dim " + std::to_string(d) + ", offset " + std::to_string(start));
  Tensor y = zeros(shape, opts(x.dtype(), x.device()));
  if (x.numel()) {
    Tensor slot = make_view(y, x.shape(), y.strides(), start * y.strides()[d]);
    backend(x.device()).unary(UnaryOp::copy, slot.view(), x.view());
  }
  if (needs_grad({&x})) {
    record("narrow_scatter", {x}, {y}, {}, [d, start, len](BackwardCtx&, const tensor_list& g) {
      return tensor_list{narrow(g[0], d, start, len)};
    });
  }
  return y;
}

}  // namespace ttt
