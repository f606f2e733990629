// autograd/ops/reduce.cpp — reductions.
//
//   sum(x, dims)     dx = expand(dy, x.shape)                       (dy reshaped to keepdim)
//   mean(x, dims)    dx = expand(dy, x.shape) / N
//   max/min(x, dims) dx = expand(dy) * [x == y] / count([x == y])   (ties share the gradient)
//   sum_to(x, s)     dx = expand(dy, x.shape)
//   cumsum(x, d)     dx = sum(dy, d) - cumsum(dy, d) + dy           (a reversed cumsum)
#include <algorithm>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

std::vector<int> wrap_dims(const std::vector<int64_t>& dims, int ndim, const char* who) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (int64_t d : dims) {
    int w = wrap_dim(d, ndim, who);
    if (std::find(out.begin(), out.end(), w) != out.end())
      throw std::invalid_argument(std::string(who) + ": dim " + std::to_string(d) + " repeated");
    out.push_back(w);
  }
  return out;
}

Shape keepdim_shape(const Shape& s, const std::vector<int>& dims) {
  Shape k = s;
  for (int d : dims) k[d] = 1;
  return k;
}

Shape dropped_shape(const Shape& s, const std::vector<int>& dims) {
  Shape r;
  for (int i = 0; i < s.size(); ++i)
    if (std::find(dims.begin(), dims.end(), i) == dims.end()) r.push_back(s[i]);
  return r;
}

// dy (shape with or without the reduced dims) -> shape of x via a keepdim reshape and expand.
Tensor expand_back(const Tensor& dy, const Shape& x_shape, const std::vector<int>& dims) {
  return expand(reshape(dy, keepdim_shape(x_shape, dims)), x_shape);
}

Tensor reduce_op(ReduceOp op, const char* name, const Tensor& x, const std::vector<int64_t>& dims0, bool keepdim) {
  check_defined(name, x);
  std::vector<int> dims = wrap_dims(dims0, x.dim(), name);
  for (int d : dims)
    if ((op == ReduceOp::max || op == ReduceOp::min) && x.shape()[d] == 0)
      throw std::invalid_argument(std::string(name) + ": cannot reduce an empty dim");
  Tensor yk = kc::reduce_keepdim(op, x, dims);
  Tensor y = keepdim ? yk : make_view(yk, dropped_shape(x.shape(), dims), contiguous_strides(dropped_shape(x.shape(), dims)), 0);
  if (needs_grad({&x})) {
    Shape xs = x.shape();
    if (op == ReduceOp::sum) {
      record(name, {x}, {y}, {}, [xs, dims](BackwardCtx&, const tensor_list& g) {
        return tensor_list{expand_back(g[0], xs, dims)};
      });
    } else {
      record(name, {x}, {y}, {x, yk}, [xs, dims](BackwardCtx& c, const tensor_list& g) {
        Tensor mask = eq(c.saved[0].detach(), expand(c.saved[1].detach(), xs));
        Tensor count = kc::reduce_keepdim(ReduceOp::sum, mask, dims);
        return tensor_list{mul(expand_back(g[0], xs, dims), div(mask, expand(count, xs)))};
      });
    }
  }
  return y;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::sum, "sum", x, dims, keepdim);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined("mean", x);
  kc::check_floating(x, "mean");
  std::vector<int> wd = wrap_dims(dims, x.dim(), "mean");
  int64_t n = 1;
  for (int d : wd) n *= x.shape()[d];
  return div_scalar(sum(x, dims, keepdim), static_cast<double>(std::max<int64_t>(n, 1)));
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::max, "max", x, dims, keepdim);
}

Tensor min(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_op(ReduceOp::min, "min", x, dims, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined("argmax", x);
  int d = wrap_dim(dim, x.dim(), "argmax");
  if (x.shape()[d] == 0) throw std::invalid_argument("argmax: empty dim");
  Shape ks = x.shape();
  ks[d] = 1;
  Tensor out = empty(ks, opts(DType::i64, x.device()));
  backend(x.device()).argmax(out.view(), x.view(), d);
  return keepdim ? out : squeeze(out, d);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_defined("sum_to", x);
  if (x.shape() == shape) return x;
  if (shape.size() > x.dim())
    throw std::invalid_argument("sum_to: cannot sum " + x.shape().str() + " to the larger rank " + shape.str());
  const int lead = x.dim() - shape.size();
  std::vector<int> dims;
  for (int d = 0; d < x.dim(); ++d) {
    if (d < lead) dims.push_back(d);
    else if (shape[d - lead] == 1 && x.shape()[d] != 1) dims.push_back(d);
    else if (shape[d - lead] != x.shape()[d])
      throw std::invalid_argument("sum_to: " + x.shape().str() + " is not a broadcast of " + shape.str());
  }
  Tensor yk = kc::reduce_keepdim(ReduceOp::sum, x, dims);
  Tensor y = make_view(yk, shape, contiguous_strides(shape), 0);
  if (needs_grad({&x})) {
    Shape xs = x.shape();
    record("sum_to", {x}, {y}, {}, [xs](BackwardCtx&, const tensor_list& g) { return tensor_list{expand(g[0], xs)}; });
  }
  return y;
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  check_defined("cumsum", x);
  int d = wrap_dim(dim, x.dim(), "cumsum");
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  if (x.numel()) backend(x.device()).cumsum(y.view(), x.view(), d);
  if (needs_grad({&x})) {
    record("cumsum", {x}, {y}, {}, [d](BackwardCtx&, const tensor_list& g) {
      const Tensor& dy = g[0];
      Tensor total = expand(sum(dy, {d}, true), dy.shape());
      return tensor_list{add(sub(total, cumsum(dy, d)), dy)};
    });
  }
  return y;
}

}  // namespace ttt
