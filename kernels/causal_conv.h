// kernels/causal_conv.h — the depthwise causal convolution of the Mamba backbone (width k, per
// channel weight and bias) as one fused forward and one fused backward call (kernels/fused_call.h).
// CPU reference: kernels/cpu/causal_conv.cpp; CUDA: kernels/cuda/causal_conv.cu.
//
//   y[b, t, c] = bias[c] + Σ_{j<k} w[c, j] · x[b, t − (k−1) + j, c]      (x at t < 0 is 0)
// Backward, given dy:
//   dx[b, t, c] = Σ_{j<k, t+(k−1)−j < T} w[c, j] · dy[b, t + (k−1) − j, c]
//   dw[c, j]    = Σ_{b,t} dy[b, t, c] · x[b, t − (k−1) + j, c],   dbias[c] = Σ_{b,t} dy[b, t, c]
// The weight and bias gradients are summed per tile of time steps, then over tiles in index
// order (no float atomics: deterministic).
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace ttt {

struct CausalConvShape {
  int64_t batch = 0, len = 0, channels = 0, width = 4;
  DType dtype = DType::f32;  // x, y, dx, dy; w, bias and their gradients are float32 (float64 for float64 data)
};

// x, y, dx, dy: [B, T, C] with the channel dim contiguous: element (b, t, c) at p + b·sb + t·st + c.
struct BTCView {
  void* data = nullptr;
  int64_t sb = 0, st = 0;
};

// Decoding continues a sequence: with `history` (the k−1 inputs before t = 0, [B, k−1, C]) those
// stand in for the zeros, and `history_out` (optional, [B, k−1, C], not overlapping history or x)
// gets the last k−1 inputs of (history, x): what the next call's history is. One kernel instead of
// concatenating (history, x), convolving and copying the new history out.
struct CausalConvForward final : FusedCall {
  CausalConvShape s;
  BTCView x, y;
  BTCView history, history_out;  // optional (null data)
  // history and history_out float32 while x and y are bfloat16 (a decoder's float32 tails through a
  // bf16 prompt): history values are rounded to bf16 as they are read, so the results are those of
  // casting the history to bf16, convolving and casting the new history back, in one kernel.
  bool history_f32 = false;
  const void* w = nullptr;     // [C, k]
  const void* bias = nullptr;  // [C]
  const char* name() const override { return "causal_conv_fwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

struct CausalConvBackward final : FusedCall {
  CausalConvShape s;
  BTCView x, dy, dx;
  const void* w = nullptr;
  void* dw = nullptr;     // [C, k] (overwritten)
  void* dbias = nullptr;  // [C]
  void* workspace = nullptr;  // workspace_bytes()
  size_t workspace_bytes() const;
  const char* name() const override { return "causal_conv_bwd"; }
  double bytes() const override;
  void run(Backend& be) override;
};

// Time steps per tile of the weight-gradient partial sums (the backward's blocks). Measured on an
// H200 (125M TTT-Linear step, 36 calls): 64-step tiles 5.1 ms of backward, 16-step tiles 6.9 ms
// (the reduction over 4x more partials costs more than the extra blocks gain).
constexpr int64_t kConvTile = 64;

namespace cpu_impl {
void causal_conv_forward(CausalConvForward& c);
void causal_conv_backward(CausalConvBackward& c);
}  // namespace cpu_impl
namespace cuda_impl {
void causal_conv_forward(Backend& be, CausalConvForward& c);
void causal_conv_backward(Backend& be, CausalConvBackward& c);
}  // namespace cuda_impl

}  // namespace ttt
