// layers/ttt_inner.cpp — see ttt_inner.h.
#include "layers/ttt_inner.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

// --- inner models ----------------------------------------------------------------------------

namespace {
// W0 as a parameter drawn from N(0, std) (official init), or a zero buffer
// when W0 is not learnable (Table 1 "TTT equivalence": W0 = 0).
Tensor initial_weight(Module& m, const std::string& name, const Shape& s, Generator& g, double std, bool learnable) {
  if (!learnable) return m.register_buffer(name, zeros(s));
  return m.register_parameter(name, init_normal(s, g, std));
}
Tensor initial_bias(Module& m, const std::string& name, const Shape& s, bool learnable) {
  return learnable ? m.register_parameter(name, zeros(s)) : m.register_buffer(name, zeros(s));
}
}  // namespace

InnerLinear::InnerLinear(int64_t nh, int64_t f, Generator& g, double std, bool learnable, bool bias) {
  W1 = initial_weight(*this, "W1", {nh, f, f}, g, std, learnable);
  if (bias) b1 = initial_bias(*this, "b1", {nh, 1, f}, learnable);
}

Tensor InnerLinear::apply(const tensor_list& W, const Tensor& x) const { return add_bias(matmul(x, W[0]), W[1]); }

InnerMLP::InnerMLP(int64_t nh, int64_t f, int64_t expansion, Generator& g, double std, bool learnable, bool bias) {
  const int64_t h = expansion * f;
  W1 = initial_weight(*this, "W1", {nh, f, h}, g, std, learnable);
  if (bias) b1 = initial_bias(*this, "b1", {nh, 1, h}, learnable);
  W2 = initial_weight(*this, "W2", {nh, h, f}, g, std, learnable);
  if (bias) b2 = initial_bias(*this, "b2", {nh, 1, f}, learnable);
}

Tensor InnerMLP::apply(const tensor_list& W, const Tensor& x) const {
  Tensor x2 = gelu(add_bias(matmul(x, W[0]), W[1]), /*tanh_approx=*/true);
  return add_bias(matmul(x2, W[2]), W[3]);
}

// --- per-head LayerNorm and the inner loss -------------------------------------------------------

namespace {
// [nh, f] -> [nh, 1, ..., 1, f] broadcasting against x [B, nh, ..., f].
Tensor per_head(const Tensor& p, const Tensor& x) {
  Shape s;
  s.push_back(p.shape()[0]);
  for (int d = 2; d < x.dim() - 1; ++d) s.push_back(1);
  s.push_back(p.shape()[1]);
  return reshape(p, s);
}

struct Normalized {
  Tensor xhat, std;  // (x − μ)/σ and σ = sqrt(var + eps), σ keeps a size-1 last dim
};
Normalized normalize(const Tensor& x, double eps) {
  Tensor xc = sub(x, mean(x, {-1}, true));
  Tensor std = sqrt(add_scalar(mean(square(xc), {-1}, true), eps));
  return {div(xc, std), std};
}
}  // namespace

Tensor head_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  Normalized n = normalize(x, eps);
  return add(mul(n.xhat, per_head(w, x)), per_head(b, x));
}

Tensor inner_loss_grad(const Tensor& Z, const Tensor& target, const InnerNorm& n) {
  if (!n.ln_residual) return sub(Z, target);
  const double f = static_cast<double>(Z.shape().back());
  Normalized ln = normalize(Z, n.eps);
  Tensor w = per_head(n.w, Z);
  Tensor y = add(mul(ln.xhat, w), per_head(n.b, Z));
  Tensor g = mul(sub(y, target), w);  // ∂ℓ/∂x̂
  Tensor num = sub(sub(mul_scalar(g, f), sum(g, {-1}, true)), mul(ln.xhat, sum(mul(g, ln.xhat), {-1}, true)));
  return div(num, mul_scalar(ln.std, f));
}

Tensor inner_target(const Tensor& XK, const Tensor& XV, const InnerNorm& n) {
  return n.ln_residual ? sub(XV, XK) : XV;
}

Tensor inner_output(const Tensor& XQ, const Tensor& z, const InnerNorm& n) {
  return n.ln_residual ? add(XQ, head_layer_norm(z, n.w, n.b, n.eps)) : z;
}

Tensor inner_loss(const Tensor& Z, const Tensor& target, const InnerNorm& n) {
  Tensor pred = n.ln_residual ? head_layer_norm(Z, n.w, n.b, n.eps) : Z;
  return mul_scalar(sum(square(sub(pred, target)), {-1}), 0.5);
}

// --- eta --------------------------------------------------------------------------------------

Tensor eta_matrix(const Tensor& tok, const Tensor& lr) {
  const int64_t n = tok.shape()[0];
  // [n, 1] * [B, nh, 1, n] -> [B, nh, n, n]; row i = output token, column j = gradient token.
  return tril(mul(reshape(tok, {n, 1}), unsqueeze(lr, 2)));
}

Tensor add_bias(const Tensor& x, const Tensor& b) { return b.defined() ? add(x, b) : x; }

Tensor add_maybe(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

}  // namespace ttt
