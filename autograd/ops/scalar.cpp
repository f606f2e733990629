// autograd/ops/scalar.cpp — ops between a tensor and a host scalar s.
//
//   add_scalar   y = x + s     dx = dy
//   mul_scalar   y = s x       dx = s dy
//   rsub_scalar  y = s - x     dx = -dy
//   div_scalar   y = x / s     dx = dy / s
//   rdiv_scalar  y = s / x     dx = -dy y / x
//   pow_scalar   y = x^p       dx = dy p x^(p-1)
//   scaled_sigmoid  y = s σ(x)  dx = dy y (1 - y/s)   (one kernel: a gate times a constant)
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {
Tensor affine(const char* name, const Tensor& x, double a, double b) {
  kc::check_floating(x, name);
  Tensor y = kc::unary(UnaryOp::affine, x, a, b);
  if (needs_grad({&x}))
    record(name, {x}, {y}, {}, [a](BackwardCtx&, const tensor_list& g) {
      return tensor_list{a == 1.0 ? g[0] : mul_scalar(g[0], a)};
    });
  return y;
}
}  // namespace

Tensor add_scalar(const Tensor& x, double s) { return affine("add_scalar", x, 1.0, s); }
Tensor mul_scalar(const Tensor& x, double s) { return affine("mul_scalar", x, s, 0.0); }
Tensor rsub_scalar(const Tensor& x, double s) { return affine("rsub_scalar", x, -1.0, s); }
Tensor div_scalar(const Tensor& x, double s) {
  if (s == 0) throw std::invalid_argument("div_scalar: division by zero");
  return affine("div_scalar", x, 1.0 / s, 0.0);
}

Tensor rdiv_scalar(const Tensor& x, double s) {
  kc::check_floating(x, "rdiv_scalar");
  Tensor r = kc::unary(UnaryOp::reciprocal, x);
  Tensor y = s == 1.0 ? r : kc::unary(UnaryOp::affine, r, s, 0.0);
  if (needs_grad({&x}))
    record("rdiv_scalar", {x}, {y}, {x, y}, [](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{neg(div(mul(g[0], c.saved[1]), c.saved[0]))};
    });
  return y;
}

Tensor pow_scalar(const Tensor& x, double p) {
  kc::check_floating(x, "pow_scalar");
  Tensor y = kc::unary(UnaryOp::pow_scalar, x, p);
  if (needs_grad({&x}))
    record("pow_scalar", {x}, {y}, {x}, [p](BackwardCtx& c, const tensor_list& g) {
      if (p == 0.0) return tensor_list{zeros_like(g[0])};
      Tensor d = p == 1.0 ? g[0] : mul(g[0], mul_scalar(pow_scalar(c.saved[0], p - 1.0), p));
      return tensor_list{d};
    });
  return y;
}

Tensor scaled_sigmoid(const Tensor& x, double s) {
  kc::check_floating(x, "scaled_sigmoid");
  Tensor y = kc::unary(UnaryOp::scaled_sigmoid, x, s);
  if (needs_grad({&x}))
    record("scaled_sigmoid", {x}, {y}, {y}, [s](BackwardCtx& c, const tensor_list& g) {
      if (s == 0.0) return tensor_list{zeros_like(g[0])};
      const Tensor& y = c.saved[0];
      return tensor_list{mul(g[0], mul(y, rsub_scalar(mul_scalar(y, 1.0 / s), 1.0)))};
    });
  return y;
}

}  // namespace ttt
