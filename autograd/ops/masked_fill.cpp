// autograd/ops/masked_fill.cpp — replace the elements where a mask is set by a constant.
//
//   y = mask != 0 ? value : x          (mask any dtype, broadcastable to x's shape)
//   dx = where(mask, 0, dy)
// mask is not differentiable. Saved: mask.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_defined("masked_fill", x);
  check_defined("masked_fill", mask, "mask");
  check_same_device("masked_fill", x, mask);
  if (broadcast_shapes(x.shape(), mask.shape(), "masked_fill") != x.shape())
    throw std::invalid_argument("masked_fill: mask " + mask.shape().str() + " does not broadcast to the input " +
                                x.shape().str());
  const Shape& s = x.shape();
  Tensor fill = full({}, value, opts(x.dtype(), x.device()));
  Tensor y = empty(s, opts(x.dtype(), x.device()));
  if (y.numel())
    backend(x.device()).where(y.view(), kc::broadcast_view(mask, s), kc::broadcast_view(fill, s), x.view());
  if (needs_grad({&x})) {
    record("masked_fill", {x}, {y}, {mask.detach()}, [](BackwardCtx& c, const tensor_list& g) {
      Tensor zero = zeros({}, opts(g[0].dtype(), g[0].device()));
      return tensor_list{where(c.saved[0], zero, g[0])};
    });
  }
  return y;
}

}  // namespace ttt
