// autograd/ops/activation.cpp — relu, silu and gelu (tanh approximation and exact erf form).
//
//   relu   dx = dy [x > 0]
//   silu   dx = dy silu'(x)          silu'(x) = s (1 + x (1 - s)),  s = sigmoid(x)
//   gelu   dx = dy gelu'(x)
// The first derivatives run as one fused kernel each (UnaryOp::*_grad) wrapped in a
// differentiable op, *_grad(x), whose own backward is the second derivative composed of
// primitive ops. So the usual backward costs one kernel, and gradients of gradients (TTT-MLP's
// inner loop differentiated by the outer loop) stay exact:
//   silu''(x)      = s (1 - s) (2 + x (1 - 2 s))
//   gelu_tanh''(x) = (1 - t^2) (u' + x/2 (u'' - 2 t u'^2)),  u = c (x + a x^3), t = tanh u,
//                    u' = c (1 + 3 a x^2), u'' = 6 a c x,  c = sqrt(2/pi), a = 0.044715
//   gelu_erf''(x)  = phi(x) (2 - x^2),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {
constexpr double kC = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kA = 0.044715;

// y = f(x) with dx = dy * fprime(x), where fprime is itself a differentiable op.
Tensor activation(const char* name, UnaryOp op, const Tensor& x, Tensor (*fprime)(const Tensor&)) {
  kc::check_floating(x, name);
  Tensor y = kc::unary(op, x);
  if (needs_grad({&x}))
    record(name, {x}, {y}, {x}, [fprime](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{mul(g[0], fprime(c.saved[0]))};
    });
  return y;
}

Tensor relu_mask(const Tensor& x) { return kc::unary(UnaryOp::relu_mask, x.detach()); }

// A derivative kernel as a differentiable op; `second` gives its derivative from primitives.
Tensor derivative_op(const char* name, UnaryOp op, const Tensor& x, Tensor (*second)(const Tensor&)) {
  kc::check_floating(x, name);
  Tensor y = kc::unary(op, x);
  if (needs_grad({&x}))
    record(name, {x}, {y}, {x}, [second](BackwardCtx& c, const tensor_list& g) {
      return tensor_list{mul(g[0], second(c.saved[0]))};
    });
  return y;
}

Tensor silu_second(const Tensor& x) {
  Tensor s = sigmoid(x);
  Tensor one_minus_s = rsub_scalar(s, 1.0);
  return mul(mul(s, one_minus_s), add_scalar(mul(x, rsub_scalar(mul_scalar(s, 2.0), 1.0)), 2.0));
}

Tensor gelu_tanh_second(const Tensor& x) {
  Tensor x2 = square(x);
  Tensor u = mul_scalar(add(x, mul_scalar(mul(x2, x), kA)), kC);
  Tensor t = tanh(u);
  Tensor du = mul_scalar(add_scalar(mul_scalar(x2, 3.0 * kA), 1.0), kC);
  Tensor ddu = mul_scalar(x, 6.0 * kA * kC);
  Tensor inner = add(du, mul(mul_scalar(x, 0.5), sub(ddu, mul_scalar(mul(t, square(du)), 2.0))));
  return mul(rsub_scalar(square(t), 1.0), inner);
}

Tensor gelu_erf_second(const Tensor& x) {
  Tensor x2 = square(x);
  Tensor phi = mul_scalar(exp(mul_scalar(x2, -0.5)), 0.3989422804014327);
  return mul(phi, rsub_scalar(x2, 2.0));
}
}  // namespace

Tensor silu_grad(const Tensor& x) { return derivative_op("silu_grad", UnaryOp::silu_grad, x, silu_second); }
Tensor gelu_tanh_grad(const Tensor& x) {
  return derivative_op("gelu_tanh_grad", UnaryOp::gelu_tanh_grad, x, gelu_tanh_second);
}
Tensor gelu_erf_grad(const Tensor& x) {
  return derivative_op("gelu_erf_grad", UnaryOp::gelu_erf_grad, x, gelu_erf_second);
}

Tensor relu(const Tensor& x) { return activation("relu", UnaryOp::relu, x, relu_mask); }
Tensor silu(const Tensor& x) { return activation("silu", UnaryOp::silu, x, silu_grad); }
Tensor gelu(const Tensor& x, bool tanh_approx) {
  return tanh_approx ? activation("gelu_tanh", UnaryOp::gelu_tanh, x, gelu_tanh_grad)
                     : activation("gelu_erf", UnaryOp::gelu_erf, x, gelu_erf_grad);
}

}  // namespace ttt
