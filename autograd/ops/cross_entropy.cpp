// autograd/ops/cross_entropy.cpp — softmax cross-entropy of logits (..., V) against integer
// targets (...), with ignore_index and reduction "mean" | "sum" | "none".
//
//   loss_r = logsumexp(x_r) - x_r[t_r]            (0 for rows whose target == ignore_index)
//   "none": loss (shape of targets);  "sum": sum_r loss_r;  "mean": sum_r loss_r / N,
//   N = number of rows whose target != ignore_index (N = 0 gives NaN, as in PyTorch).
// Backward, with dloss_r the incoming gradient of row r (dy, dy, or dy / N by reduction):
//   dx_r = dloss_r * (softmax(x_r) - onehot(t_r))    (0 for ignored rows)
// Targets are not differentiable. Saved: logits, the int64 targets, the per-row logsumexp
// (float32, fused path only) and N ("mean" only).
//
// float32 / bfloat16: forward is the fused cross_entropy_fwd kernel (per-row losses in float32,
// reduced in float32, then cast to the logits' dtype); ordinary backward is cross_entropy_bwd.
// float64 and create_graph: the forward from the (exact) log-softmax kernel; the backward as the
// cross_entropy_backward op (ops/cross_entropy_backward.cpp: the fused kernel below float64, the
// formula in float64), one differentiable node whose own backward is a fused kernel, so gradients
// of gradients work. float64 never takes the fused kernels: their statistics are float32.
//
// Targets outside [0, V) (other than ignore_index) are an error naming the op and the shapes.
// They are checked on the host for CPU tensors and on the composite path; the CUDA fused kernel
// does its own checking.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

enum class Reduction { mean, sum, none };

Reduction parse_reduction(const std::string& r) {
  if (r == "mean") return Reduction::mean;
  if (r == "sum") return Reduction::sum;
  if (r == "none") return Reduction::none;
  throw std::invalid_argument("cross_entropy: reduction must be \"mean\", \"sum\" or \"none\", got \"" + r + "\"");
}

// Per-row losses [rows] in float32 (fused) and the row logsumexp (float32).
void fused_forward(const Tensor& x2, const Tensor& tg, int64_t ignore_index, Tensor& loss, Tensor& lse) {
  const int64_t rows = x2.shape()[0], classes = x2.shape()[1];
  loss = empty({rows}, opts(DType::f32, x2.device()));
  lse = empty({rows}, opts(DType::f32, x2.device()));
  if (rows > 0)
    backend(x2.device()).cross_entropy_fwd(loss.data<float>(), lse.data<float>(), x2.data_ptr(), tg.data<int64_t>(),
                                           rows, classes, ignore_index, x2.dtype());
}

// Per-row losses [rows] in x2's dtype from the log-softmax kernel: -sum(logp * onehot).
Tensor composite_forward(const Tensor& x2, const Tensor& tg, int64_t ignore_index) {
  NoGradGuard ng;
  Tensor logp = log_softmax(x2, -1);
  return neg(sum(mul(logp, kc::onehot_rows(tg, x2.shape()[1], ignore_index, x2.dtype())), {-1}));
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const std::string& reduction) {
  kc::check_floating(logits, "cross_entropy");
  kc::check_integer(targets, "cross_entropy", "targets");
  check_same_device("cross_entropy", logits, targets);
  const Reduction red = parse_reduction(reduction);
  if (logits.dim() == 0) throw std::invalid_argument("cross_entropy: logits must have a class dim, got a scalar");
  Shape expect = logits.shape();
  expect.pop_back();
  if (targets.shape() != expect)
    throw std::invalid_argument("cross_entropy: targets " + targets.shape().str() + " do not match logits " +
                                logits.shape().str() + " (expected targets of shape " + expect.str() + ")");
  const int64_t classes = logits.shape().back(), rows = targets.numel();
  if (classes == 0 && rows > 0)
    throw std::invalid_argument("cross_entropy: logits " + logits.shape().str() + " have no classes");
  const DType dt = logits.dtype();
  const bool fused = dt != DType::f64;

  Tensor out, tg, lse, count;
  {
    NoGradGuard ng;
    tg = reshape(kc::contiguous(targets.to(DType::i64)), {rows});
    if (!fused || logits.device().is_cpu()) kc::check_targets(tg, classes, ignore_index, logits.shape());
    Tensor x2 = reshape(kc::contiguous(logits.detach()), {rows, classes});
    // Losses are reduced in their own precision (float32 on the fused path), then cast.
    Tensor loss;
    if (fused) fused_forward(x2, tg, ignore_index, loss, lse);
    else loss = composite_forward(x2, tg, ignore_index);
    if (red == Reduction::none) {
      out = reshape(loss, targets.shape());
    } else if (red == Reduction::sum) {
      out = sum(loss);
    } else {
      count = sum(kc::valid_rows(tg, classes, ignore_index, loss.dtype()));
      out = div(sum(loss), count);
    }
    out = out.to(dt);
  }
  if (needs_grad({&logits})) {
    const Shape x_shape = logits.shape();
    record("cross_entropy", {logits}, {out}, {logits, tg, lse, count},
           [red, ignore_index, rows, classes, x_shape](BackwardCtx& c, const tensor_list& g) {
             const Tensor &x = c.saved[0], &tg = c.saved[1], &lse = c.saved[2], &count = c.saved[3];
             // The incoming gradient of each row, [rows].
             auto row_grads = [&](const Tensor& dy) {
               Tensor d = red == Reduction::mean ? div(dy, count.to(dy.dtype())) : dy;
               return red == Reduction::none ? reshape(d, {rows}) : expand(reshape(d, {1}), {rows});
             };
             if (!GradMode::is_enabled() && x.dtype() != DType::f64) {
               Tensor dloss = kc::contiguous(row_grads(g[0].to(DType::f32)));
               Tensor xc = kc::contiguous(x);
               Tensor dx = empty(x_shape, opts(x.dtype(), x.device()));
               if (rows > 0)
                 backend(x.device()).cross_entropy_bwd(dx.data_ptr(), dloss.data<float>(), xc.data_ptr(),
                                                       lse.data<float>(), tg.data<int64_t>(), rows, classes,
                                                       ignore_index, x.dtype(), x.dtype());
               return tensor_list{dx};
             }
             // Differentiable: one cross_entropy_backward node (its own backward a fused kernel).
             const Tensor w = row_grads(to_dtype(g[0], x.dtype()));
             return tensor_list{reshape(cross_entropy_backward(reshape(x, {rows, classes}), w, tg, ignore_index, lse),
                                        x_shape)};
           });
  }
  return out;
}

}  // namespace ttt
