// layers/norm.h — RMSNorm (Llama / Transformer++) and LayerNorm, over the last dim.
//
//   RMSNorm:   y = x / sqrt(mean(x²) + eps) ⊙ w                      w init 1
//   LayerNorm: y = (x − mean) / sqrt(var + eps) ⊙ w + b  (biased var)  w init 1, b init 0
//
// eps 1e-6 for both in the official code. The fused ops
// rms_norm / layer_norm (autograd/ops) compute statistics in fp32 for bf16 inputs.
#pragma once

#include "layers/module.h"

namespace ttt {

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);
  Tensor forward(const Tensor& x) const;
  // {h + y, forward(h + y)} in one pass (the add_rms_norm op): a residual add and this norm.
  tensor_list add_forward(const Tensor& h, const Tensor& y) const;
  int64_t dim;
  double eps;
  Tensor weight;  // [dim]
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-6, bool affine = true);
  Tensor forward(const Tensor& x) const;
  int64_t dim;
  double eps;
  Tensor weight, bias;  // [dim] each, undefined when !affine
};

}  // namespace ttt
