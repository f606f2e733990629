// autograd/ops/multi_linear.cpp — linear (a product and a bias, as recorded ops) and multi_linear:
// several products of one input, differentiated as one node.
//
//   y_i = x W_iᵀ (+ b_i)           x [..., in], W_i [n_i, in], b_i [n_i] or undefined
//   dx   = Σ_i dy_i W_i            (one buffer: the first GEMM writes it, the others add into it)
//   dW_i = dy_iᵀ x,  db_i = Σ_rows dy_i
// Each y_i is the GEMM that linear(x, W_i, b_i, low_output[i]) runs (below: matmul or
// matmul_low_output on the same casts, then the bias added in the product's dtype), so the values
// are the same. What differs is the backward: separate products send one gradient of x each, and the
// engine sums them (an add of a [rows, in] float32 tensor per extra product: three reads and a
// write of it, where a GEMM that accumulates reads and writes it once). The TTT layer's input side
// multiplies its normalized input by four weights (Q/K, V, the output gate, the lr gate), SwiGLU
// by two (w1, w3).
// Under autocast the GEMMs read the forward's casts (x's shared with neighbouring products by
// Autocast::cached_cast) and dy cast once, as matmul's ordinary backward does; each gradient comes
// back in its input's dtype. Saved: the operands the GEMMs read, and under autocast the float32
// weights that are parameters (alive anyway) and, under KeepFloat32Operands, x.
// create_graph: the separate products are recomputed taped on stand-ins for the inputs (x's upcast
// cast where x itself was not kept, as matmul's taped backward does) and differentiated, so the
// gradients are those of the separate linears, differentiable again.
#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, bool low_output) {
  const int64_t in = weight.shape()[1];
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = weight.shape()[0];
  const Tensor x2 = reshape(x, {-1, in}), wt = transpose(weight, 0, 1);
  Tensor y = low_output ? matmul_low_output(x2, wt) : matmul(x2, wt);
  if (bias.defined()) y = add(y, to_dtype(bias, y.dtype()));
  return reshape(y, out_shape);
}

namespace {

// t [..., c] as a [rows, c] matrix with unit column stride (a copy only when a view cannot be).
Tensor as_matrix(const Tensor& t) {
  const Tensor m = reshape(t, {-1, t.shape().back()});
  return m.shape()[1] > 1 && m.strides()[1] != 1 ? kc::contiguous(m) : m;
}

// W_i as a GEMM operand from the cast of W_iᵀ [in, n_i] the forward made: W_i [n_i, in] itself
// when the cast is a transposed view (a cast of a weight keeps its layout), else that row-major
// W_iᵀ; `holds_w` says which (x W_iᵀ then reads it transposed or not, dy W_i the other way).
struct WeightOperand {
  Tensor m;
  bool holds_w;
};
WeightOperand weight_operand(const Tensor& wt) {
  if (wt.strides()[0] == 1) return {transpose(wt, 0, 1), true};
  return {as_matrix(wt), false};
}

// The products as separate linears make them, taped: what the create_graph fallback differentiates.
tensor_list linears(const Tensor& x, const tensor_list& w, const tensor_list& b, const std::vector<bool>& low) {
  tensor_list ys;
  for (size_t i = 0; i < w.size(); ++i) ys.push_back(linear(x, w[i], b[i], low[i]));
  return ys;
}

void check_args(const Tensor& x, const tensor_list& w, const tensor_list& b, const std::vector<bool>& low) {
  kc::check_floating(x, "multi_linear");
  if (w.empty()) throw std::invalid_argument("multi_linear: expected at least one weight");
  if (b.size() != w.size() || low.size() != w.size())
    throw std::invalid_argument("multi_linear: expected one bias (or undefined) and one low_output flag per weight, got " +
                                std::to_string(w.size()) + " weights, " + std::to_string(b.size()) + " biases and " +
                                std::to_string(low.size()) + " flags");
  if (x.dim() < 1) throw std::invalid_argument("multi_linear: x must have at least one dim");
  const int64_t in = x.shape().back();
  for (size_t i = 0; i < w.size(); ++i) {
    check_defined("multi_linear", w[i], "weight");
    check_same_device("multi_linear", x, w[i]);
    if (w[i].dim() != 2 || w[i].shape()[1] != in)
      throw std::invalid_argument("multi_linear: weight " + std::to_string(i) + " must be [n, " + std::to_string(in) +
                                  "] for x " + x.shape().str() + ", got " + w[i].shape().str());
    if (b[i].defined() && b[i].shape() != Shape{w[i].shape()[0]})
      throw std::invalid_argument("multi_linear: bias " + std::to_string(i) + " must be [" +
                                  std::to_string(w[i].shape()[0]) + "], got " + b[i].shape().str());
    if (!kc::product_dtypes(x.dtype(), w[i].dtype()).ok)
      throw std::invalid_argument(std::string("multi_linear: x (") + dtype_name(x.dtype()) + ") and weight " +
                                  std::to_string(i) + " (" + dtype_name(w[i].dtype()) +
                                  ") multiply only in one dtype, or as bf16 and float32 under autocast");
  }
}

// dx, the dW_i and db_i from the output gradients g, at the forward's precision (not taped).
// saved: x's operand [rows, in], then the weights' operands as the forward's GEMMs read them, W_iᵀ.
tensor_list fused_backward(const BackwardCtx& c, const tensor_list& g, size_t n, const Shape& x_shape, DType x_dtype,
                           const std::vector<DType>& w_dtypes, const std::vector<DType>& b_dtypes) {
  const Tensor X = as_matrix(c.saved[0]);
  const DType op = X.dtype();
  tensor_list dy(n);
  for (size_t i = 0; i < n; ++i) dy[i] = as_matrix(Autocast::cached_cast(g[i], op));
  tensor_list grads(1 + 2 * n);
  if (c.needs(0)) {
    Tensor dx = empty(X.shape(), opts(x_dtype, X.device()));
    for (size_t i = 0; i < n; ++i) {
      const WeightOperand w = weight_operand(c.saved[1 + i]);
      kc::gemm_into(dx, dy[i], false, w.m, !w.holds_w, i == 0 ? 0.0 : 1.0);
    }
    grads[0] = reshape(dx, x_shape);
  }
  for (size_t i = 0; i < n; ++i) {
    if (c.needs(1 + i)) {
      Tensor dw = empty({dy[i].shape()[1], X.shape()[1]}, opts(w_dtypes[i], X.device()));
      kc::gemm_into(dw, dy[i], true, X, false);
      grads[1 + i] = dw;
    }
    if (c.needs(1 + n + i)) grads[1 + n + i] = to_dtype(sum(reshape(g[i], {-1, g[i].shape().back()}), {0}), b_dtypes[i]);
  }
  return grads;
}

}  // namespace

tensor_list multi_linear(const Tensor& x, const tensor_list& weights, const tensor_list& biases,
                         const std::vector<bool>& low_output) {
  check_args(x, weights, biases, low_output);
  const size_t n = weights.size();
  // The GEMMs' operands: x as [rows, in] and each W_iᵀ, cast as matmul casts them (the same
  // Autocast::cached_cast entries, so x is cast once for all of them and for its neighbours).
  const DType op = kc::product_dtypes(x.dtype(), weights[0].dtype()).low;  // every weight's (check_args)
  const Tensor X = as_matrix(Autocast::cached_cast(reshape(x.detach(), {-1, x.shape().back()}), op));
  tensor_list WT;
  for (const Tensor& w : weights) WT.push_back(Autocast::cached_cast(transpose(w.detach(), 0, 1), op));
  tensor_list ys;
  {
    NoGradGuard ng;
    for (size_t i = 0; i < n; ++i) {
      // The product matmul makes of these operands (the same GEMM), in its output dtype: the
      // product's wide dtype, or the operands' with low_output.
      const DType wide = kc::product_dtypes(x.dtype(), weights[i].dtype()).wide;
      Tensor y = empty({X.shape()[0], WT[i].shape()[1]}, opts(low_output[i] ? op : wide, x.device()));
      const WeightOperand w = weight_operand(WT[i]);
      kc::gemm_into(y, X, false, w.m, w.holds_w);
      if (biases[i].defined()) y = add(y, to_dtype(biases[i], y.dtype()));
      Shape s = x.shape();
      s[s.size() - 1] = WT[i].shape()[1];
      ys.push_back(reshape(y, s));
    }
  }
  tensor_list inputs = {x};
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  inputs.insert(inputs.end(), biases.begin(), biases.end());
  if (!needs_grad(inputs)) return ys;
  // Saved: the operands, then the stand-in values of the create_graph fallback that the operands
  // cannot give exactly: the float32 x (under KeepFloat32Operands) and weights (parameters, or
  // under KeepFloat32Operands).
  const bool keep = Autocast::keep_float32_operands();
  tensor_list saved = {X};
  saved.insert(saved.end(), WT.begin(), WT.end());
  saved.push_back(x.dtype() != op && keep ? x : Tensor());
  for (const Tensor& w : weights) saved.push_back(w.dtype() != op && (keep || (w.is_leaf() && w.requires_grad())) ? w : Tensor());
  for (const Tensor& b : biases) saved.push_back(b);
  std::vector<DType> w_dtypes, b_dtypes;
  for (const Tensor& w : weights) w_dtypes.push_back(w.dtype());
  for (const Tensor& b : biases) b_dtypes.push_back(b.defined() ? b.dtype() : DType::f32);
  const bool amp = Autocast::enabled();
  const DType amp_dtype = Autocast::dtype();
  const DType x_dtype = x.dtype();
  const Shape x_shape = x.shape();
  record("multi_linear", inputs, ys, saved,
         [n, low_output, w_dtypes, b_dtypes, x_shape, x_dtype, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
           if (!GradMode::is_enabled()) return fused_backward(c, g, n, x_shape, x_dtype, w_dtypes, b_dtypes);
           // create_graph: the separate products, recomputed taped on stand-ins and differentiated.
           BackwardCtx values;
           values.needs_input_grad = c.needs_input_grad;
           values.input_edges = c.input_edges;
           {
             NoGradGuard ng;
             const auto kept_or = [&](size_t kept, const Tensor& operand, DType d) {
               return c.saved[kept].defined() ? c.saved[kept] : operand.to(d);
             };
             values.saved.push_back(kept_or(1 + n, reshape(c.saved[0], x_shape), x_dtype));
             for (size_t i = 0; i < n; ++i)
               values.saved.push_back(kept_or(2 + n + i, transpose(c.saved[1 + i], 0, 1), w_dtypes[i]));
             for (size_t i = 0; i < n; ++i) values.saved.push_back(c.saved[2 + 2 * n + i]);
           }
           const CheckpointFn fn = [n, low_output](const tensor_list& a) {
             return linears(a[0], tensor_list(a.begin() + 1, a.begin() + 1 + n), tensor_list(a.begin() + 1 + n, a.end()),
                            low_output);
           };
           return recompute_gradients(fn, values.stand_in_inputs(1 + 2 * n), g, amp, amp_dtype);
         });
  return ys;
}

}  // namespace ttt
