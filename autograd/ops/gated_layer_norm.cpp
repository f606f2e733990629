// autograd/ops/gated_layer_norm.cpp — a LayerNorm over the last dim gated by gelu_tanh of a second
// input, as one op (the TTT layer's output side on the Mamba backbone; kernels/gated_layer_norm.h
// has the math and the backward's formulas):
//
//   y = gelu_tanh(g) · (xhat · w + b),   xhat = (z − mean(z)) · rstd,   rstd = 1 / sqrt(var(z) + eps)
//
// Saved: z, g, w, b and the kernel's per-row mean and rstd (float32) — not gelu(g) and LN(z), which
// the composite mul(gelu_tanh(g), layer_norm(z, w, b)) keeps beside z and g (two activations fewer
// per TTT layer, and one kernel forward and one backward instead of three and four).
// The result equals that composite up to rounding: the composite rounds LN(z) and gelu(g) to the
// dtype before their product, the kernel keeps them in its compute type.
// bf16 z and g may come with float32 weight and bias (an autocast model's parameters): the kernels
// read them cast to bf16 (rounded once, like the output); dw and db are float32.
// Backward:
// - grad mode off, float32 / bfloat16: the fused kernel, every gradient in one pass over the rows
//   (dw, db summed in a fixed order);
// - create_graph, and float64 always (the saved statistics are float32): the composite re-run taped
//   from the saved inputs and differentiated (recompute_gradients), so higher derivatives are exact.
#include "autograd/autocast.h"
#include "autograd/checkpoint.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/ops/kernel_calls.h"
#include "kernels/gated_layer_norm.h"

namespace ttt {

namespace {

const char* kOp = "gated_layer_norm";

void check_inputs(const Tensor& z, const Tensor& w, const Tensor& b, const Tensor& g) {
  kc::check_floating(z, kOp);
  check_defined(kOp, g, "gate");
  check_same_device(kOp, z, g);
  check_same_dtype(kOp, z, g);
  if (z.dim() == 0) throw std::invalid_argument(std::string(kOp) + ": z must have at least one dim, got a scalar");
  if (z.shape() != g.shape())
    throw std::invalid_argument(std::string(kOp) + ": z " + z.shape().str() + " and gate " + g.shape().str() +
                                " must have the same shape");
  for (const Tensor* p : {&w, &b}) {
    if (!p->defined()) continue;
    check_same_device(kOp, z, *p);
    if (!(z.dtype() == DType::bf16 && p->dtype() == DType::f32)) check_same_dtype(kOp, z, *p);
    if (p->dim() != 1 || p->shape()[0] != z.shape().back())
      throw std::invalid_argument(std::string(kOp) + ": " + (p == &w ? "weight" : "bias") + " must have shape [" +
                                  std::to_string(z.shape().back()) + "] for z " + z.shape().str() + ", got " +
                                  p->shape().str());
  }
}

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// c.saved: z, g, w, b, mean, rstd as the forward saved them (w, b in z's dtype); dw, db are
// returned in param_dtype.
tensor_list fused_backward(const BackwardCtx& c, const Tensor& dy0, DType param_dtype) {
  const Tensor &z = c.saved[0], &g = c.saved[1], &w = c.saved[2], &b = c.saved[3], &mean = c.saved[4],
               &rstd = c.saved[5];
  const Tensor dy = kc::contiguous(dy0);
  GatedLayerNormBackward k;
  k.cols = z.shape().back();
  k.rows = k.cols ? z.numel() / k.cols : 0;
  k.dtype = z.dtype();
  const TensorOptions o = opts(z.dtype(), z.device()), o32 = opts(DType::f32, z.device());
  tensor_list out(4);
  if (c.needs(0)) out[0] = empty(z.shape(), o);
  if (c.needs(3)) out[3] = empty(z.shape(), o);
  Tensor dw = c.needs(1) ? empty({k.cols}, o32) : Tensor(), db = c.needs(2) ? empty({k.cols}, o32) : Tensor();
  k.dy = dy.data_ptr();
  k.z = z.data_ptr();
  k.g = g.data_ptr();
  k.w = ptr_or_null(w);
  k.b = ptr_or_null(b);
  k.mean = mean.data<float>();
  k.rstd = rstd.data<float>();
  k.dz = out[0].defined() ? out[0].data_ptr() : nullptr;
  k.dg = out[3].defined() ? out[3].data_ptr() : nullptr;
  k.dw = dw.defined() ? dw.data<float>() : nullptr;
  k.db = db.defined() ? db.data<float>() : nullptr;
  if (k.cols > 0 && (k.dz || k.dg || k.dw || k.db)) backend(z.device()).run(k);
  if (dw.defined()) out[1] = dw.to(param_dtype);
  if (db.defined()) out[2] = db.to(param_dtype);
  return out;
}

}  // namespace

Tensor gated_layer_norm(const Tensor& z, const Tensor& weight, const Tensor& bias, const Tensor& gate, double eps) {
  check_inputs(z, weight, bias, gate);
  const Tensor zc = kc::contiguous(z), gc = kc::contiguous(gate);
  // The parameters as the kernel reads them: contiguous, in z's dtype. With grad mode off (decoding
  // a prompt under autocast) the cast is the autocast weight cache's: made once per weight version.
  const bool inference = !GradMode::is_enabled();
  const auto kernel_param = [&](const Tensor& t) {
    if (!t.defined()) return t;
    NoGradGuard ng;
    if (t.dtype() == z.dtype()) return kc::contiguous(t);
    return kc::contiguous(inference ? Autocast::cached_cast(t, z.dtype()) : t.detach().to(z.dtype()));
  };
  const Tensor w = kernel_param(weight), b = kernel_param(bias);
  const DType param_dtype = weight.defined() ? weight.dtype() : bias.defined() ? bias.dtype() : z.dtype();
  GatedLayerNormForward k;
  k.cols = z.shape().back();
  k.rows = k.cols ? z.numel() / k.cols : 0;
  k.dtype = z.dtype();
  k.eps = eps;
  Tensor y = empty(z.shape(), opts(z.dtype(), z.device()));
  Tensor mean = empty({k.rows}, opts(DType::f32, z.device())), rstd = empty({k.rows}, opts(DType::f32, z.device()));
  k.z = zc.data_ptr();
  k.g = gc.data_ptr();
  k.w = ptr_or_null(w);
  k.b = ptr_or_null(b);
  k.y = y.data_ptr();
  k.mean = mean.data<float>();
  k.rstd = rstd.data<float>();
  if (y.numel()) backend(z.device()).run(k);
  if (needs_grad({&z, &weight, &bias, &gate})) {
    // Saved: the contiguous z and g the kernel read (z and g themselves when contiguous), w, b and
    // the kernel's statistics. The composite fallback differentiates stand-ins of them attached
    // to the inputs' edges (BackwardCtx::input_stand_in), as the copies have no history.
    // (The parameters' stand-ins are the kernel's copies in the parameters' dtype.)
    record(kOp, {z, weight, bias, gate}, {y}, {zc, gc, w, b, mean, rstd},
           [eps, param_dtype](BackwardCtx& c, const tensor_list& g) {
      if (!GradMode::is_enabled() && c.saved[0].dtype() != DType::f64) return fused_backward(c, g[0], param_dtype);
      const auto stand_in = [&](size_t input, const Tensor& t, DType d) {
        return t.defined() ? c.input_stand_in(input, t.dtype() == d ? t : t.to(d)) : t;
      };
      const DType zd = c.saved[0].dtype();
      const BackwardCtx inputs{{stand_in(0, c.saved[0], zd), stand_in(1, c.saved[2], param_dtype),
                                stand_in(2, c.saved[3], param_dtype), stand_in(3, c.saved[1], zd)},
                               c.needs_input_grad};
      const CheckpointFn composite = [eps](const tensor_list& x) {
        const auto as_z = [&](const Tensor& p) { return p.defined() ? to_dtype(p, x[0].dtype()) : p; };
        return tensor_list{mul(gelu(x[3], true), layer_norm(x[0], as_z(x[1]), as_z(x[2]), eps))};
      };
      return recompute_gradients(composite, inputs, g, false, DType::f32);
    });
  }
  return y;
}

}  // namespace ttt
