// autograd/ops/attention.cpp — scaled dot-product attention, causal (optionally sliding-window)
// or full, as one tape node over the fused kernels of backend.h (FlashAttention-style: the
// [Tq, Tk] score matrix is never stored).
//
//   q [B,H,Tq,D], k, v [B,H,Tk,D].  Query row i sits at position i + (Tk − Tq): the queries are
//   the LAST Tq positions of the keys (Tq = Tk for training, Tq < Tk to decode new tokens
//   against a KV cache). Causal: row i sees key j iff j <= pos(i) and, with window w > 0,
//   j > pos(i) − w. Not causal: every key (window must be 0).
//
//   S = scale · Q Kᵀ + M   (M = 0 where allowed, −inf elsewhere),  P = softmax(S),  O = P V
// Backward, with dO given and D = rowsum(dO ∘ O) = rowsum(dP ∘ P):
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − D),  dQ = scale · dS K,  dK = scale · dSᵀ Q
// Saved: q, k, v as the kernels read them (a compact copy of one that is a slice of a larger
// storage), the kernel's output and its lse (float32 [B,H,Tq]).
//
// Paths
// - forward: backend(device).attention_fwd when attention_supported(D, dtype) (always on CPU);
//   otherwise the composite formula (matmul, masked_fill, softmax), taped op by op, with a
//   one-time message on stderr per (device, head_dim, dtype).
// - backward, ordinary (grad mode off), float32/bfloat16: the fused attention_bwd kernel;
// - backward with create_graph, and float64 always: the formulas above from differentiable ops
//   (P recomputed by the composite forward), so gradients of gradients are right. float64 skips
//   the kernel because lse is float32, which would cap it at float32 accuracy (as in layer_norm).
// - autocast (autograd/autocast.h): float32 q, k, v run through the kernels as bfloat16; output
//   and gradients come back as float32. Only the bf16 copies of q, k, v are saved (not the
//   float32 inputs: as matmul, see matmul.cpp), so the ordinary backward does not cast them
//   again; with create_graph the composite runs in float32 on their upcasts, standing in for
//   q, k, v (BackwardCtx::input_stand_in), or on q, k, v themselves when a KeepFloat32Operands
//   scope (autograd/autocast.h) had them saved too; in an AutocastCreateGraph scope the composite's
//   products are autocast products (bf16 operands) instead, recorded in the same mode.
// Layouts (AttentionLayout): the kernels read q, k, v and dout where they lie when their rows are
// 16-byte aligned (e.g. [B, T, H, D] projections seen as [B, H, T, D]; anything else is copied
// first), write the output in [B, Tq, H, D] memory order (returned as the [B, H, Tq, D] view, so
// merging the heads afterwards is a free view) and the gradients densely in the memory order of
// q, k, v (their own layouts when those are dense permuted views); under autocast the float32
// output and gradients are cast into those layouts.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

AttentionShape make_shape(const Tensor& q, const Tensor& k, bool causal, int64_t window, double scale) {
  AttentionShape s;
  s.batch = q.shape()[0];
  s.heads = q.shape()[1];
  s.q_len = q.shape()[2];
  s.kv_len = k.shape()[2];
  s.head_dim = q.shape()[3];
  s.causal = causal;
  s.window = window;
  s.scale = scale;
  return s;
}

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, int64_t window) {
  const char* op = "scaled_dot_product_attention";
  kc::check_floating(q, op);
  check_defined(op, k, "k");
  check_defined(op, v, "v");
  check_same_device(op, q, k);
  check_same_device(op, q, v);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  const auto shapes = [&] { return " (q " + q.shape().str() + ", k " + k.shape().str() + ", v " + v.shape().str() + ")"; };
  if (q.dim() != 4 || k.dim() != 4 || k.shape() != v.shape())
    throw std::invalid_argument(std::string(op) + ": expected q [B, H, Tq, D] and k, v [B, H, Tk, D]" + shapes());
  if (q.shape()[0] != k.shape()[0] || q.shape()[1] != k.shape()[1] || q.shape()[3] != k.shape()[3])
    throw std::invalid_argument(std::string(op) + ": q and k must agree in B, H and D" + shapes());
  if (causal && q.shape()[2] > k.shape()[2])
    throw std::invalid_argument(std::string(op) + ": causal attention needs Tq <= Tk (the queries are the last Tq "
                                "positions of the keys)" + shapes());
  if (!causal && k.shape()[2] == 0 && q.shape()[2] > 0)
    throw std::invalid_argument(std::string(op) + ": no keys to attend to" + shapes());
  if (window < 0 || (window > 0 && !causal))
    throw std::invalid_argument(std::string(op) + ": window must be >= 0, and 0 unless causal; got " +
                                std::to_string(window));
}

// --- composite path ---------------------------------------------------------------------------

// [Tq, Tk] float32, 1 where row i must not see key j; undefined when every pair is allowed.
Tensor masked_pairs(const AttentionShape& s, Device dev) {
  if (!s.causal || s.q_len == 0) return Tensor();
  // key_begin and key_end grow with the row: row 0 misses the most future keys, the last row
  // the most keys behind its window.
  if (s.key_end(0) >= s.kv_len && s.key_begin(s.q_len - 1) == 0) return Tensor();  // e.g. one-token decode
  // Positions as float32 are exact below 2^24 (16M tokens).
  const TensorOptions o = opts(DType::f32, dev);
  Tensor pos = reshape(arange(s.q_offset(), s.q_offset() + s.q_len, 1, o), {s.q_len, 1});
  Tensor key = reshape(arange(0, s.kv_len, 1, o), {1, s.kv_len});
  Tensor m = gt(key, pos);  // the future
  if (s.window > 0) m = maximum(m, le(key, add_scalar(pos, -static_cast<double>(s.window))));
  return m;
}

Tensor composite_probs(const Tensor& q, const Tensor& k, const AttentionShape& s) {
  Tensor scores = mul_scalar(matmul(q, transpose(k, -2, -1)), s.scale);
  Tensor m = masked_pairs(s, q.device());
  if (m.defined()) scores = masked_fill(scores, m, -std::numeric_limits<double>::infinity());
  return softmax(scores, -1);
}

tensor_list composite_backward(const BackwardCtx& c, const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const AttentionShape& s) {
  Tensor P = composite_probs(q, k, s);
  Tensor dP = matmul(dout, transpose(v, -2, -1));
  Tensor dS = mul(P, sub(dP, sum(mul(dP, P), {-1}, true)));
  tensor_list g(3);
  if (c.needs(0)) g[0] = mul_scalar(matmul(dS, k), s.scale);
  if (c.needs(1)) g[1] = mul_scalar(matmul(transpose(dS, -2, -1), q), s.scale);
  if (c.needs(2)) g[2] = matmul(transpose(P, -2, -1), dout);
  return g;
}

// --- fused path -------------------------------------------------------------------------------

// Whether the kernels can read or write t [B, H, T, D] of dtype dt where it lies: rows of
// contiguous values, 16-byte aligned with 16-byte multiple strides (AttentionLayout).
bool kernel_layout_ok(const Tensor& t, DType dt) {
  const int64_t unit = 16 / static_cast<int64_t>(dtype_size(dt));
  const Shape& st = t.strides();
  if (t.dtype() != dt || (st[3] != 1 && t.shape()[3] > 1)) return false;
  if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  for (int d = 0; d < 3; ++d)
    if (st[d] < 0 || st[d] % unit != 0) return false;
  return true;
}

AttentionLayout layout_of(const Tensor& t) { return {t.strides()[0], t.strides()[1], t.strides()[2]}; }

// t as a buffer of dtype dt the kernels read in place (AttentionLayout): t itself when its layout
// allows (e.g. a [B, T, H, D] projection seen as [B, H, T, D]), else a contiguous aligned copy.
Tensor kernel_buffer(const Tensor& t, DType dt) {
  if (kernel_layout_ok(t, dt)) return t.detach();
  Tensor c = kc::contiguous(t.dtype() == dt ? t.detach() : t.detach().to(dt));
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = clone(c);
  return c;
}

// x holding only its own elements: x itself, or, when x is a slice of a larger storage, a dense
// copy in x's memory order (what the op saves: a slice would keep the whole storage alive).
Tensor compact(const Tensor& x) {
  if (x.impl()->storage->nbytes <= static_cast<size_t>(x.numel()) * dtype_size(x.dtype())) return x;
  Tensor c = kc::empty_dense(x.shape(), kc::memory_order_strides(x), x.dtype(), x.device());
  kc::copy_in_memory_order(c, x);
  return c;
}

// An uninitialized [B, H, T, D] tensor of dtype dt laid out as [B, T, H, D] in memory: merging
// the heads afterwards (transpose(1, 2) then reshape) is then a free view.
Tensor empty_heads_last(const Shape& bhtd, DType dt, Device dev) {
  Tensor merged = empty({bhtd[0], bhtd[2], bhtd[1], bhtd[3]}, opts(dt, dev));
  return make_view(merged, bhtd, {merged.strides()[0], merged.strides()[2], merged.strides()[1], 1}, 0);
}

void log_fallback_once(const AttentionShape& s, DType dt, Device dev) {
  static std::mutex mu;
  static std::set<std::string> seen;
  const std::string key = dev.str() + " head_dim " + std::to_string(s.head_dim) + " " + dtype_name(dt);
  std::lock_guard<std::mutex> lock(mu);
  if (!seen.insert(key).second) return;
  std::fprintf(stderr,
               "ttt: scaled_dot_product_attention: no fused kernel for %s; using the composite path "
               "(matmul + softmax, O(T^2) memory)\n",
               key.c_str());
}

// Where a gradient for x goes in memory: dense in x's memory order (x's own strides when x is a
// dense permuted view; see the header: Layouts). Kept instead of x when x itself is not saved.
struct GradLayout {
  Shape shape, strides;
  explicit GradLayout(const Tensor& x) : shape(x.shape()), strides(kc::memory_order_strides(x)) {}
};

// x converted to dtype dt in layout l.
Tensor cast_into(const Tensor& x, const GradLayout& l, DType dt) {
  Tensor y = kc::empty_dense(l.shape, l.strides, dt, x.device());
  kc::copy_in_memory_order(y, x);
  return y;
}

// A gradient buffer of dtype dt in layout l, if the kernels can write it there, else contiguous.
Tensor grad_buffer(const GradLayout& l, DType dt, Device dev) {
  Tensor g = kc::empty_dense(l.shape, l.strides, dt, dev);
  return kernel_layout_ok(g, dt) ? g : empty(l.shape, opts(dt, dev));
}

// The fused backward on the kernel buffers of q, k, v (dtype `low`); gradients of dtype dt in the
// layouts of q, k, v (written there by the kernels when low == dt).
tensor_list fused_backward(const Tensor& dout, const tensor_list& bufs, const Tensor& out_low, const Tensor& lse,
                           AttentionShape s, DType low, DType dt, const std::array<GradLayout, 3>& layouts) {
  NoGradGuard ng;
  const Tensor &qb = bufs[0], &kb = bufs[1], &vb = bufs[2];
  const Device dev = qb.device();
  Tensor dob = kernel_buffer(dout, low);
  const bool direct = low == dt;
  Tensor dq = direct ? grad_buffer(layouts[0], low, dev) : empty(qb.shape(), opts(low, dev));
  Tensor dk = direct ? grad_buffer(layouts[1], low, dev) : empty(kb.shape(), opts(low, dev));
  Tensor dv = direct ? grad_buffer(layouts[2], low, dev) : empty(vb.shape(), opts(low, dev));
  s.q = layout_of(qb), s.k = layout_of(kb), s.v = layout_of(vb), s.out = layout_of(out_low), s.dout = layout_of(dob);
  s.dq = layout_of(dq), s.dk = layout_of(dk), s.dv = layout_of(dv);
  if (dq.numel() || dk.numel())
    backend(dev).attention_bwd(dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), dob.data_ptr(), qb.data_ptr(),
                               kb.data_ptr(), vb.data_ptr(), out_low.data_ptr(), lse.data<float>(), s, low);
  if (direct) return {dq, dk, dv};
  return {cast_into(dq, layouts[0], dt), cast_into(dk, layouts[1], dt), cast_into(dv, layouts[2], dt)};
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, int64_t window,
                                    double scale) {
  check_inputs(q, k, v, causal, window);
  const AttentionShape s = make_shape(q, k, causal, window, scale);
  const DType low = kc::product_dtypes(q.dtype(), q.dtype()).low;
  Backend& be = backend(q.device());
  if (!be.attention_supported(s.head_dim, low)) {
    log_fallback_once(s, low, q.device());
    return matmul(composite_probs(q, k, s), v);
  }
  Tensor out_low, lse, out, qb, kb, vb;
  {
    NoGradGuard ng;
    qb = kernel_buffer(q, low), kb = kernel_buffer(k, low), vb = kernel_buffer(v, low);
    // The output in [B, Tq, H, D] memory order (the kernel writes it there when no cast follows).
    out_low = low == q.dtype() ? empty_heads_last(q.shape(), low, q.device()) : empty(q.shape(), opts(low, q.device()));
    lse = empty({s.batch, s.heads, s.q_len}, opts(DType::f32, q.device()));
    AttentionShape sf = s;
    sf.q = layout_of(qb), sf.k = layout_of(kb), sf.v = layout_of(vb), sf.out = layout_of(out_low);
    if (out_low.numel()) be.attention_fwd(out_low.data_ptr(), lse.data<float>(), qb.data_ptr(), kb.data_ptr(),
                                          vb.data_ptr(), sf, low);
    if (low == q.dtype()) {
      out = out_low;
    } else {
      out = empty_heads_last(q.shape(), q.dtype(), q.device());
      kc::copy_in_memory_order(out, out_low);
    }
  }
  if (needs_grad({&q, &k, &v})) {
    // Saved: q, k, v as the kernels read them (under autocast the bf16 buffers, not the inputs),
    // each holding only its own elements (compact: v inside the fused projection's output would
    // otherwise keep q's and k's slots alive too).
    const DType dt = q.dtype();
    const bool casts = low != dt;
    tensor_list saved = {compact(qb), compact(kb), compact(vb), out_low, lse};
    if (casts && Autocast::keep_float32_operands()) saved.insert(saved.end(), {q, k, v});
    const std::array<GradLayout, 3> layouts{GradLayout(q), GradLayout(k), GradLayout(v)};
    const bool graph_at_autocast = casts && Autocast::create_graph_at_autocast();
    record("scaled_dot_product_attention", {q, k, v}, {out}, saved,
           [s, low, dt, casts, layouts, graph_at_autocast](BackwardCtx& c, const tensor_list& g) {
             if (!GradMode::is_enabled() && low != DType::f64)
               return fused_backward(g[0], tensor_list(c.saved.begin(), c.saved.begin() + 3), c.saved[3],
                                     c.saved[4], s, low, dt, layouts);
             Tensor qs = c.saved[0], ks = c.saved[1], vs = c.saved[2];
             if (casts && c.saved.size() == 8) {  // KeepFloat32Operands: the inputs themselves
               qs = c.saved[5], ks = c.saved[6], vs = c.saved[7];
             } else {  // the buffers (float32 upcasts of the casts), standing in for q, k, v
               if (casts) {
                 NoGradGuard ng;
                 qs = qs.to(dt), ks = ks.to(dt), vs = vs.to(dt);
               }
               qs = c.input_stand_in(0, qs), ks = c.input_stand_in(1, ks), vs = c.input_stand_in(2, vs);
             }
             // Taped products are float32 under autocast, or autocast products (AutocastCreateGraph).
             AutocastGuard precision(graph_at_autocast ? low : DType::f32, graph_at_autocast);
             std::optional<AutocastCreateGraph> same_mode;
             if (graph_at_autocast) same_mode.emplace();
             return composite_backward(c, g[0], qs, ks, vs, s);
           });
  }
  return out;
}

}  // namespace ttt
