// autograd/ops/softmax.cpp — softmax and log-softmax along one dim (one file: they share the
// row layout code and the backward dispatch).
//
//   softmax      y = exp(x - max) / sum(exp(x - max))     dx = y * (dy - sum(dy * y))
//   log_softmax  y = x - logsumexp(x)                     dx = dy - exp(y) * sum(dy)
// (sums along `dim`, kept for broadcasting). Saved: the output y only.
//
// Forward always runs the fused row kernel (softmax_fwd): the softmax dim is moved last
// (transpose + contiguous when it is not already), every other dim flattens into rows. The
// kernel is exact in float64 (it computes in double), so every dtype takes it.
// Backward: under ordinary backward (grad mode off) the fused softmax_bwd kernel; under
// create_graph the same formula from differentiable ops, so it can be differentiated again
// (through y, whose history is this node).
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

// x with `dim` moved last, as a contiguous buffer (x itself when already so).
Tensor rows_layout(const Tensor& x, int dim) {
  Tensor t = dim == x.dim() - 1 ? x.detach() : transpose(x.detach(), dim, -1);
  return kc::contiguous(t);
}

// A rows_layout buffer back in the original layout (a transposed view when dim was not last).
Tensor from_rows_layout(const Tensor& buf, int dim) {
  return dim == buf.dim() - 1 ? buf : transpose(buf, dim, -1);
}

Tensor fused_backward(const Tensor& dy, const Tensor& y, int dim, bool log) {
  Tensor dyr = rows_layout(dy, dim), yr = rows_layout(y, dim);
  Tensor dxr = empty(yr.shape(), opts(y.dtype(), y.device()));
  const int64_t cols = yr.shape().back();
  if (dxr.numel())
    backend(y.device()).softmax_bwd(dxr.data_ptr(), dyr.data_ptr(), yr.data_ptr(), dxr.numel() / cols, cols,
                                    y.dtype(), log);
  return from_rows_layout(dxr, dim);
}

Tensor composite_backward(const Tensor& dy, const Tensor& y, int dim, bool log) {
  if (log) return sub(dy, mul(exp(y), sum(dy, {dim}, true)));
  return mul(y, sub(dy, sum(mul(dy, y), {dim}, true)));
}

Tensor softmax_impl(const char* name, const Tensor& x, int64_t dim0, bool log) {
  kc::check_floating(x, name);
  const int dim = wrap_dim(dim0, x.dim(), name);
  Tensor y;
  {
    NoGradGuard ng;  // the layout moves below are plumbing, not part of the graph
    Tensor xr = rows_layout(x, dim);
    Tensor yr = empty(xr.shape(), opts(x.dtype(), x.device()));
    const int64_t cols = xr.shape().back();
    if (yr.numel())
      backend(x.device()).softmax_fwd(yr.data_ptr(), xr.data_ptr(), yr.numel() / cols, cols, x.dtype(), log);
    y = from_rows_layout(yr, dim);
  }
  if (needs_grad({&x})) {
    record(name, {x}, {y}, {y}, [dim, log](BackwardCtx& c, const tensor_list& g) {
      const Tensor& out = c.saved[0];
      if (!GradMode::is_enabled()) return tensor_list{fused_backward(g[0], out, dim, log)};
      return tensor_list{composite_backward(g[0], out, dim, log)};
    });
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl("log_softmax", x, dim, true); }

}  // namespace ttt
