// autograd/ops/linear_cross_entropy.cpp — the LM head and its cross-entropy in one op, over chunks
// of rows, so the [N, V] logits and their gradient never exist at once.
//
//   loss = reduce_r  CE(h_r Wᵀ, t_r)        h [..., d] (N rows), W [V, d], targets [...] integer
//   CE(x, t) = logsumexp(x) - x[t]           (0 for rows with t == ignore_index)
//   "sum": Σ_r;  "mean": Σ_r / n,  n = rows with t != ignore_index (n = 0 gives NaN, as
//   cross_entropy does; the gradients are then 0).
// With s = 1 ("sum") or 1/n ("mean") and P_r = softmax(h_r Wᵀ) - onehot(t_r) (0 for ignored rows):
//   dh_r = s P_r W            dW = s Σ_r P_rᵀ h_r
// Forward, chunk by chunk of `chunk_rows` rows c: logits_c = h_c Wᵀ (one GEMM), the chunk's loss
// and P_c from cross_entropy's own kernels (a local tape: the op on the chunk, differentiated at
// once with the incoming gradient s), then dh_c = P_c W and dW += P_cᵀ h_c (GEMM with beta = 1),
// and the chunk's buffers are dropped. Saved: dh and dW (scaled by s), plus h, W and the targets
// for the create_graph path. Backward multiplies them by the incoming gradient of the loss.
// Peak extra memory: about two chunks of float32 logits (logits and P) plus dW's float32
// accumulator, instead of [N, V] logits, their gradient and its bf16 cast.
//
// Precision, as matmul + cross_entropy would do it: under autocast (autograd/autocast.h) float32
// h and W are multiplied as bf16 with float32 accumulation, as are P and the operands of the
// gradient products; a bfloat16 h and W multiply as bf16 too. The logits and P are float32
// (float64 for float64 inputs, whose chunks take cross_entropy's exact composite path); dW is
// accumulated in float32 (float64) and cast to W's dtype at the end. A bfloat16 model thus gets
// float32 logits where the composite would round them to bf16 (more exact, not bit-identical).
//
// create_graph (grad mode on in backward): the saved gradients are constants, so the backward
// instead re-runs the composite cross_entropy(h Wᵀ, t) taped from the saved h and W
// (autograd/checkpoint.h recompute_gradients), as ttt_linear_scan.cpp does: gradients of
// gradients are exact, at the composite's memory cost.
#include <stdexcept>
#include <string>

#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"

namespace ttt {

namespace {

const char* kOp = "linear_cross_entropy";

// Rows per chunk when the caller leaves it to the op: float32 logits of at most 256 MiB, in
// multiples of 64 rows (2048 rows for a 32000-token vocabulary).
int64_t default_chunk_rows(int64_t vocab) {
  const int64_t rows = (int64_t{256} << 20) / (std::max<int64_t>(vocab, 1) * 4);
  return rows >= 64 ? rows / 64 * 64 : std::max<int64_t>(rows, 1);
}

void check_inputs(const Tensor& h, const Tensor& w, const Tensor& targets, const std::string& reduction,
                  int64_t chunk_rows) {
  kc::check_floating(h, kOp);
  check_defined(kOp, w, "weight");
  kc::check_integer(targets, kOp, "targets");
  check_same_device(kOp, h, w);
  check_same_device(kOp, h, targets);
  check_same_dtype(kOp, h, w);
  if (reduction != "mean" && reduction != "sum")
    throw std::invalid_argument(std::string(kOp) + ": reduction must be \"mean\" or \"sum\", got \"" + reduction +
                                "\" (per-row losses: cross_entropy(matmul(h, W^T), t, ignore_index, \"none\"))");
  if (h.dim() < 1 || w.dim() != 2 || w.shape()[1] != h.shape().back() || w.shape()[0] < 1)
    throw std::invalid_argument(std::string(kOp) + ": expected h [..., d] and weight [V, d] with V >= 1, got h " +
                                h.shape().str() + ", weight " + w.shape().str());
  Shape expect = h.shape();
  expect.pop_back();
  if (targets.shape() != expect)
    throw std::invalid_argument(std::string(kOp) + ": targets " + targets.shape().str() + " do not match h " +
                                h.shape().str() + " (expected targets of shape " + expect.str() + ")");
  if (chunk_rows < 0)
    throw std::invalid_argument(std::string(kOp) + ": chunk_rows must be >= 0 (0: automatic), got " +
                                std::to_string(chunk_rows));
}

// What the forward computed: the reduced loss and, where asked, the scaled gradients.
struct Result {
  Tensor loss;    // scalar, h's dtype
  Tensor dh, dw;  // [N, d] in h's dtype, [V, d] in W's dtype; undefined unless wanted
};

// A chunk's summed loss, added to `total`, and s·P in dtype `low` (the gradient products'
// operand). float32 logits: cross_entropy's kernels called directly, P written as `low` by its
// backward kernel (bf16 under autocast: no float32 P and no cast of it; the same values as
// cross_entropy's loss and its gradient cast). float64: the op's exact composite, differentiated.
// Targets are checked by the caller on the CPU (the CUDA kernels report their own).
Tensor loss_and_scaled_p(const Tensor& logits, const Tensor& t_c, int64_t ignore_index, const Tensor& scale, DType low,
                         Tensor& total) {
  const int64_t n = logits.shape()[0], vocab = logits.shape()[1];
  if (logits.dtype() == DType::f64) {
    GradModeGuard taped(true);
    const Tensor x = logits.detach().set_requires_grad(true);
    const Tensor l = cross_entropy(x, t_c, ignore_index, "sum");
    total = add(total, l.detach());
    return grad({l}, {x}, {scale})[0];
  }
  Tensor loss = empty({n}, opts(DType::f32, logits.device())), lse = empty({n}, opts(DType::f32, logits.device()));
  Tensor p = empty({n, vocab}, opts(low, logits.device()));
  const Tensor dloss = kc::contiguous(expand(reshape(scale.to(DType::f32), {1}), {n}));
  if (n > 0) {
    Backend& be = backend(logits.device());
    be.cross_entropy_fwd(loss.data<float>(), lse.data<float>(), logits.data_ptr(), t_c.data<int64_t>(), n, vocab,
                         ignore_index, logits.dtype());
    be.cross_entropy_bwd(p.data_ptr(), dloss.data<float>(), logits.data_ptr(), lse.data<float>(),
                         t_c.data<int64_t>(), n, vocab, ignore_index, logits.dtype(), low);
  }
  total = add(total, sum(loss).to(total.dtype()));
  return p;
}

// The whole forward (no taping of its own; see the file comment). h2 [N, d] and w contiguous.
Result chunked_forward(const Tensor& h2, const Tensor& w, const Tensor& tg, int64_t ignore_index, bool mean,
                       int64_t chunk_rows, bool want_dh, bool want_dw) {
  const DType dt = h2.dtype();
  const Device dev = h2.device();
  const int64_t rows = h2.shape()[0], d = h2.shape()[1], vocab = w.shape()[0];
  const DType low = kc::product_dtypes(dt, dt).low;  // GEMM operands
  const DType acc = dt == DType::f64 ? DType::f64 : DType::f32;                       // logits, P, dW, sums
  const bool want_grad = want_dh || want_dw;
  NoGradGuard ng;
  const Tensor h_low = kc::contiguous(Autocast::cached_cast(h2, low));
  const Tensor w_low = kc::contiguous(Autocast::cached_cast(w, low));
  // n, and the gradient scale s (1/max(n, 1): with n = 0 every row is ignored and P is 0).
  // (Class ids compare exactly in float64.)
  const Tensor ign = scalar_tensor(static_cast<double>(ignore_index), opts(DType::f64, dev));
  const Tensor count = sum(rsub_scalar(eq(tg.to(DType::f64), ign), 1.0)).to(acc);
  const Tensor scale = mean ? rdiv_scalar(maximum(count, scalar_tensor(1, opts(acc, dev))), 1.0)
                            : scalar_tensor(1, opts(acc, dev));
  Result r;
  if (want_dh) r.dh = empty({rows, d}, opts(dt, dev));
  Tensor dw_acc = want_dw ? zeros({vocab, d}, opts(acc, dev)) : Tensor();
  Tensor total = zeros({}, opts(acc, dev));
  if (want_grad && dt != DType::f64 && h2.device().is_cpu()) kc::check_targets(tg, vocab, ignore_index, {rows, vocab});
  const int64_t step = chunk_rows > 0 ? chunk_rows : default_chunk_rows(vocab);
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t n = std::min(step, rows - r0);
    const Tensor h_c = h_low.narrow(0, r0, n), t_c = tg.narrow(0, r0, n);
    Tensor logits = empty({n, vocab}, opts(acc, dev));
    kc::gemm_into(logits, h_c, false, w_low, true);
    if (!want_grad) {
      total = add(total, cross_entropy(logits, t_c, ignore_index, "sum"));
      continue;
    }
    const Tensor p_low = loss_and_scaled_p(logits, t_c, ignore_index, scale, low, total);
    logits = Tensor();
    if (want_dh) kc::gemm_into(r.dh.narrow(0, r0, n), p_low, false, w_low, false);
    if (want_dw) kc::gemm_into(dw_acc, p_low, true, h_c, false, 1.0);
  }
  r.loss = (mean ? div(total, count) : total).to(dt);
  if (want_dw) r.dw = dw_acc.dtype() == w.dtype() ? dw_acc : dw_acc.to(w.dtype());
  return r;
}

}  // namespace

Tensor linear_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t ignore_index,
                            const std::string& reduction, int64_t chunk_rows) {
  check_inputs(h, weight, targets, reduction, chunk_rows);
  const bool mean = reduction == "mean";
  const int64_t d = h.shape().back(), rows = targets.numel();
  const bool record_node = needs_grad({&h, &weight});
  Tensor h2, w, tg;
  {
    NoGradGuard ng;
    h2 = kc::contiguous(reshape(h.detach(), {rows, d}));
    w = kc::contiguous(weight.detach());
    tg = kc::contiguous(reshape(targets, {rows}).to(DType::i64));
  }
  Result r = chunked_forward(h2, w, tg, ignore_index, mean, chunk_rows, record_node && h.requires_grad(),
                             record_node && weight.requires_grad());
  if (record_node) {
    const Shape h_shape = h.shape();
    const bool amp = Autocast::enabled();
    const DType amp_dtype = Autocast::dtype();
    record(kOp, {h, weight}, {r.loss}, {h, weight, tg, r.dh, r.dw},
           [h_shape, ignore_index, reduction, amp, amp_dtype](BackwardCtx& c, const tensor_list& g) {
             if (!GradMode::is_enabled()) {
               tensor_list out(2);
               if (c.needs(0)) out[0] = reshape(mul(c.saved[3], g[0]), h_shape);
               if (c.needs(1)) out[1] = mul(c.saved[4], g[0]);
               return out;
             }
             // create_graph: differentiate the composite (matmul + cross_entropy), recomputed taped.
             const Tensor tg = c.saved[2];
             const int64_t d = h_shape.back();
             const CheckpointFn composite = [tg, d, ignore_index, reduction](const tensor_list& x) {
               Tensor logits = matmul(reshape(x[0], {-1, d}), transpose(x[1], 0, 1));
               return tensor_list{cross_entropy(logits, tg, ignore_index, reduction)};
             };
             BackwardCtx inputs_only{{c.saved[0], c.saved[1]}, c.needs_input_grad};
             return recompute_gradients(composite, inputs_only, g, amp, amp_dtype);
           });
  }
  return r.loss;
}

}  // namespace ttt
