// layers/causal_conv.h — short causal depthwise 1-D convolution over time, with bias.
//
//   y[b, t, c] = bias[c] + Σ_{j=0}^{k−1} weight[c, j] · x[b, t − (k−1) + j, c]     (x[<0] = 0)
//
// i.e. PyTorch's Conv1d(C, C, k, groups=C, padding=k−1) cut to the first T outputs, which is how
// the Mamba backbone's pre-conv and the TTT layer's conv_q / conv_k are computed in the official
// PyTorch code (ttt-lm-pytorch ttt.py). weight is PyTorch's [C, 1, k]
// without the singleton dim. Init as PyTorch's Conv1d default, which the official PyTorch code
// keeps (its _init_weights does not touch convs): weight and bias
// U(−1/√k, 1/√k) (fan_in = k for a depthwise conv).
//
// Decoding keeps the last k−1 inputs (the "tail", [B, k−1, C]); step() on a chunk after a tail
// equals the matching slice of forward() on the whole sequence (tests/test_causal_conv.cpp).
// Both run the fused op causal_conv1d (autograd/ops.h; its backward falls back to composite ops
// under create_graph): step() with grad mode off as causal_conv1d_continue (one kernel reads the
// tail and writes the next), else on the concatenation (tail, x) (causal_conv1d_continue_composite).
#pragma once

#include "layers/module.h"

namespace ttt {

class CausalConv1d : public Module {
 public:
  // bias = false: no bias (fla's ShortConvolution default, used by Gated DeltaNet).
  CausalConv1d(int64_t channels, int64_t width, Generator& g, bool bias = true);
  // x [B, T, C] -> [B, T, C], zeros before t = 0.
  Tensor forward(const Tensor& x) const;
  // The empty history: zeros [B, k−1, C].
  Tensor init_tail(int64_t batch, DType dtype = DType::f32, Device device = cpu()) const;
  // x [B, T, C] continuing after `tail` (the previous k−1 inputs); returns [B, T, C] and replaces
  // tail by the last k−1 inputs of (tail, x).
  Tensor step(const Tensor& x, Tensor& tail) const;

  int64_t channels, width;
  Tensor weight;  // [C, k]
  Tensor bias;    // [C], or undefined without bias

 private:
  void check_input(const Tensor& x) const;
};

}  // namespace ttt
