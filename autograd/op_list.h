// autograd/op_list.h — the list of differentiable ops. tests/test_ops.cpp requires a table entry
// (shapes, dtypes, tolerances, gradgrad support) for every name here: a missing one fails.
#pragma once

#define TTT_DIFFERENTIABLE_OPS(X)                                                              \
  X(add) X(sub) X(mul) X(div) X(maximum) X(minimum) X(pow)                                      \
  X(add_scalar) X(mul_scalar) X(rsub_scalar) X(pow_scalar) X(scaled_sigmoid) X(div_scalar) X(rdiv_scalar)          \
  X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(abs) X(square) X(reciprocal)                          \
  X(tanh) X(sigmoid) X(relu) X(silu) X(gelu_tanh) X(gelu_erf)                                   \
  X(silu_grad) X(gelu_tanh_grad) X(gelu_erf_grad) X(swiglu) X(swiglu_backward) X(rope)                                \
  X(sum) X(mean) X(max) X(min) X(sum_to) X(cumsum)                                              \
  X(matmul) X(multi_linear)                                                                     \
  X(softmax) X(log_softmax) X(layer_norm) X(rms_norm) X(add_rms_norm) X(rms_norm_backward) X(gated_layer_norm) \
  X(cross_entropy) X(cross_entropy_backward)                                                     \
  X(linear_cross_entropy)                                                                       \
  X(scaled_dot_product_attention) X(ttt_linear_scan) X(ttt_mlp_scan) X(causal_conv1d)             \
  X(ssd_scan) X(gated_delta_scan)                                                               \
  X(embedding) X(index_select) X(index_add_zeros) X(cat) X(stack) X(split) X(where)           \
  X(masked_fill) X(tril) X(triu) X(narrow_scatter)                                              \
  X(reshape) X(permute) X(transpose) X(narrow) X(expand) X(unsqueeze) X(squeeze)                \
  X(contiguous) X(clone) X(to_dtype)
