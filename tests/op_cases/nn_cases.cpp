// tests/op_cases/nn_cases.cpp — op-table entries: softmax, log-softmax, the norms, cross-entropy
// (alone and fused with its linear head).
#include "tests/op_table.h"

#include <cmath>

namespace ttt::testing {
namespace {

// RoPE tables cos/sin [T, half] of angles (3t + 1) · 100^(−i/half), in the dtype rope() wants for x.
tensor_list rope_tables_for(const Tensor& x, int64_t T, int64_t half) {
  std::vector<double> c, s;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = (3.0 * t + 1.0) * std::pow(100.0, -static_cast<double>(i) / half);
      c.push_back(std::cos(a));
      s.push_back(std::sin(a));
    }
  const DType dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  return {from_vector(c, {T, half}, opts(dt)), from_vector(s, {T, half}, opts(dt))};
}

std::vector<OpCase> cases() {
  std::vector<OpCase> v;
  v.push_back(make("swiglu", "[3,5] fused", {{{3, 5}}, {{3, 5}}},
                   [](const tensor_list& x) { return one(swiglu(x[0], x[1])); }));
  v.push_back(make("swiglu", "[2,3,4] with b [4] (broadcast: composite)", {{{2, 3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(swiglu(x[0], x[1])); }));
  // SwiGLU's backward as an op (inputs dy, a, b): first order is the fused double-backward kernel,
  // second order its composite recomputation.
  v.push_back(make("swiglu_backward", "[3,5] da and db", {{{3, 5}}, {{3, 5}}, {{3, 5}}},
                   [](const tensor_list& x) { return swiglu_backward(x[0], x[1], x[2], true, true); }));
  v.push_back(make("swiglu_backward", "[2,3,2] da only", {{{2, 3, 2}}, {{2, 3, 2}}, {{2, 3, 2}}},
                   [](const tensor_list& x) { return one(swiglu_backward(x[0], x[1], x[2], true, false)[0]); }));
  v.push_back(make("swiglu_backward", "[4,3] db only", {{{4, 3}}, {{4, 3}}, {{4, 3}}},
                   [](const tensor_list& x) { return one(swiglu_backward(x[0], x[1], x[2], false, true)[1]); }));
  v.push_back(make("rope", "[2,3,2,4] time_dim 1", {{{2, 3, 2, 4}}}, [](const tensor_list& x) {
    tensor_list t = rope_tables_for(x[0], 3, 2);
    return one(rope(x[0], t[0], t[1], 1));
  }));
  v.push_back(make("rope", "[2,5,6] time_dim -2, inverse", {{{2, 5, 6}}}, [](const tensor_list& x) {
    tensor_list t = rope_tables_for(x[0], 5, 3);
    return one(rope(x[0], t[0], t[1], -2, true));
  }));
  v.push_back(make("rope", "[2,4,3,2] transposed to [2,3,4,2], time_dim 2", {{{2, 4, 3, 2}}}, [](const tensor_list& x) {
    tensor_list t = rope_tables_for(x[0], 4, 1);
    return one(rope(transpose(x[0], 1, 2), t[0], t[1], 2));
  }));
  v.push_back(make("softmax", "[3,5] dim -1", {{{3, 5}}}, [](const tensor_list& x) { return one(softmax(x[0], -1)); }));
  v.push_back(make("softmax", "[2,4,3] dim 1 (not last)", {{{2, 4, 3}}},
                   [](const tensor_list& x) { return one(softmax(x[0], 1)); }));
  v.push_back(make("log_softmax", "[3,5] dim -1", {{{3, 5}}},
                   [](const tensor_list& x) { return one(log_softmax(x[0], -1)); }));
  v.push_back(make("log_softmax", "[4,3] dim 0 (not last)", {{{4, 3}}},
                   [](const tensor_list& x) { return one(log_softmax(x[0], 0)); }));

  v.push_back(make("layer_norm", "[2,3,5] weight and bias", {{{2, 3, 5}}, {{5}}, {{5}}},
                   [](const tensor_list& x) { return one(layer_norm(x[0], x[1], x[2], 1e-5)); }));
  v.push_back(make("layer_norm", "[4,6] no affine", {{{4, 6}}},
                   [](const tensor_list& x) { return one(layer_norm(x[0], Tensor(), Tensor(), 1e-5)); }));
  v.push_back(make("layer_norm", "[3,4] weight only", {{{3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(layer_norm(x[0], x[1], Tensor(), 1e-5)); }));
  v.push_back(make("rms_norm", "[2,3,4] weight", {{{2, 3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(rms_norm(x[0], x[1], 1e-6)); }));
  v.push_back(make("rms_norm", "[3,5] no weight", {{{3, 5}}},
                   [](const tensor_list& x) { return one(rms_norm(x[0], Tensor(), 1e-6)); }));
  v.push_back(make("add_rms_norm", "[2,3,4] weight", {{{2, 3, 4}}, {{2, 3, 4}}, {{4}}},
                   [](const tensor_list& x) { return add_rms_norm(x[0], x[1], x[2], 1e-6); }));
  v.push_back(make("add_rms_norm", "[3,5] no weight", {{{3, 5}}, {{3, 5}}},
                   [](const tensor_list& x) { return add_rms_norm(x[0], x[1], Tensor(), 1e-6); }));
  // RMSNorm's backward as an op (inputs dy, x, w): first order is the fused double-backward kernel
  // (float64: exact), second order its composite recomputation.
  v.push_back(make("rms_norm_backward", "[2,3,4] dy, x, weight: dx and dw", {{{2, 3, 4}}, {{2, 3, 4}}, {{4}}},
                   [](const tensor_list& x) { return rms_norm_backward(x[0], x[1], x[2], 1e-6, true, true); }));
  v.push_back(make("rms_norm_backward", "[3,5] no weight: dx", {{{3, 5}}, {{3, 5}}},
                   [](const tensor_list& x) { return one(rms_norm_backward(x[0], x[1], Tensor(), 1e-6, true, false)[0]); }));
  v.push_back(make("rms_norm_backward", "[4,6] dw only, the forward's rstd (the rms_norm_bwd kernel below float64)",
                   {{{4, 6}}, {{4, 6}}, {{6}}}, [](const tensor_list& x) {
                     const Tensor rstd = to_dtype(reshape(rsqrt(add_scalar(mean(square(x[1].detach()), {-1}, true), 1e-6)), {4}), DType::f32);
                     return one(rms_norm_backward(x[0], x[1], x[2], 1e-6, false, true, rstd)[1]);
                   }));
  v.push_back(make("gated_layer_norm", "[2,3,4] weight, bias", {{{2, 3, 4}}, {{4}}, {{4}}, {{2, 3, 4}}},
                   [](const tensor_list& x) { return one(gated_layer_norm(x[0], x[1], x[2], x[3], 1e-5)); }));
  v.push_back(make("gated_layer_norm", "[3,5] no affine", {{{3, 5}}, {{3, 5}}},
                   [](const tensor_list& x) { return one(gated_layer_norm(x[0], Tensor(), Tensor(), x[1], 1e-5)); }));

  v.push_back(make("cross_entropy", "[4,5] mean", {{{4, 5}}, index_input({4}, 5)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1])); }));
  // ignore_index 0 is a real class id, so about a fifth of the rows are ignored.
  v.push_back(make("cross_entropy", "[6,5] mean, ignore_index 0", {{{6, 5}}, index_input({6}, 5)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1], 0, "mean")); }));
  v.push_back(make("cross_entropy", "[2,3,4] sum, int32 targets", {{{2, 3, 4}}, index_input({2, 3}, 4, DType::i32)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1], -100, "sum")); }));
  v.push_back(make("cross_entropy", "[3,4] none, ignore_index 1", {{{3, 4}}, index_input({3}, 4)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1], 1, "none")); }));
  // Cross-entropy's backward as an op (inputs logits, row gradients): first order is the fused
  // double-backward kernel, second order its composite recomputation.
  v.push_back(make("cross_entropy_backward", "[4,5] rows' gradients w", {{{4, 5}}, {{4}}, index_input({4}, 5)},
                   [](const tensor_list& x) { return one(cross_entropy_backward(x[0], x[1], x[2], -100)); }));
  v.push_back(make("cross_entropy_backward", "[6,3] ignore_index 0", {{{6, 3}}, {{6}}, index_input({6}, 3)},
                   [](const tensor_list& x) { return one(cross_entropy_backward(x[0], x[1], x[2], 0)); }));
  // h [.., d], W [V, d]: first order from the gradients the chunked forward computed, gradgrad
  // from the composite it falls back to under create_graph. ignore_index 0 is a real class id.
  v.push_back(make("linear_cross_entropy", "h [5,3], W [4,3], mean, chunks of 2 (short last)",
                   {{{5, 3}}, {{4, 3}}, index_input({5}, 4)},
                   [](const tensor_list& x) { return one(linear_cross_entropy(x[0], x[1], x[2], -100, "mean", 2)); }));
  v.push_back(make("linear_cross_entropy", "h [2,3,4], W [5,4], sum, ignore_index 0, chunks of 4",
                   {{{2, 3, 4}}, {{5, 4}}, index_input({2, 3}, 5, DType::i32)},
                   [](const tensor_list& x) { return one(linear_cross_entropy(x[0], x[1], x[2], 0, "sum", 4)); }));
  v.push_back(make("linear_cross_entropy", "h [6,2], W [3,2], mean, ignore_index 1, one chunk",
                   {{{6, 2}}, {{3, 2}}, index_input({6}, 3)},
                   [](const tensor_list& x) { return one(linear_cross_entropy(x[0], x[1], x[2], 1, "mean")); }));
  return v;
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
