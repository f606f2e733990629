// layers/ttt_input.cpp — the TTT layer's input side (see ttt_layer.h): from the block's normalized
// input x to the scan's inputs XQ, XK, XV and lr (and the output gate's product, which multiplies
// the same x): the projections, the convs (Mamba backbone), RoPE and the lr gate.
#include <vector>

#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "layers/causal_conv.h"
#include "layers/linear.h"
#include "layers/rope.h"
#include "layers/ttt_layer.h"
#include "layers/ttt_layer_internal.h"

namespace ttt {

using namespace ttt_layer_detail;  // require, cast, weight_of, bias_of

namespace {

// [B, T, nh·f] -> [B, nh, T, f]
Tensor split_heads(const Tensor& x, int64_t nh, int64_t f) {
  const int64_t B = x.shape()[0], T = x.shape()[1];
  return permute(reshape(x, {B, T, nh, f}), {0, 2, 1, 3});
}

}  // namespace

// The parameters the layer's input side reads (prepare), in Input order; undefined where the
// configuration has none. A checkpoint region passes stand-ins for them (forward_residual).
enum Input : size_t { kQ, kQBias, kK, kKBias, kV, kVBias, kConvQ, kConvQBias, kConvK, kConvKBias, kLr, kLrBias };
tensor_list TTTMixer::input_params() const {
  return {weight_of(q_proj_), bias_of(q_proj_), weight_of(k_proj_), bias_of(k_proj_), weight_of(v_proj_),
          bias_of(v_proj_), weight_of(conv_q_), bias_of(conv_q_), weight_of(conv_k_), bias_of(conv_k_),
          lr_weight_, lr_bias_};
}

// Note [bf16 activations]: with model.ttt.bf16_io under bf16 autocast (TTT-Linear or TTT-MLP through
// the fused scan, training and forward), the tensors between the projections and the scan and between
// the scan and o_proj are bf16, written so by their producers: the q/k, v and gate projections
// (linear with low_output), the convs and RoPE (bf16 in, bf16 out), the scan (bf16 XQ, XK, XV in,
// bf16 out) and the gated LayerNorm. The scan multiplies bf16 operands anyway and keeps its state
// and sums in float32; what changes is what is stored between the ops (half the bytes: ~3
// activations of [B, T, d_model] float32 fewer per layer) and what is cast (nothing). Decoding: a
// prompt (step() with several tokens) runs so too, and TTT-Linear's prefill scan then keeps W in
// registers (kernels/cuda/ttt_linear_fwd_warp.cuh); a single token keeps float32 (its state and the
// conv tails are float32; the tails a bf16 prompt leaves hold bf16 values). The composite forms read float32:
// run() casts. TTT-MLP's CUDA kernels read and write the bf16 tensors too; its CPU reference gets
// float32 copies made on the way in (autograd/ops/ttt_mlp_scan.cpp).
bool TTTMixer::low_precision_io(const Tensor& x) const {
  return c_.bf16_io && Autocast::bf16_for(x) &&
         (inner_->kind() == "linear" || inner_->kind() == "mlp") && c_.mini_batch > 0 &&
         (impl_ == "auto" || impl_ == "fused");
}

ScanInputs TTTMixer::prepare(const Tensor& x, int64_t pos0, Tensor* q_tail, Tensor* k_tail) {
  return prepare(x, pos0, q_tail, k_tail, input_params(), low_precision_io(x));
}

ScanInputs TTTMixer::prepare(const Tensor& x, int64_t pos0, Tensor* q_tail, Tensor* k_tail, const tensor_list& p,
                             bool low, const GateProduct* gate) {
  check_defined("TTT layer", x);
  require(x.dim() == 3 && x.shape()[2] == width_,
          "TTT layer: expected input [B, T, " + std::to_string(width_) + "], got " + x.shape().str());
  const int64_t T = x.shape()[1];
  const DType dt = inner_dtype(x.dtype());
  const InputProducts y = input_products(x, p, low, gate);
  Tensor xq = y.q, xk = y.k;
  if (mamba_) {
    // Shared Q/K projection, then separate causal convs (ttt.py get_qkv_projections, share_qk).
    // Decoding steps the modules' convs through their tails (no checkpoint region is involved).
    // A bf16 prompt continues float32 tails (CausalConv1d::step: read rounded to bf16 in the conv's
    // kernel); the tails it leaves (the prompt's last bf16 inputs) are exact in float32.
    xq = q_tail ? conv_q_->step(y.q, *q_tail) : causal_conv1d(y.q, p[kConvQ], p[kConvQBias]);
    xk = k_tail ? conv_k_->step(y.q, *k_tail) : causal_conv1d(y.q, p[kConvK], p[kConvKBias]);
  }
  // Low: the heads stay bf16 (Note [bf16 activations]); else the inner dtype.
  const auto heads = [&](const Tensor& t) { return low ? split_heads(t, nh_, f_) : cast(split_heads(t, nh_, f_), dt); };
  ScanInputs in;
  in.XQ = heads(xq);
  in.XK = heads(xk);
  in.XV = heads(y.v);
  in.gate = y.gate;
  if (c_.rope) {
    // Positions inside the mini-batch, t mod K (ttt.py: position_ids % mini_batch_size).
    std::vector<int64_t> pos(T);
    for (int64_t t = 0; t < T; ++t) pos[t] = c_.mini_batch > 0 ? (pos0 + t) % c_.mini_batch : pos0 + t;
    Tensor pt = from_vector_i64(pos, {T});
    in.XQ = apply_rope(in.XQ, pt, rope_theta_);
    in.XK = apply_rope(in.XK, pt, rope_theta_);
  }
  // lr_j = base_lr · mult · σ(θ_lr,h · x_j + b_h) / f, from the layer's input x (ttt.py get_eta).
  const double scale = base_lr_ * lr_mult_ / static_cast<double>(f_);
  if (c_.learnable_lr)
    in.lr = cast(permute(scaled_sigmoid(y.lr_logits, scale), {0, 2, 1}), dt);  // [B, nh, T]
  else
    in.lr = full({x.shape()[0], nh_, T}, scale, opts(dt, x.device()));
  return in;
}

// The products of x that the input side reads: Q/K (Mamba backbone) or Q and K, V, the gate when
// asked (forward_residual's region makes it with the others), and the lr gate's logits, as one
// multi_linear: the same products, but x's gradient is summed inside their GEMMs rather than by
// three adds of a [B·T, d_model] float32 tensor (125M TTT-MLP at 8 × 2048: 36 adds of 50 MB
// operands a step). A bf16 prompt (grad mode off, Mamba backbone, no region) multiplies [Wqk; Wv;
// Wg] at once instead (prompt_projections). The region takes multi_linear in its forward too (grad
// mode is off there), so that its recomputation in the backward makes the same values.
TTTMixer::InputProducts TTTMixer::input_products(const Tensor& x, const tensor_list& p, bool low,
                                                 const GateProduct* gate) {
  InputProducts r;
  const Tensor lr_w = cast(p[kLr], x.dtype()), lr_b = cast(p[kLrBias], x.dtype());
  if (mamba_ && low && !GradMode::is_enabled() && g_proj_ && !gate) {
    const tensor_list y = prompt_projections(x);
    r.q = y[0], r.v = y[1], r.gate = y[2];
    if (c_.learnable_lr) r.lr_logits = linear(x, lr_w, lr_b);
    return r;
  }
  std::vector<Tensor*> outs;
  tensor_list w, b;
  std::vector<bool> lows;
  const auto product = [&](Tensor* out, const Tensor& wi, const Tensor& bi, bool l) {
    outs.push_back(out);
    w.push_back(wi);
    b.push_back(bi);
    lows.push_back(l);
  };
  product(&r.q, p[kQ], p[kQBias], low);
  if (!mamba_) product(&r.k, p[kK], p[kKBias], low);
  product(&r.v, p[kV], p[kVBias], low);
  if (gate) product(&r.gate, gate->w, gate->b, gate->low);
  if (c_.learnable_lr) product(&r.lr_logits, lr_w, lr_b, false);
  const tensor_list y = multi_linear(x, w, b, lows);
  for (size_t i = 0; i < outs.size(); ++i) *outs[i] = y[i];
  return r;
}

// A prompt under bf16 autocast with grad mode off (prepare's low path, Mamba backbone): the Q/K,
// V and gate projections of x as one product, [Wqk; Wv; Wg] concatenated in bf16 (made again when
// a weight changes), each output a column slice of it. The same bf16 operands and float32 sums as
// three products (linear with low output), at a third of the launches: at batch 1 × 4,096 tokens
// three products of N = 768 leave an H200 mostly idle.
tensor_list TTTMixer::prompt_projections(const Tensor& x) {
  const tensor_list p = {q_proj_->weight, q_proj_->bias, v_proj_->weight, v_proj_->bias, g_proj_->weight, g_proj_->bias};
  const uint64_t stamp = data_stamp(p);
  const DType low = Autocast::dtype();
  if (!prompt_proj_.w.defined() || prompt_proj_.stamp != stamp || prompt_proj_.w.device() != x.device() ||
      prompt_proj_.w.dtype() != low) {
    prompt_proj_.w = cat({p[0], p[2], p[4]}, 0).to(low);
    // The biases in the dtype linear() adds them in (the product's); a missing one as zeros.
    const bool bias = p[1].defined() || p[3].defined() || p[5].defined();
    const auto b = [&](const Tensor& t) { return t.defined() ? t : zeros({width_}, opts(p[0].dtype(), x.device())); };
    prompt_proj_.b = bias ? cat({b(p[1]), b(p[3]), b(p[5])}, 0).to(low) : Tensor();
    prompt_proj_.stamp = stamp;
  }
  const Tensor y = linear(x, prompt_proj_.w, prompt_proj_.b, /*low_output=*/true);
  const int64_t n = width_;
  return {narrow(y, 2, 0, n), narrow(y, 2, n, n), narrow(y, 2, 2 * n, n)};
}

}  // namespace ttt
