// autograd/ops/index_add_zeros.cpp — the backward of index_select and embedding, as an op of its
// own so that it can be differentiated again:
//
//   y = zeros(shape of src with `size` along dim);  y[.., index[i], ..] += src[.., i, ..]
//   dsrc = index_select(dy, dim, index)          (the gather that index_add scatters from)
// Duplicate indices accumulate. index: 1-D, any integer dtype. Saved: index.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor index_add_zeros(const Tensor& src, int64_t dim, const Tensor& index, int64_t size) {
  check_defined("index_add_zeros", src);
  kc::check_integer(index, "index_add_zeros", "index");
  check_same_device("index_add_zeros", src, index);
  const int d = wrap_dim(dim, src.dim(), "index_add_zeros");
  if (index.dim() != 1 || index.numel() != src.shape()[d])
    throw std::invalid_argument("index_add_zeros: index " + index.shape().str() + " must be 1-D with one entry per " +
                                "slice of src " + src.shape().str() + " along dim " + std::to_string(d));
  if (size < 0) throw std::invalid_argument("index_add_zeros: negative size " + std::to_string(size));
  Shape out_shape = src.shape();
  out_shape[d] = size;
  Tensor y = zeros(out_shape, opts(src.dtype(), src.device()));
  if (src.numel()) backend(src.device()).index_add(y.view(), d, index.view(), src.view());
  if (needs_grad({&src})) {
    record("index_add_zeros", {src}, {y}, {index}, [d](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{index_select(g[0], d, c.saved[0])};
    });
  }
  return y;
}

}  // namespace ttt
