// layers/ttt_inner.h — what the three TTT implementations (dual, primal, generic) share: the inner
// model f_res, the per-head LayerNorm, the inner loss and its hand-derived gradient, and the
// description of one run of tokens inside a mini-batch.
//
// Notation (paper §2, App. A; official code ttt-lm-pytorch ttt.py). Per batch
// element and head, with row vectors x ∈ R^f:
//   inner model      f(x; W) = x + LN(f_res(x; W))        (ln_residual; else f(x) = f_res(x))
//   inner loss       ℓ_j(W)  = ½ ‖LN(f_res(XK_j; W)) − (XV_j − XK_j)‖²   (else ½ ‖f_res(XK_j) − XV_j‖²)
//   learning rates   eta[i, j] = tok[i] · lr_j,  tok[i] = max(0, 1/(i+1) + θ_tok[i]),
//                    lr_j = base_lr · σ(θ_lr,h · x_j + b_h) / head_dim
//   mini-batch GD    token i of a mini-batch that starts with weights W uses
//                    W_i = W − Σ_{j≤i} eta[i, j] ∇ℓ_j(W) = W − tok[i] · Σ_{j≤i} lr_j ∇ℓ_j(W)
//   output           z_i = f(XQ_i; W_i);   the next mini-batch starts from W_{K−1}.
//
// Note [Accumulators]
// Because eta factorizes (row factor tok, column factor lr), the state inside a mini-batch is
// (W, acc) with acc = Σ_{j<i} lr_j ∇ℓ_j(W) over the tokens already consumed, exactly the official
// decode cache (TTTCache W*_grad). Every implementation processes a
// "segment" — consecutive tokens inside one mini-batch, starting at in-mini-batch index i0 with
// accumulators acc (undefined = zero) — and returns the outputs and the new acc. At the end of a
// mini-batch the scan commits W ← W − tok[K−1] · acc, which is the official end-of-batch update
// with eta's last row. Forward passes always start segments at i0 = 0 with acc = 0; decoding
// (step) may start anywhere.
#pragma once

#include <string>

#include "layers/module.h"

namespace ttt {

// --- the inner model f_res -------------------------------------------------------------------

// The fast weights W of one TTT layer: a list of per-head tensors. The module holds the initial
// weights W0 (θ_init): parameters when learnable, zero buffers otherwise (Table 1, W0 = 0).
//
// A weight may be undefined (a model without biases): every implementation skips it.
// apply(W, x) must broadcast over leading dims: W_k is [..., shape_k] and x is [..., n, f] with the
// same leading dims (B, nh and, in the generic form, one more per-token dim). That is all the
// generic implementation needs, so any f_res written with differentiable ops (a deeper MLP, a
// SwiGLU, ...) works with impl = generic without a hand-derived gradient.
class InnerModel : public Module {
 public:
  // W0 as [nh, ...] tensors, in the order apply() expects.
  virtual tensor_list initial() const = 0;
  virtual Tensor apply(const tensor_list& W, const Tensor& x) const = 0;
  // "linear" and "mlp" have closed-form (dual, primal) implementations; anything else is generic-only.
  virtual std::string kind() const = 0;
};

// TTT-Linear: f_res(x) = x W + b, W [nh, f, f] ~ N(0, std), b [nh, 1, f] = 0 (official W1, b1);
// without bias b1 is undefined.
class InnerLinear : public InnerModel {
 public:
  InnerLinear(int64_t heads, int64_t head_dim, Generator& g, double std, bool learnable, bool bias = true);
  tensor_list initial() const override { return {W1, b1}; }
  Tensor apply(const tensor_list& W, const Tensor& x) const override;
  std::string kind() const override { return "linear"; }
  Tensor W1, b1;
};

// TTT-MLP: f_res(x) = gelu_tanh(x W1 + b1) W2 + b2, hidden = expansion · f (official W1, b1, W2, b2).
class InnerMLP : public InnerModel {
 public:
  InnerMLP(int64_t heads, int64_t head_dim, int64_t expansion, Generator& g, double std, bool learnable,
           bool bias = true);
  tensor_list initial() const override { return {W1, b1, W2, b2}; }
  Tensor apply(const tensor_list& W, const Tensor& x) const override;
  std::string kind() const override { return "mlp"; }
  Tensor W1, b1, W2, b2;
};

// --- inner loss pieces (shared, differentiable, so the outer loop trains through them) ----------

// The per-head LayerNorm settings of the inner loss and output (ttt_norm_weight / _bias [nh, f],
// the same parameters in both places). w, b undefined when !ln_residual.
struct InnerNorm {
  Tensor w, b;
  double eps = 1e-6;
  bool ln_residual = true;
};

// LayerNorm over the last dim of x [B, nh, ..., f] with per-head affine w, b [nh, f] (biased
// variance, as ttt.py ln_fwd).
Tensor head_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps);

// ∂/∂Z of ½‖LN(Z) − target‖², written out (ttt.py ln_fused_l2_bwd):
//   x̂ = (Z − μ)/σ,  g = (w x̂ + b − target) ⊙ w,  ∂Z = (f g − Σ_f g − x̂ Σ_f (g x̂)) / (f σ)
// With !ln_residual the loss is ½‖Z − target‖² and the gradient Z − target.
Tensor inner_loss_grad(const Tensor& Z, const Tensor& target, const InnerNorm& n);
// The inner loss target: XV − XK (residual folded into the target, ttt.py reconstruction_target)
// or XV without LN + residual.
Tensor inner_target(const Tensor& XK, const Tensor& XV, const InnerNorm& n);
// The output rule applied to f_res(XQ; W_i): XQ + LN(z), or z without LN + residual.
Tensor inner_output(const Tensor& XQ, const Tensor& z, const InnerNorm& n);
// Per-token inner loss ½‖...‖² summed over features: [..., n, f] -> [..., n] (generic form).
Tensor inner_loss(const Tensor& Z, const Tensor& target, const InnerNorm& n);

// --- one segment of tokens inside a mini-batch ---------------------------------------------------

struct Segment {
  Tensor XQ, XK, XV;  // [B, nh, n, f]
  Tensor lr;          // [B, nh, n]  column factor of eta (base_lr · gate / head_dim)
  Tensor tok;         // [n]         row factor of eta for in-mini-batch indices i0 .. i0+n−1
  int64_t size() const { return XQ.shape()[2]; }
};

// Processes a segment from weights W (the mini-batch's start) and accumulators acc (one per
// weight, undefined = zero); returns the outputs [B, nh, n, f] and replaces acc. See
// Note [Accumulators].
using SegmentFn = Tensor (*)(const InnerModel& m, const tensor_list& W, tensor_list& acc, const Segment& s,
                             const InnerNorm& n);

// eta[i, j] = tok[i] · lr_j for j ≤ i, else 0: [B, nh, n, n].
Tensor eta_matrix(const Tensor& tok, const Tensor& lr);

// a + b with undefined meaning zero.
Tensor add_maybe(const Tensor& a, const Tensor& b);
// x + b, or x when b is undefined (no bias).
Tensor add_bias(const Tensor& x, const Tensor& b);

}  // namespace ttt
