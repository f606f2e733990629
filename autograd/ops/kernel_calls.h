// autograd/ops/kernel_calls.h — thin helpers the op files use to run a backend kernel on Tensors
// and get a fresh output. No autograd here: the op files record the nodes.
#pragma once

#include "autograd/tensor.h"

namespace ttt::kc {

// A View of `t` broadcast to `shape` (stride 0 in broadcast dims; leading dims added).
View broadcast_view(const Tensor& t, const Shape& shape);

// out = op(x), same shape and dtype as x.
Tensor unary(UnaryOp op, const Tensor& x, double a = 0, double b = 0);
// out = op(a, b) with broadcasting; dtypes must match (checked, naming `who`).
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* who);
// Sum (or other reduction) over `dims` (already wrapped, any order), keeping them as size 1.
Tensor reduce_keepdim(ReduceOp op, const Tensor& x, const std::vector<int>& dims);
// The dtypes of a product of operands of dtypes a and b, autocast included (matmul, multi_linear):
// `wide` is what the product means (float32 when either is float32), `low` what the GEMM reads.
// `ok` is false when they do not multiply: different dtypes other than autocast's pair of its dtype
// and float32.
struct ProductDtypes {
  DType wide, low;
  bool ok;
};
ProductDtypes product_dtypes(DType a, DType b);
// A contiguous copy (or x itself when already contiguous).
Tensor contiguous(const Tensor& x);
// Whether x covers its elements densely in some dim order (a permutation of a contiguous tensor,
// e.g. a transposed matrix or a [B, T, H, D] buffer seen as [B, H, T, D]).
bool dense_permuted(const Tensor& x);
// An uninitialized tensor of like's shape and dtype `dt`, with like's strides when like is dense
// permuted (so a copy between them is sequential and later views of like's layout stay views),
// contiguous otherwise.
Tensor empty_like_layout(const Tensor& like, DType dt);
// The strides of a dense tensor of like's shape with its dims in like's memory order (largest
// stride outermost): like's own strides when like is dense permuted; for a slice such as one of
// q, k, v inside a [B, T, 3, H, D] projection seen as [B, H, T, D], the dense [B, T, H, D] order.
Shape memory_order_strides(const Tensor& like);
// The same from a shape and strides (known to be dense permuted, e.g. saved from a tensor
// for which dense_permuted() held).
Tensor empty_dense(const Shape& shape, const Shape& strides, DType dt, Device dev);
// dst = src (converting dtype), with the dims walked in dst's memory order (largest stride
// first), so that copies between tensors of the same dense permuted layout (a transposed
// weight and its cast) run as one contiguous stream instead of a strided walk.
void copy_in_memory_order(const Tensor& dst, const Tensor& src);
// x converted to dtype dt (not taped), as a fresh tensor in x's layout when x is dense permuted
// (empty_like_layout), contiguous otherwise; the copy runs in memory order.
Tensor cast_in_layout(const Tensor& x, DType dt);
// c = op(a) op(b) + beta c for matrices (2-D) with unit stride in their last dim (row slices of a
// contiguous tensor qualify), op = transpose where trans_* is set. a and b share a dtype; c may
// be wider (bf16 operands, float32 c). beta = 1 accumulates into c (beta = 0: c is not read).
void gemm_into(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double beta = 0);
// Class-id rows of a cross-entropy (targets tg: int64 [rows]; not taped): 1 for rows whose target
// != ignore_index, else 0 ([rows] in dt); onehot(t_r) for valid rows and zero rows for ignored ones
// ([rows, classes] in dt).
Tensor valid_rows(const Tensor& tg, int64_t classes, int64_t ignore_index, DType dt);
// Throws (naming cross_entropy, the position and the logits' shape) when a target of tg (int64)
// other than ignore_index lies outside [0, classes). Reads tg on the host.
void check_targets(const Tensor& tg, int64_t classes, int64_t ignore_index, const Shape& logits_shape);
Tensor onehot_rows(const Tensor& tg, int64_t classes, int64_t ignore_index, DType dt);
// An op with optional outputs records only the wanted ones: wanted_only keeps xs[i] where wanted[i]
// (in order); spread_wanted puts the node's gradients g back in their slots (undefined elsewhere).
tensor_list wanted_only(const tensor_list& xs, const std::vector<bool>& wanted);
tensor_list spread_wanted(const tensor_list& g, const std::vector<bool>& wanted);
// Checks that x has a floating dtype, naming the op.
void check_floating(const Tensor& x, const char* who);
// Checks that `t` (named `what` in the message) has an integer dtype (int64, int32, uint16).
void check_integer(const Tensor& t, const char* who, const char* what);

}  // namespace ttt::kc
