// autograd/ops/swiglu_backward.cpp — SwiGLU's backward as a differentiable op: what swiglu records under
// create_graph, so a taped backward through it is one node and one kernel instead of five (silu,
// silu_grad and three muls), and differentiating it again (TTT-E2E's second-order gradients) one fused
// kernel instead of about a dozen.
//
//   {da, db} = swiglu_backward(dy, a, b):   da = dy · b · silu'(a),   db = dy · silu(a)
// Forward: the swiglu_bwd kernel (the same values as swiglu's ordinary backward).
// Backward (the double backward; formulas in kernels/swiglu_grad.h): the fused SwigluGradBackward
// call with grad mode off; with create_graph (third derivatives), the formulas above from
// differentiable ops, recomputed and differentiated (recompute_gradients).
// Saved: dy, a, b, contiguous; the third-order fallback attaches stand-ins of them to the inputs' edges.
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/swiglu_grad.h"

namespace ttt {

namespace {

const char* kOp = "swiglu_backward";

tensor_list fused_double_backward(const BackwardCtx& c, const Tensor& Ga, const Tensor& Gb) {
  const Tensor &dy = c.saved[0], &a = c.saved[1], &b = c.saved[2];
  const auto upstream = [&](const Tensor& G) { return G.defined() ? kc::contiguous(to_dtype(G, a.dtype())) : G; };
  const Tensor ga_in = upstream(Ga), gb_in = upstream(Gb);
  tensor_list out(3);
  for (size_t i = 0; i < 3; ++i)
    if (c.needs(i)) out[i] = empty(a.shape(), opts(a.dtype(), a.device()));
  if (!ga_in.defined() && !gb_in.defined()) {
    for (Tensor& t : out)
      if (t.defined()) t.zero_();
    return out;
  }
  SwigluGradBackward k;
  k.n = a.numel();
  k.dtype = a.dtype();
  k.dy = dy.data_ptr();
  k.a = a.data_ptr();
  k.b = b.data_ptr();
  k.ga_in = ga_in.defined() ? ga_in.data_ptr() : nullptr;
  k.gb_in = gb_in.defined() ? gb_in.data_ptr() : nullptr;
  k.gdy = out[0].defined() ? out[0].data_ptr() : nullptr;
  k.ga = out[1].defined() ? out[1].data_ptr() : nullptr;
  k.gb = out[2].defined() ? out[2].data_ptr() : nullptr;
  if (k.n) backend(a.device()).run(k);
  return out;
}

}  // namespace

tensor_list swiglu_backward(const Tensor& dy0, const Tensor& a0, const Tensor& b0, bool want_da, bool want_db) {
  check_defined(kOp, dy0, "dy");
  check_defined(kOp, a0, "a");
  check_defined(kOp, b0, "b");
  kc::check_floating(a0, kOp);
  for (const Tensor* t : {&dy0, &b0}) {
    check_same_device(kOp, a0, *t);
    check_same_dtype(kOp, a0, *t);
    if (t->shape() != a0.shape())
      throw std::invalid_argument(std::string(kOp) + ": dy, a and b must have one shape, got " + dy0.shape().str() +
                                  ", " + a0.shape().str() + ", " + b0.shape().str());
  }
  const Tensor dy = kc::contiguous(dy0), a = kc::contiguous(a0), b = kc::contiguous(b0);
  tensor_list out(2);
  {
    NoGradGuard ng;
    Tensor da = empty(a.shape(), opts(a.dtype(), a.device())), db = empty(a.shape(), opts(a.dtype(), a.device()));
    if (da.numel()) backend(a.device()).swiglu_bwd(da.view(), db.view(), dy.view(), a.view(), b.view());
    if (want_da) out[0] = da;
    if (want_db) out[1] = db;
  }
  const std::vector<bool> wanted = {want_da, want_db};
  const tensor_list recorded = kc::wanted_only(out, wanted);  // the node's outputs: da and/or db
  if (!recorded.empty() && needs_grad({&dy0, &a0, &b0})) {
    record(kOp, {dy0, a0, b0}, recorded, {dy, a, b}, [wanted](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled()) {
        const tensor_list G = kc::spread_wanted(g, wanted);
        return fused_double_backward(c, G[0], G[1]);
      }
      const CheckpointFn composite = [wanted](const tensor_list& in) {
        tensor_list r(2);
        if (wanted[0]) r[0] = mul(mul(in[0], in[2]), silu_grad(in[1]));
        if (wanted[1]) r[1] = mul(in[0], silu(in[1]));
        return kc::wanted_only(r, wanted);
      };
      return recompute_gradients(composite, c.stand_in_inputs(3), g, false, DType::f32);
    });
  }
  return out;
}

}  // namespace ttt
