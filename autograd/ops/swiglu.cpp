// autograd/ops/swiglu.cpp — SwiGLU's gated activation as one op: y = silu(a) ⊙ b.
//
//   da = dy ⊙ b ⊙ silu'(a),   db = dy ⊙ silu(a)          silu'(x) = s (1 + x (1 − s)), s = σ(x)
// Saved: a, b.
//
// Forward: one fused kernel (backend swiglu_fwd) instead of silu + mul (one pass over a and b,
// no silu(a) intermediate). Backward, ordinary (grad mode off): one fused kernel writing da and
// db (instead of silu, silu_grad and three muls). With create_graph: the same kernel as one
// differentiable node, swiglu_backward (ops/swiglu_backward.cpp), whose own backward is a fused
// kernel too, so gradients of gradients are exact. Operands of
// different shapes (broadcasting) take the composite mul(silu(a), b). Tested against the
// composite in tests/test_fused_ops.cpp.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor swiglu(const Tensor& a, const Tensor& b) {
  kc::check_floating(a, "swiglu");
  check_defined("swiglu", b, "b");
  check_same_device("swiglu", a, b);
  check_same_dtype("swiglu", a, b);
  if (a.shape() != b.shape()) return mul(silu(a), b);
  Tensor y = empty(a.shape(), opts(a.dtype(), a.device()));
  if (y.numel()) backend(a.device()).swiglu_fwd(y.view(), a.view(), b.view());
  if (needs_grad({&a, &b})) {
    record("swiglu", {a, b}, {y}, {a, b}, [](BackwardCtx& c, const tensor_list& g) {
      const Tensor &A = c.saved[0], &B = c.saved[1];
      if (GradMode::is_enabled()) return swiglu_backward(g[0], A, B, c.needs(0), c.needs(1));
      Tensor da = empty(A.shape(), opts(A.dtype(), A.device())), db = empty(A.shape(), opts(A.dtype(), A.device()));
      if (da.numel()) backend(A.device()).swiglu_bwd(da.view(), db.view(), g[0].view(), A.view(), B.view());
      return tensor_list{c.needs(0) ? da : Tensor(), c.needs(1) ? db : Tensor()};
    });
  }
  return y;
}

}  // namespace ttt
