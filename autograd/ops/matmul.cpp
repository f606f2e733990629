// autograd/ops/matmul.cpp — (batched, broadcasting) matrix product through backend gemm.
//
//   C = A @ B          A [..., m, k], B [..., k, n], batch dims broadcast
//   dA = sum_to(dC @ B^T, A.shape)
//   dB = sum_to(A^T @ dC, B.shape)
// 1-D operands follow numpy: a vector on the left is a row (1, k), on the right a column (k, 1).
// Under autocast (autograd/autocast.h) float32 operands are multiplied as bf16 with float32
// accumulation and output; the backward's products do the same, except with create_graph, where
// they are differentiable float32 matmuls. Saved under autocast: the bf16 casts made by the
// forward (Autocast::cached_cast, shared with neighbouring products of the same input), which the
// ordinary backward multiplies directly (it casts only dC, once for both dA and dB), and of the
// float32 operands only those that are parameters (alive anyway). A float32 activation is not
// kept for a create_graph that most backwards never do (it would double what a product keeps:
// 3.4 GB of the 125M TTT-Linear at 8 x 2048): a taped backward multiplies, in float32, the
// upcasts of the casts standing in for the operands (BackwardCtx::input_stand_in), i.e. the
// values the forward multiplied, and differentiates through them to the operands as usual
// (a KeepFloat32Operands scope keeps the float32 operands instead: autograd/autocast.h). A product
// recorded in an AutocastCreateGraph scope differentiates under create_graph as autocast products
// instead (bf16 operands, float32 accumulation), recorded in the same mode.
// Mixed operands under autocast: one bf16 operand and one float32 (a bf16 activation times a
// float32 weight) multiply like two float32 ones (the float32 one is cast); the result is float32
// and each gradient comes back in its input's dtype. matmul_low_output returns the product in
// the autocast dtype instead (the GEMM writes bf16): for an activation whose consumers read bf16
// anyway, it saves the float32 write, the cast that would follow and half of what they keep.
// Transposed and sliced operands are passed to the GEMM as they are (lda + transpose flags);
// only layouts a GEMM cannot express are copied.
#include <optional>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

struct MatLayout {
  bool trans = false;
  int64_t ld = 0;
};

// How to pass a [rows, cols] matrix with strides (sr, sc) to a row-major GEMM, if possible:
// row-major (unit column stride) or transposed (unit row stride), with a valid leading dim.
bool matrix_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc, MatLayout& L) {
  if (cols == 1 || sc == 1) {
    L.trans = false;
    L.ld = rows == 1 ? std::max<int64_t>(cols, 1) : sr;
    if (L.ld >= std::max<int64_t>(cols, 1)) return true;
  }
  if (rows == 1 || sr == 1) {
    L.trans = true;
    L.ld = cols == 1 ? std::max<int64_t>(rows, 1) : sc;
    if (L.ld >= std::max<int64_t>(rows, 1)) return true;
  }
  return false;
}

// Do the batch dims (the first nb) of t collapse into a single batch stride?
bool batch_stride(const Tensor& t, int nb, int64_t& stride) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride) of dims with size > 1
  for (int d = 0; d < nb; ++d)
    if (t.shape()[d] != 1) dims.emplace_back(t.shape()[d], t.strides()[d]);
  stride = dims.empty() ? 0 : dims.back().second;
  for (size_t i = 0; i + 1 < dims.size(); ++i)
    if (dims[i].second != dims[i + 1].second * dims[i + 1].first) return false;
  return true;
}

// C = A @ B for A [batch..., m, k], B [batch..., k, n] (same batch dims), C fresh, of dtype out.
Tensor gemm_batched(Tensor A, Tensor B, DType out) {
  const int nd = A.dim();
  const int nb = nd - 2;
  const int64_t m = A.shape()[nd - 2], k = A.shape()[nd - 1], n = B.shape()[nd - 1];
  Shape cs = A.shape();
  cs[nd - 1] = n;
  Tensor C = empty(cs, opts(out, A.device()));
  if (C.numel() == 0) return C;
  int64_t batch = 1;
  for (int d = 0; d < nb; ++d) batch *= cs[d];

  MatLayout la, lb;
  int64_t sa = 0, sb = 0;
  if (!matrix_layout(m, k, A.strides()[nd - 2], A.strides()[nd - 1], la) || !batch_stride(A, nb, sa)) {
    A = kc::contiguous(A);
    matrix_layout(m, k, A.strides()[nd - 2], A.strides()[nd - 1], la);
    batch_stride(A, nb, sa);
  }
  if (!matrix_layout(k, n, B.strides()[nd - 2], B.strides()[nd - 1], lb) || !batch_stride(B, nb, sb)) {
    B = kc::contiguous(B);
    matrix_layout(k, n, B.strides()[nd - 2], B.strides()[nd - 1], lb);
    batch_stride(B, nb, sb);
  }
  GemmArgs g;
  g.trans_a = la.trans;
  g.trans_b = lb.trans;
  g.m = m; g.n = n; g.k = k;
  g.a = A.data_ptr(); g.lda = la.ld; g.stride_a = sa;
  g.b = B.data_ptr(); g.ldb = lb.ld; g.stride_b = sb;
  g.c = C.data_ptr(); g.ldc = n; g.stride_c = m * n;
  g.batch = batch;
  g.ab_dtype = A.dtype();
  g.c_dtype = C.dtype();
  backend(A.device()).gemm(g);
  return C;
}

// The product itself, no taping: numpy 1-D rules, batch broadcasting, operands of dtype `low`
// (cast first where they are not), output of dtype `out`. Casts are made of the un-broadcast
// operands (casting an expanded view would materialize it).
Tensor product(const Tensor& a0, const Tensor& b0, DType low, DType out) {
  Tensor a = Autocast::cached_cast(a0, low), b = Autocast::cached_cast(b0, low);
  const bool vec_a = a.dim() == 1, vec_b = b.dim() == 1;
  if (vec_a) a = make_view(a, {1, a.shape()[0]}, {0, a.strides()[0]}, a.offset());
  if (vec_b) b = make_view(b, {b.shape()[0], 1}, {b.strides()[0], 0}, b.offset());
  const int64_t ka = a.shape()[a.dim() - 1], kb = b.shape()[b.dim() - 2];
  if (ka != kb)
    throw std::invalid_argument("matmul: inner dimensions differ: " + a0.shape().str() + " @ " + b0.shape().str());
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape bs = broadcast_shapes(ba, bb, "matmul (batch dims)");
  Shape as = bs, bsh = bs;
  as.push_back(a.shape()[a.dim() - 2]);
  as.push_back(ka);
  bsh.push_back(kb);
  bsh.push_back(b.shape()[b.dim() - 1]);
  NoGradGuard ng;
  Tensor C = gemm_batched(a.shape() == as ? a : expand(a, as), b.shape() == bsh ? b : expand(b, bsh), out);
  Shape shape = bs;
  if (!vec_a) shape.push_back(C.shape()[C.dim() - 2]);
  if (!vec_b) shape.push_back(C.shape()[C.dim() - 1]);
  return shape == C.shape() ? C : make_view(C, shape, contiguous_strides(shape), 0);
}

// x (a saved bf16 cast) as dtype d, untaped.
Tensor upcast(const Tensor& x, DType d) {
  NoGradGuard ng;
  return x.to(d);
}

// The dtypes of an autocast product of a0 and b0 (kc::product_dtypes), or a clear error.
kc::ProductDtypes product_dtypes(const Tensor& a0, const Tensor& b0) {
  const kc::ProductDtypes d = kc::product_dtypes(a0.dtype(), b0.dtype());
  if (!d.ok)
    throw std::invalid_argument(std::string("matmul: operands of different dtypes (") + dtype_name(a0.dtype()) +
                                " and " + dtype_name(b0.dtype()) +
                                ") multiply only under autocast, as its dtype and float32");
  return d;
}

Tensor matmul_as(const Tensor& a0, const Tensor& b0, bool low_output) {
  check_defined("matmul", a0);
  check_defined("matmul", b0);
  check_same_device("matmul", a0, b0);
  kc::check_floating(a0, "matmul");
  kc::check_floating(b0, "matmul");
  if (a0.dim() == 0 || b0.dim() == 0) throw std::invalid_argument("matmul: operands must have at least 1 dim");
  const kc::ProductDtypes dtypes = product_dtypes(a0, b0);
  const DType wide = dtypes.wide, low = dtypes.low;
  const DType out = low_output ? low : wide;
  // The operands as the GEMM reads them (the autocast casts, or the inputs themselves).
  const Tensor a_low = Autocast::cached_cast(a0.detach(), low), b_low = Autocast::cached_cast(b0.detach(), low);
  Tensor y = product(a_low, b_low, low, out);
  if (needs_grad({&a0, &b0})) {
    const bool vec_a = a0.dim() == 1, vec_b = b0.dim() == 1;
    const DType a_dtype = a0.dtype(), b_dtype = b0.dtype();
    // Saved: the inputs; under autocast the operands the GEMM read instead (casts, or the inputs
    // already in its dtype), plus the float32 inputs that are parameters (all of them under
    // KeepFloat32Operands).
    const bool casts = low != wide, keep = Autocast::keep_float32_operands();
    const bool graph_at_autocast = casts && Autocast::create_graph_at_autocast();
    const auto kept = [keep, low](const Tensor& t) {
      return t.dtype() != low && (keep || (t.is_leaf() && t.requires_grad())) ? t : Tensor();
    };
    const tensor_list saved = casts ? tensor_list{a_low, b_low, kept(a0), kept(b0)} : tensor_list{a0, b0};
    record("matmul", {a0, b0}, {y}, saved,
           [vec_a, vec_b, casts, low, wide, a_dtype, b_dtype, graph_at_autocast](BackwardCtx& c, const tensor_list& g) {
      // create_graph: differentiable `wide` products of the inputs (or of their stand-ins: the
      // values the forward multiplied); otherwise the forward's precision, on the operands the
      // forward multiplied, each gradient written in its input's dtype.
      const bool taped = GradMode::is_enabled();
      Tensor A = c.saved[0], B = c.saved[1], dC = g[0];
      const auto as_wide = [wide](const Tensor& t) { return to_dtype(t, wide); };
      if (taped && casts) {
        A = as_wide(c.saved[2].defined() ? c.saved[2] : c.input_stand_in(0, upcast(A, a_dtype)));
        B = as_wide(c.saved[3].defined() ? c.saved[3] : c.input_stand_in(1, upcast(B, b_dtype)));
        dC = as_wide(dC);
      }
      Shape sa = c.saved[0].shape(), sb = c.saved[1].shape();
      if (vec_a) A = unsqueeze(A, 0);
      if (vec_b) B = unsqueeze(B, 1);
      if (vec_a) dC = unsqueeze(dC, vec_b ? 0 : -2);
      if (vec_b) dC = unsqueeze(dC, -1);
      // Taped products are `wide` even inside an autocast scope, or autocast products recorded in
      // the same mode (AutocastCreateGraph at the forward); the ordinary backward's are explicit.
      const bool at_autocast = taped && graph_at_autocast;
      AutocastGuard precision(at_autocast ? low : DType::f32, at_autocast);
      std::optional<AutocastCreateGraph> same_mode;
      if (at_autocast) same_mode.emplace();
      if (at_autocast && !vec_a && !vec_b) {
        // The products below read Aᵀ and Bᵀ as bf16: that is the forward's casts (the stand-ins hold
        // their upcasts, or the float32 operands they were cast from), so hand those over instead
        // of casting again.
        NoGradGuard ng;
        Autocast::remember_cast(transpose(A, -2, -1), transpose(c.saved[0], -2, -1));
        Autocast::remember_cast(transpose(B, -2, -1), transpose(c.saved[1], -2, -1));
      }
      if (!taped) dC = Autocast::cached_cast(dC, low);  // once, for both products
      const auto mm = [&](const Tensor& x, const Tensor& w, DType o) {
        return taped ? to_dtype(matmul(x, w), o) : product(x, w, low, o);
      };
      Tensor dA, dB;
      if (c.needs(0)) dA = reshape(sum_to(mm(dC, transpose(B, -2, -1), a_dtype), vec_a ? Shape{1, sa[0]} : sa), sa);
      const Tensor& B0 = c.saved[1];
      const bool weight_t = !taped && A.dim() == 2 && B0.dim() == 2 && sb[0] > 1 && sb[1] > 1 &&
                            B0.strides()[0] == 1 && B0.strides()[1] == sb[0];
      if (c.needs(1) && weight_t)  // B = Wᵀ of a contiguous W (Linear): dB as (dCᵀ A)ᵀ, laid out like W
        dB = transpose(mm(transpose(dC, -2, -1), A, b_dtype), 0, 1);
      else if (c.needs(1))
        dB = reshape(sum_to(mm(transpose(A, -2, -1), dC, b_dtype), vec_b ? Shape{sb[0], 1} : sb), sb);
      return tensor_list{dA, dB};
    });
  }
  return y;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) { return matmul_as(a, b, false); }
Tensor matmul_low_output(const Tensor& a, const Tensor& b) { return matmul_as(a, b, true); }

}  // namespace ttt
