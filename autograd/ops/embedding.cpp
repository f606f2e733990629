// autograd/ops/embedding.cpp — table lookup: weight [V, D], ids of any shape and integer dtype.
//
//   y[..., :] = weight[ids[...], :]                   (y: ids.shape + [D])
//   dweight = index_add_zeros(dy as [N, D], 0, ids flattened, V)   (repeated ids accumulate)
// ids are not differentiable. Saved: the flattened ids. The backward's own backward is a
// gather of the incoming gradient (index_select), so create_graph works.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_defined("embedding", weight, "weight");
  kc::check_integer(ids, "embedding", "ids");
  check_same_device("embedding", weight, ids);
  if (weight.dim() != 2)
    throw std::invalid_argument("embedding: weight must be 2-D [vocab, dim], got " + weight.shape().str());
  const int64_t vocab = weight.shape()[0], width = weight.shape()[1], n = ids.numel();
  Tensor flat;
  {
    NoGradGuard ng;
    flat = reshape(kc::contiguous(ids), {n});
  }
  Shape out_shape = ids.shape();
  out_shape.push_back(width);
  Tensor y2 = empty({n, width}, opts(weight.dtype(), weight.device()));
  if (y2.numel()) {
    try {
      backend(weight.device()).index_select(y2.view(), weight.view(), 0, flat.view());
    } catch (const std::out_of_range& e) {
      throw std::invalid_argument(std::string("embedding: an id is out of range for weight ") +
                                  weight.shape().str() + " (" + e.what() + ")");
    }
  }
  Tensor y = make_view(y2, out_shape, contiguous_strides(out_shape), 0);
  if (needs_grad({&weight})) {
    record("embedding", {weight}, {y}, {flat}, [vocab, width, n](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{index_add_zeros(reshape(g[0], {n, width}), 0, c.saved[0], vocab)};
    });
  }
  return y;
}

}  // namespace ttt
