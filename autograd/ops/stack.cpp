// autograd/ops/stack.cpp — stacking equal-shaped tensors along a new dim.
//
//   y = cat([unsqueeze(x_i, dim)], dim)
//   dx_i = squeeze(narrow(dy, dim, i, 1), dim)     (from cat's and unsqueeze's backward)
// Built from cat and unsqueeze, so it has no node of its own and saves nothing.
#include "autograd/ops.h"

namespace ttt {

Tensor stack(const tensor_list& xs, int64_t dim) {
  if (xs.empty()) throw std::invalid_argument("stack: expected at least one tensor");
  for (const Tensor& x : xs) check_defined("stack", x);
  for (size_t i = 1; i < xs.size(); ++i)
    if (xs[i].shape() != xs[0].shape())
      throw std::invalid_argument("stack: tensor " + std::to_string(i) + " has shape " + xs[i].shape().str() +
                                  ", expected the shape of tensor 0, " + xs[0].shape().str());
  const int d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  tensor_list parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) parts.push_back(unsqueeze(x, d));
  return cat(parts, d);
}

}  // namespace ttt
