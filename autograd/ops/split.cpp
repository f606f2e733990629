// autograd/ops/split.cpp — split (given sizes) and chunk (a number of equal pieces) along a dim.
//
//   y_i = narrow(x, dim, offset_i, size_i)      (views: no copy)
//   dx = cat([dy_0, ..., dy_k-1], dim)          (zeros for pieces that got no gradient)
// One node for all pieces, so the backward writes dx once instead of summing one zero-padded
// narrow_scatter per piece. cat's backward is narrow, so this composes to any order.
// Nothing saved.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

tensor_list split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined("split", x);
  const int d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  std::string list;
  for (int64_t s : sizes) {
    if (s < 0) throw std::invalid_argument("split: negative size " + std::to_string(s));
    total += s;
    list += (list.empty() ? "" : ", ") + std::to_string(s);
  }
  if (total != x.shape()[d])
    throw std::invalid_argument("split: sizes [" + list + "] sum to " + std::to_string(total) + ", but dim " +
                                std::to_string(d) + " of " + x.shape().str() + " has size " +
                                std::to_string(x.shape()[d]));
  tensor_list ys;
  int64_t offset = 0;
  for (int64_t s : sizes) {
    Shape shape = x.shape();
    shape[d] = s;
    ys.push_back(make_view(x, shape, x.strides(), x.offset() + offset * x.strides()[d]));
    offset += s;
  }
  if (needs_grad({&x})) {
    record("split", {x}, ys, {}, [d](BackwardCtx&, const tensor_list& g) { return tensor_list{cat(g, d)}; });
  }
  return ys;
}

tensor_list chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  check_defined("chunk", x);
  if (chunks <= 0) throw std::invalid_argument("chunk: number of chunks must be positive, got " + std::to_string(chunks));
  const int d = wrap_dim(dim, x.dim(), "chunk");
  // As in PyTorch: pieces of ceil(n / chunks), the last one smaller (so there may be fewer).
  const int64_t n = x.shape()[d], piece = (n + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  for (int64_t off = 0; off < n; off += piece) sizes.push_back(std::min(piece, n - off));
  if (sizes.empty()) sizes.push_back(0);
  return split(x, sizes, d);
}

}  // namespace ttt
