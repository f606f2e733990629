// autograd/ops/triangle.cpp — tril and triu over the last two dims (one file: one kernel).
//
//   tril(x, k): keep x[.., i, j] where j - i <= k, else 0      dx = tril(dy, k)
//   triu(x, k): keep x[.., i, j] where j - i >= k, else 0      dx = triu(dy, k)
// Nothing saved: the backward applies the same mask to dy (and is itself differentiable).
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

Tensor triangle(const char* name, const Tensor& x, int64_t diagonal, bool lower) {
  check_defined(name, x);
  if (x.dim() < 2)
    throw std::invalid_argument(std::string(name) + ": input must have at least 2 dims, got " + x.shape().str());
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  if (y.numel()) backend(x.device()).triangle(y.view(), x.view(), diagonal, lower, 0.0);
  if (needs_grad({&x})) {
    record(name, {x}, {y}, {}, [diagonal, lower](BackwardCtx&, const tensor_list& g) {
      return tensor_list{lower ? tril(g[0], diagonal) : triu(g[0], diagonal)};
    });
  }
  return y;
}

}  // namespace

Tensor tril(const Tensor& x, int64_t diagonal) { return triangle("tril", x, diagonal, true); }
Tensor triu(const Tensor& x, int64_t diagonal) { return triangle("triu", x, diagonal, false); }

}  // namespace ttt
