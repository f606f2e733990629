// autograd/ops/unary.cpp — elementwise math functions.
//
//   neg         dx = -dy
//   exp         dx = dy y
//   log         dx = dy / x
//   sqrt        dx = dy 0.5 / y
//   rsqrt       dx = dy (-0.5) y^3
//   abs         dx = dy sign(x)            (sign(0) = 0)
//   square      dx = dy 2x
//   reciprocal  dx = -dy y^2
//   tanh        dx = dy (1 - y^2)
//   sigmoid     dx = dy y (1 - y)
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {
enum Keep { kNone = 0, kX = 1, kY = 2 };
// Computes y = op(x) and, when needed, records `name` saving x and/or y (as `keep` says: only
// what the backward reads is kept alive) and the backward bw(dy, x, y).
template <class BW> Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, int keep, BW bw) {
  kc::check_floating(x, name);
  Tensor y = kc::unary(op, x);
  if (needs_grad({&x}))
    record(name, {x}, {y}, {keep & kX ? x : Tensor(), keep & kY ? y : Tensor()},
           [bw](BackwardCtx& c, const tensor_list& g) { return tensor_list{bw(g[0], c.saved[0], c.saved[1])}; });
  return y;
}
}  // namespace

Tensor neg(const Tensor& x) {
  return unary_op("neg", UnaryOp::neg, x, kNone, [](const Tensor& g, const Tensor&, const Tensor&) { return neg(g); });
}
Tensor exp(const Tensor& x) {
  return unary_op("exp", UnaryOp::exp, x, kY, [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, y); });
}
Tensor log(const Tensor& x) {
  return unary_op("log", UnaryOp::log, x, kX, [](const Tensor& g, const Tensor& x, const Tensor&) { return div(g, x); });
}
Tensor sqrt(const Tensor& x) {
  return unary_op("sqrt", UnaryOp::sqrt, x, kY,
                  [](const Tensor& g, const Tensor&, const Tensor& y) { return div(mul_scalar(g, 0.5), y); });
}
Tensor rsqrt(const Tensor& x) {
  return unary_op("rsqrt", UnaryOp::rsqrt, x, kY, [](const Tensor& g, const Tensor&, const Tensor& y) {
    return mul(g, mul_scalar(mul(y, square(y)), -0.5));
  });
}
Tensor abs(const Tensor& x) {
  return unary_op("abs", UnaryOp::abs, x, kX, [](const Tensor& g, const Tensor& x, const Tensor&) {
    return mul(g, kc::unary(UnaryOp::sign, x.detach()));
  });
}
Tensor square(const Tensor& x) {
  return unary_op("square", UnaryOp::square, x, kX,
                  [](const Tensor& g, const Tensor& x, const Tensor&) { return mul(g, mul_scalar(x, 2.0)); });
}
Tensor reciprocal(const Tensor& x) {
  return unary_op("reciprocal", UnaryOp::reciprocal, x, kY,
                  [](const Tensor& g, const Tensor&, const Tensor& y) { return neg(mul(g, square(y))); });
}
Tensor tanh(const Tensor& x) {
  return unary_op("tanh", UnaryOp::tanh, x, kY,
                  [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, rsub_scalar(square(y), 1.0)); });
}
Tensor sigmoid(const Tensor& x) {
  return unary_op("sigmoid", UnaryOp::sigmoid, x, kY, [](const Tensor& g, const Tensor&, const Tensor& y) {
    return mul(g, mul(y, rsub_scalar(y, 1.0)));
  });
}

}  // namespace ttt
