// autograd/ops/copy.cpp — copies: contiguous, clone, dtype casts and device transfers.
//
//   contiguous(x) / clone(x)   dx = dy
//   to_dtype(x, d)             dx = to_dtype(dy, x.dtype)     (bf16 autocast goes through this)
//   to_device(x, d)            dx = to_device(dy, x.device)
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor contiguous(const Tensor& x) {
  check_defined("contiguous", x);
  if (x.is_contiguous()) return x;
  return clone(x);
}

Tensor clone(const Tensor& x) {
  check_defined("clone", x);
  Tensor y = empty(x.shape(), opts(x.dtype(), x.device()));
  if (x.numel()) backend(x.device()).unary(UnaryOp::copy, y.view(), x.view());
  if (needs_grad({&x}))
    record("clone", {x}, {y}, {}, [](BackwardCtx&, const tensor_list& g) { return tensor_list{g[0]}; });
  return y;
}

Tensor to_dtype(const Tensor& x, DType d) {
  check_defined("to_dtype", x);
  if (x.dtype() == d) return x;
  Tensor y = empty(x.shape(), opts(d, x.device()));
  if (x.numel()) backend(x.device()).unary(UnaryOp::copy, y.view(), x.view());
  if (needs_grad({&x})) {
    if (!is_floating(d))
      throw std::invalid_argument(std::string("to_dtype: cannot differentiate a cast to ") + dtype_name(d));
    DType in = x.dtype();
    record("to_dtype", {x}, {y}, {}, [in](BackwardCtx&, const tensor_list& g) { return tensor_list{to_dtype(g[0], in)}; });
  }
  return y;
}

Tensor to_device(const Tensor& x, Device d) {
  check_defined("to_device", x);
  if (x.device() == d) return x;
  Tensor src;
  {
    NoGradGuard ng;
    src = contiguous(x);
  }
  Tensor y = empty(x.shape(), opts(x.dtype(), d));
  const size_t nbytes = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
  if (nbytes) {
    if (x.device().is_cpu()) {
      backend(d).copy_from_host(y.data_ptr(), src.data_ptr(), nbytes);
    } else if (d.is_cpu()) {
      backend(x.device()).copy_to_host(y.data_ptr(), src.data_ptr(), nbytes);
    } else {  // between two GPUs: through the host
      std::vector<char> host(nbytes);
      backend(x.device()).copy_to_host(host.data(), src.data_ptr(), nbytes);
      backend(d).copy_from_host(y.data_ptr(), host.data(), nbytes);
    }
  }
  if (needs_grad({&x})) {
    Device in = x.device();
    record("to_device", {x}, {y}, {}, [in](BackwardCtx&, const tensor_list& g) { return tensor_list{to_device(g[0], in)}; });
  }
  return y;
}

}  // namespace ttt
