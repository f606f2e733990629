// layers/rope.h — rotary position embedding (Su et al. 2021) with interleaved pairs.
//
// The last dim d of x is read as d/2 complex numbers (x[2i], x[2i+1]); the one at position p is
// rotated by the angle p · theta^(−2i/d):
//
//   y[2i]   = x[2i] cos(p ω_i) − x[2i+1] sin(p ω_i)
//   y[2i+1] = x[2i] sin(p ω_i) + x[2i+1] cos(p ω_i),      ω_i = theta^(−2i/d), i = 0..d/2−1
//
// This is the pairing of the official JAX code (ttt-lm-jax ttt/models/model.py
// `apply_rotary_emb`, complex multiply of adjacent pairs), so checkpoints
// trained there keep their meaning. Not the HF "rotate_half" pairing (x[i], x[i + d/2]).
//
// Positions are explicit: attention passes 0..T−1 (or offset..offset+T−1 while decoding), the TTT
// layer passes t mod b (positions inside a mini-batch). Because every pair is a rotation,
// <rope(q, m), rope(k, n)> depends only on m − n (tests/test_layers_basic.cpp checks it).
//
// apply_rope runs the fused op `rope` (autograd/ops/rope.cpp: one kernel, any input strides, the
// backward is the inverse rotation, so it is differentiable to any order). The cos/sin tables are
// computed in double on the host and rounded once to the compute dtype (float32, float64 for
// float64 inputs), and cached for recent position sets, so a training step builds and uploads
// them once, not once per layer. bf16 inputs are rotated in fp32 and rounded once (the official
// code upcasts RoPE to fp32, §3). apply_rope_composite is the same rotation written with
// primitive ops (narrow, mul, add, narrow_scatter): the reference the fused path is tested
// against.
#pragma once

#include "autograd/tensor.h"

namespace ttt {

// x: any rank >= 2 with the rotated features last (even size) and the time axis at `time_dim`
// (default −2: [B, H, T, d]; pass 1 for [B, T, H, d]). positions: 1-D integer tensor of length
// x.size(time_dim), on any device. Returns a tensor of x's shape, dtype and device.
// keep_layout: the result in x's memory layout when x is a dense permuted view (ops.h, rope).
Tensor apply_rope(const Tensor& x, const Tensor& positions, double theta, int64_t time_dim = -2,
                  bool keep_layout = false);
// The same from primitive ops, tables rebuilt on every call (reference for tests).
Tensor apply_rope_composite(const Tensor& x, const Tensor& positions, double theta, int64_t time_dim = -2);
// Positions start, start+1, ..., start+len−1 (int64, CPU).
Tensor rope_positions(int64_t start, int64_t len);

// The tables: cos and sin of positions[t] · ω_i as [T, d/2] tensors of `dtype` on `device`.
struct RopeTables {
  Tensor cos, sin;
};
RopeTables rope_tables(const Tensor& positions, int64_t dim, double theta, DType dtype, Device device);

}  // namespace ttt
