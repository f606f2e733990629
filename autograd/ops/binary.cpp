// autograd/ops/binary.cpp — broadcasting elementwise binary ops.
//
//   add: da = dy,           db = dy
//   sub: da = dy,           db = -dy
//   mul: da = dy * b,       db = dy * a
//   div: da = dy / b,       db = -dy * a / b^2
//   maximum: da = dy * [a >= b], db = dy * [a < b]      (ties go to a)
//   minimum: da = dy * [a <= b], db = dy * [a > b]
//   pow: da = dy * b * a^(b-1), db = dy * a^b * log(a)
// each followed by sum_to(input shape) to undo broadcasting. Comparisons are not differentiable.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {
Tensor reduce_grad(const Tensor& g, const Shape& shape) { return g.shape() == shape ? g : sum_to(g, shape); }
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = kc::binary(BinaryOp::add, a, b, "add");
  if (needs_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("add", {a, b}, {y}, {}, [sa, sb](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{c.needs(0) ? reduce_grad(g[0], sa) : Tensor(), c.needs(1) ? reduce_grad(g[0], sb) : Tensor()};
    });
  }
  return y;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = kc::binary(BinaryOp::sub, a, b, "sub");
  if (needs_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("sub", {a, b}, {y}, {}, [sa, sb](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{c.needs(0) ? reduce_grad(g[0], sa) : Tensor(),
                         c.needs(1) ? reduce_grad(neg(g[0]), sb) : Tensor()};
    });
  }
  return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = kc::binary(BinaryOp::mul, a, b, "mul");
  if (needs_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("mul", {a, b}, {y}, {a, b}, [sa, sb](BackwardCtx& c, const tensor_list& g) {
      const Tensor &A = c.saved[0], &B = c.saved[1];
      return tensor_list{c.needs(0) ? reduce_grad(mul(g[0], B), sa) : Tensor(),
                         c.needs(1) ? reduce_grad(mul(g[0], A), sb) : Tensor()};
    });
  }
  return y;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = kc::binary(BinaryOp::div, a, b, "div");
  if (needs_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("div", {a, b}, {y}, {a, b}, [sa, sb](BackwardCtx& c, const tensor_list& g) {
      const Tensor &A = c.saved[0], &B = c.saved[1];
      return tensor_list{c.needs(0) ? reduce_grad(div(g[0], B), sa) : Tensor(),
                         c.needs(1) ? reduce_grad(neg(div(mul(g[0], A), mul(B, B))), sb) : Tensor()};
    });
  }
  return y;
}

namespace {
// Shared by maximum/minimum: the gradient goes to a where `a_wins`, else to b.
Tensor select_binary(BinaryOp op, BinaryOp a_wins_cmp, const char* name, const Tensor& a, const Tensor& b) {
  Tensor y = kc::binary(op, a, b, name);
  if (needs_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record(name, {a, b}, {y}, {a, b}, [sa, sb, a_wins_cmp](BackwardCtx& c, const tensor_list& g) {
      Tensor mask_a = kc::binary(a_wins_cmp, c.saved[0].detach(), c.saved[1].detach(), "maximum/minimum");
      Tensor mask_b = rsub_scalar(mask_a, 1.0);
      return tensor_list{c.needs(0) ? reduce_grad(mul(g[0], mask_a), sa) : Tensor(),
                         c.needs(1) ? reduce_grad(mul(g[0], mask_b), sb) : Tensor()};
    });
  }
  return y;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return select_binary(BinaryOp::maximum, BinaryOp::ge, "maximum", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return select_binary(BinaryOp::minimum, BinaryOp::le, "minimum", a, b); }

Tensor pow(const Tensor& a, const Tensor& b) {
  kc::check_floating(a, "pow");
  Tensor y = kc::binary(BinaryOp::pow, a, b, "pow");
  if (needs_grad({&a, &b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("pow", {a, b}, {y}, {a, b, y}, [sa, sb](BackwardCtx& c, const tensor_list& g) {
      const Tensor &A = c.saved[0], &B = c.saved[1], &Y = c.saved[2];
      Tensor ga, gb;
      if (c.needs(0)) ga = reduce_grad(mul(g[0], mul(B, pow(A, add_scalar(B, -1.0)))), sa);
      if (c.needs(1)) gb = reduce_grad(mul(g[0], mul(Y, log(A))), sb);
      return tensor_list{ga, gb};
    });
  }
  return y;
}

Tensor eq(const Tensor& a, const Tensor& b) { return kc::binary(BinaryOp::eq, a, b, "eq"); }
Tensor gt(const Tensor& a, const Tensor& b) { return kc::binary(BinaryOp::gt, a, b, "gt"); }
Tensor lt(const Tensor& a, const Tensor& b) { return kc::binary(BinaryOp::lt, a, b, "lt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return kc::binary(BinaryOp::ge, a, b, "ge"); }
Tensor le(const Tensor& a, const Tensor& b) { return kc::binary(BinaryOp::le, a, b, "le"); }

}  // namespace ttt
