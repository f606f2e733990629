// autograd/ops/cat.cpp — concatenation along an existing dim.
//
//   y = [x_0 | x_1 | ... ] along dim     (all x_i: same rank, dtype, device; equal sizes
//                                          except along dim)
//   dx_i = narrow(dy, dim, offset_i, x_i.size(dim))
// Nothing saved (only the offsets). narrow's backward is narrow_scatter, so this composes to
// any order.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor cat(const tensor_list& xs, int64_t dim) {
  if (xs.empty()) throw std::invalid_argument("cat: expected at least one tensor");
  for (const Tensor& x : xs) check_defined("cat", x);
  const Tensor& first = xs[0];
  const int d = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  std::vector<int64_t> offsets;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check_same_device("cat", first, x);
    check_same_dtype("cat", first, x);
    bool ok = x.dim() == first.dim();
    for (int k = 0; ok && k < x.dim(); ++k)
      if (k != d && x.shape()[k] != first.shape()[k]) ok = false;
    if (!ok)
      throw std::invalid_argument("cat: tensor " + std::to_string(i) + " has shape " + x.shape().str() +
                                  ", which does not match tensor 0 " + first.shape().str() +
                                  " in every dim except dim " + std::to_string(d));
    offsets.push_back(out_shape[d]);
    out_shape[d] += x.shape()[d];
  }
  Tensor y = empty(out_shape, opts(first.dtype(), first.device()));
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i].numel() == 0) continue;
    Tensor slot = make_view(y, xs[i].shape(), y.strides(), offsets[i] * y.strides()[d]);
    backend(y.device()).unary(UnaryOp::copy, slot.view(), xs[i].view());
  }
  if (needs_grad(xs)) {
    std::vector<int64_t> lengths;
    for (const Tensor& x : xs) lengths.push_back(x.shape()[d]);
    record("cat", xs, {y}, {}, [d, offsets, lengths](BackwardCtx& c, const tensor_list& g) {
      tensor_list dx(offsets.size());
      for (size_t i = 0; i < offsets.size(); ++i)
        if (c.needs(i)) dx[i] = narrow(g[0], d, offsets[i], lengths[i]);
      return dx;
    });
  }
  return y;
}

}  // namespace ttt
