// autograd/ops/index_select.cpp — gather slices along one dim.
//
//   y[.., i, ..] = x[.., index[i], ..]       (index: 1-D, any integer dtype, repeats allowed)
//   dx = index_add_zeros(dy, dim, index, x.size(dim))   (repeated indices accumulate)
// Saved: index. The backward is itself an op whose backward is index_select again, so
// gradients of gradients work.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("index_select", x);
  kc::check_integer(index, "index_select", "index");
  check_same_device("index_select", x, index);
  if (x.dim() == 0) throw std::invalid_argument("index_select: input must have at least one dim, got a scalar");
  const int d = wrap_dim(dim, x.dim(), "index_select");
  if (index.dim() > 1)
    throw std::invalid_argument("index_select: index must be 1-D, got " + index.shape().str() + " (for input " +
                                x.shape().str() + ")");
  Tensor idx = index.dim() == 1 ? index : reshape(index, {1});
  Shape out_shape = x.shape();
  out_shape[d] = idx.numel();
  Tensor y = empty(out_shape, opts(x.dtype(), x.device()));
  if (y.numel()) backend(x.device()).index_select(y.view(), x.view(), d, idx.view());
  if (needs_grad({&x})) {
    const int64_t size = x.shape()[d];
    record("index_select", {x}, {y}, {idx}, [d, size](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{index_add_zeros(g[0], d, c.saved[0], size)};
    });
  }
  return y;
}

}  // namespace ttt
