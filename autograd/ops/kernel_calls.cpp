// autograd/ops/kernel_calls.cpp
#include "autograd/ops/kernel_calls.h"

#include <algorithm>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace ttt::kc {

View broadcast_view(const Tensor& t, const Shape& shape) {
  View v = t.view();
  View out;
  out.data = v.data;
  out.dtype = v.dtype;
  out.ndim = shape.size();
  const int lead = shape.size() - t.dim();
  for (int d = 0; d < shape.size(); ++d) {
    out.size[d] = shape[d];
    int td = d - lead;
    if (td < 0 || (t.shape()[td] == 1 && shape[d] != 1)) out.stride[d] = 0;
    else out.stride[d] = t.strides()[td];
  }
  return out;
}

Tensor unary(UnaryOp op, const Tensor& x, double a, double b) {
  Tensor out = empty(x.shape(), opts(x.dtype(), x.device()));
  if (x.numel()) backend(x.device()).unary(op, out.view(), x.view(), a, b);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* who) {
  check_defined(who, a);
  check_defined(who, b);
  check_same_device(who, a, b);
  check_same_dtype(who, a, b);
  Shape s = broadcast_shapes(a.shape(), b.shape(), who);
  Tensor out = empty(s, opts(a.dtype(), a.device()));
  if (out.numel()) backend(a.device()).binary(op, out.view(), broadcast_view(a, s), broadcast_view(b, s));
  return out;
}

Tensor reduce_keepdim(ReduceOp op, const Tensor& x, const std::vector<int>& dims) {
  Shape s = x.shape();
  for (int d : dims) s[d] = 1;
  Tensor out = empty(s, opts(x.dtype(), x.device()));
  if (x.numel() == 0) {
    backend(x.device()).fill(out.view(), 0.0);
    return out;
  }
  backend(x.device()).reduce(op, out.view(), x.view());
  return out;
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor out = empty(x.shape(), opts(x.dtype(), x.device()));
  if (x.numel()) backend(x.device()).unary(UnaryOp::copy, out.view(), x.view());
  return out;
}

bool dense_permuted(const Tensor& x) {
  std::vector<int> dims;
  for (int d = 0; d < x.dim(); ++d)
    if (x.shape()[d] != 1) dims.push_back(d);
  std::stable_sort(dims.begin(), dims.end(), [&](int a, int b) { return x.strides()[a] > x.strides()[b]; });
  int64_t expect = 1;
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
    if (x.strides()[*it] != expect) return false;
    expect *= x.shape()[*it];
  }
  return true;
}

Shape memory_order_strides(const Tensor& like) {
  const int nd = like.dim();
  std::vector<int> order(nd);
  for (int d = 0; d < nd; ++d) order[d] = d;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return like.strides()[a] > like.strides()[b]; });
  Shape strides = like.shape();
  int64_t expect = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    strides[*it] = expect;
    expect *= std::max<int64_t>(like.shape()[*it], 1);
  }
  return strides;
}

Tensor empty_like_layout(const Tensor& like, DType dt) {
  if (like.is_contiguous() || !dense_permuted(like)) return empty(like.shape(), opts(dt, like.device()));
  return empty_dense(like.shape(), like.strides(), dt, like.device());
}

Tensor empty_dense(const Shape& shape, const Shape& strides, DType dt, Device dev) {
  return make_view(empty({shape.numel()}, opts(dt, dev)), shape, strides, 0);
}

Tensor cast_in_layout(const Tensor& x, DType dt) {
  Tensor y = empty_like_layout(x, dt);
  copy_in_memory_order(y, x);
  return y;
}

void copy_in_memory_order(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  std::vector<int> order(dst.dim());
  for (int d = 0; d < dst.dim(); ++d) order[d] = d;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return dst.strides()[a] > dst.strides()[b]; });
  View o = dst.view(), i = src.view(), po = o, pi = i;
  for (int d = 0; d < dst.dim(); ++d) {
    po.size[d] = pi.size[d] = o.size[order[d]];
    po.stride[d] = o.stride[order[d]];
    pi.stride[d] = i.stride[order[d]];
  }
  backend(dst.device()).unary(UnaryOp::copy, po, pi);
}

ProductDtypes product_dtypes(DType a, DType b) {
  const bool amp = Autocast::enabled();
  if (a != b) {
    const DType low = Autocast::dtype();
    const bool mixable = amp && ((a == DType::f32 && b == low) || (b == DType::f32 && a == low));
    return {DType::f32, low, mixable};
  }
  return {a, amp && a == DType::f32 ? Autocast::dtype() : a, true};
}

void gemm_into(const Tensor& c, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, double beta) {
  for (const Tensor* t : {&c, &a, &b})
    if (t->dim() != 2 || (t->shape()[1] > 1 && t->strides()[1] != 1))
      throw std::invalid_argument("gemm_into: expected matrices with unit column stride, got " + t->str());
  check_same_dtype("gemm_into", a, b);
  check_same_device("gemm_into", a, b);
  check_same_device("gemm_into", a, c);
  const int64_t m = a.shape()[trans_a ? 1 : 0], k = a.shape()[trans_a ? 0 : 1];
  const int64_t n = b.shape()[trans_b ? 0 : 1], kb = b.shape()[trans_b ? 1 : 0];
  if (kb != k || c.shape() != Shape{m, n})
    throw std::invalid_argument("gemm_into: shapes do not chain: " + a.shape().str() + (trans_a ? "^T" : "") + " @ " +
                                b.shape().str() + (trans_b ? "^T" : "") + " -> " + c.shape().str());
  GemmArgs g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = m; g.n = n; g.k = k;
  g.beta = beta;
  // A single row's stride is never read; a GEMM still wants it at least the row's length.
  g.a = a.data_ptr(); g.lda = std::max(a.strides()[0], a.shape()[1]);
  g.b = b.data_ptr(); g.ldb = std::max(b.strides()[0], b.shape()[1]);
  g.c = c.data_ptr(); g.ldc = std::max(c.strides()[0], c.shape()[1]);
  g.ab_dtype = a.dtype();
  g.c_dtype = c.dtype();
  backend(c.device()).gemm(g);
}

void check_floating(const Tensor& x, const char* who) {
  check_defined(who, x);
  if (!is_floating(x.dtype()))
    throw std::invalid_argument(std::string(who) + ": expected a floating tensor, got " + x.str());
}

void check_integer(const Tensor& t, const char* who, const char* what) {
  check_defined(who, t, what);
  if (is_floating(t.dtype()))
    throw std::invalid_argument(std::string(who) + ": " + what +
                                " must be an integer tensor (int64, int32 or uint16), got " + t.str());
}

tensor_list wanted_only(const tensor_list& xs, const std::vector<bool>& wanted) {
  tensor_list out;
  for (size_t i = 0; i < wanted.size(); ++i)
    if (wanted[i]) out.push_back(xs[i]);
  return out;
}

tensor_list spread_wanted(const tensor_list& g, const std::vector<bool>& wanted) {
  tensor_list out(wanted.size());
  size_t k = 0;
  for (size_t i = 0; i < wanted.size(); ++i)
    if (wanted[i]) out[i] = g[k++];
  return out;
}

namespace {
// Comparisons of class ids run in float32 (exact below 2^24 classes), float64 beyond.
DType compare_dtype(int64_t classes) { return classes <= (int64_t{1} << 24) ? DType::f32 : DType::f64; }
}  // namespace

void check_targets(const Tensor& tg, int64_t classes, int64_t ignore_index, const Shape& logits_shape) {
  const std::vector<int64_t> t = tg.tolist<int64_t>();
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i] != ignore_index && (t[i] < 0 || t[i] >= classes))
      throw std::invalid_argument("cross_entropy: target " + std::to_string(t[i]) + " (at flat position " +
                                  std::to_string(i) + ") is out of range [0, " + std::to_string(classes) +
                                  ") for logits " + logits_shape.str() + " (ignore_index " +
                                  std::to_string(ignore_index) + ")");
}

Tensor valid_rows(const Tensor& tg, int64_t classes, int64_t ignore_index, DType dt) {
  NoGradGuard ng;
  DType cd = compare_dtype(classes);
  Tensor t = tg.to(cd);
  Tensor ign = scalar_tensor(static_cast<double>(ignore_index), opts(cd, tg.device()));
  return binary(BinaryOp::ne, t, ign, "cross_entropy").to(dt);
}

Tensor onehot_rows(const Tensor& tg, int64_t classes, int64_t ignore_index, DType dt) {
  NoGradGuard ng;
  DType cd = compare_dtype(classes);
  const int64_t rows = tg.numel();
  Tensor ids = arange(0, classes, 1, opts(cd, tg.device()));
  Tensor hit = binary(BinaryOp::eq, reshape(tg.to(cd), {rows, 1}), ids, "cross_entropy");
  return mul(hit, unsqueeze(valid_rows(tg, classes, ignore_index, cd), 1)).to(dt);
}

}  // namespace ttt::kc
