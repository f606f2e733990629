// autograd/ops/cross_entropy_backward.cpp — cross-entropy's backward as a differentiable op: what
// cross_entropy records under create_graph (TTT-E2E's inner loss), so a taped backward through the
// loss is one node and one kernel over the [rows, classes] logits instead of a softmax, a one-hot
// matrix and three elementwise ops, and differentiating it again is one fused kernel.
//
//   dx = cross_entropy_backward(x, w, t):   dx_i = w_i (softmax(x_i) − onehot(t_i)),  0 for ignored rows
// x: logits [rows, classes]; w: the rows' loss gradients [rows] (x's dtype); t: int64 targets [rows].
// Forward: the cross_entropy_bwd kernel with the forward's logsumexp (float32 / bfloat16: the values
// of cross_entropy's ordinary backward); the formulas, untaped, in float64 or without lse.
// Backward (the double backward; formulas in kernels/cross_entropy_grad.h): the fused
// CrossEntropyGradBackward call with grad mode off; with create_graph (third derivatives) the
// formulas from differentiable ops, recomputed and differentiated (recompute_gradients).
// Saved: x, w (contiguous), the targets; the third-order fallback attaches stand-ins of x and w to
// the inputs' edges.
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/cross_entropy_grad.h"

namespace ttt {

namespace {

const char* kOp = "cross_entropy_backward";

Tensor formulas(const Tensor& x, const Tensor& w, const Tensor& tg, int64_t ignore_index) {
  const int64_t classes = x.shape()[1];
  const Tensor valid = kc::valid_rows(tg, classes, ignore_index, x.dtype());
  return mul(sub(softmax(x, -1), kc::onehot_rows(tg, classes, ignore_index, x.dtype())), unsqueeze(mul(w, valid), 1));
}

Tensor values(const Tensor& x, const Tensor& w, const Tensor& tg, int64_t ignore_index, const Tensor& lse) {
  NoGradGuard ng;
  if (!lse.defined() || x.dtype() == DType::f64) return formulas(x, w, tg, ignore_index);
  const int64_t rows = x.shape()[0], classes = x.shape()[1];
  const Tensor dloss = kc::contiguous(w.to(DType::f32));
  Tensor dx = empty(x.shape(), opts(x.dtype(), x.device()));
  if (rows > 0 && classes > 0)
    backend(x.device()).cross_entropy_bwd(dx.data_ptr(), dloss.data<float>(), x.data_ptr(), lse.data<float>(),
                                          tg.data<int64_t>(), rows, classes, ignore_index, x.dtype(), x.dtype());
  return dx;
}

tensor_list fused_double_backward(const BackwardCtx& c, const Tensor& G0, int64_t ignore_index) {
  const Tensor &x = c.saved[0], &w = c.saved[1], &tg = c.saved[2];
  const Tensor G = kc::contiguous(to_dtype(G0, x.dtype()));
  tensor_list out(2);
  if (c.needs(0)) out[0] = empty(x.shape(), opts(x.dtype(), x.device()));
  if (c.needs(1)) out[1] = empty(w.shape(), opts(x.dtype(), x.device()));
  CrossEntropyGradBackward k;
  k.rows = x.shape()[0];
  k.classes = x.shape()[1];
  k.dtype = x.dtype();
  k.ignore_index = ignore_index;
  k.x = x.data_ptr();
  k.w = w.data_ptr();
  k.targets = tg.data<int64_t>();
  k.g = G.data_ptr();
  k.gx = out[0].defined() ? out[0].data_ptr() : nullptr;
  k.gw = out[1].defined() ? out[1].data_ptr() : nullptr;
  if (k.rows > 0 && k.classes > 0) backend(x.device()).run(k);
  else if (out[1].defined()) out[1].zero_();
  return out;
}

}  // namespace

Tensor cross_entropy_backward(const Tensor& x0, const Tensor& w0, const Tensor& targets, int64_t ignore_index,
                              const Tensor& lse) {
  check_defined(kOp, x0, "x");
  check_defined(kOp, w0, "w");
  kc::check_floating(x0, kOp);
  kc::check_integer(targets, kOp, "targets");
  check_same_device(kOp, x0, w0);
  check_same_dtype(kOp, x0, w0);
  if (x0.dim() != 2 || w0.shape() != Shape{x0.shape()[0]} || targets.numel() != x0.shape()[0])
    throw std::invalid_argument(std::string(kOp) + ": expected x [rows, classes], w and targets [rows], got x " +
                                x0.shape().str() + ", w " + w0.shape().str() + ", targets " + targets.shape().str());
  Tensor tg;
  {
    NoGradGuard ng;
    tg = reshape(kc::contiguous(targets.to(DType::i64)), {x0.shape()[0]});
  }
  const Tensor x = kc::contiguous(x0), w = kc::contiguous(w0);
  Tensor dx = values(x, w, tg, ignore_index, lse);
  if (needs_grad({&x0, &w0})) {
    record(kOp, {x0, w0}, {dx}, {x, w, tg}, [ignore_index](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled()) return fused_double_backward(c, g[0], ignore_index);
      const Tensor tg = c.saved[2];
      const CheckpointFn composite = [tg, ignore_index](const tensor_list& in) {
        return tensor_list{formulas(in[0], in[1], tg, ignore_index)};
      };
      return recompute_gradients(composite, c.stand_in_inputs(2), g, false, DType::f32);
    });
  }
  return dx;
}

}  // namespace ttt
