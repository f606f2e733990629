// layers/linear.h — Linear: y = x Wᵀ (+ b), weight [out, in] as in PyTorch.
//
// No bias by default: the Llama-style Transformer++ and the official TTT code use bias-free
// projections everywhere (as the official code). Weight init N(0, std), std 0.02 by default
// (official `initializer_range`); a bias, when asked for, starts at zero.
#pragma once

#include "autograd/ops.h"  // linear(x, W, b, low_output): Linear::forward on given weights
#include "layers/module.h"

namespace ttt {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& g, double std = 0.02, bool bias = false);
  // x [..., in] -> [..., out]. The leading dims are flattened into one GEMM (a plain 2-D
  // product, so the weight gradient is one GEMM too instead of a per-batch sum). low_output: as
  // linear()'s.
  Tensor forward(const Tensor& x, bool low_output = false) const;

  int64_t in_features, out_features;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] or undefined
};

}  // namespace ttt
