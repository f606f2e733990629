// layers/ttt_layer.cpp — see ttt_layer.h.
#include "layers/ttt_layer.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/checkpoint.h"
#include "autograd/cuda_graph.h"
#include "autograd/ops.h"
#include "layers/causal_conv.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/ttt_dual.h"
#include "layers/ttt_generic.h"
#include "layers/ttt_layer_internal.h"
#include "layers/ttt_primal.h"

namespace ttt {

using namespace ttt_layer_detail;  // require, cast, weight_of, bias_of

namespace {

SegmentFn segment_fn(const std::string& impl) {
  if (impl == "dual" || impl == "auto" || impl == "fused") return dual_segment;  // composite parts of fused
  if (impl == "primal") return primal_segment;
  if (impl == "generic") return generic_segment;
  throw std::invalid_argument("model.ttt.impl: expected auto | fused | dual | primal | generic, got '" + impl + "'");
}

}  // namespace

double ttt_base_lr(const ModelConfig& cfg) {
  if (cfg.ttt.base_lr > 0) return cfg.ttt.base_lr;
  return cfg.mixer == "ttt_mlp" ? 0.1 : 1.0;
}

double ttt_base_lr_multiplier(const ModelConfig& cfg, int64_t step, int64_t warmup_steps) {
  const double peak = ttt_base_lr(cfg);
  double init = cfg.ttt.base_lr_init;
  if (init < 0) init = cfg.mixer == "ttt_mlp" ? 0.01 : peak;
  if (warmup_steps <= 0 || init == peak) return 1.0;
  const double frac = std::min(1.0, static_cast<double>(std::max<int64_t>(step - 1, 0)) / warmup_steps);
  return (init + frac * (peak - init)) / peak;
}

// --- construction ------------------------------------------------------------------------------

TTTMixer::TTTMixer(const ModelConfig& cfg, Generator& g, std::shared_ptr<InnerModel> inner)
    : c_(cfg.ttt), width_(cfg.d_model), nh_(cfg.n_heads), f_(0), rope_theta_(cfg.rope_theta) {
  require(nh_ > 0 && width_ > 0 && width_ % nh_ == 0,
          "model.d_model (" + std::to_string(width_) + ") must be a positive multiple of model.n_heads (" +
              std::to_string(nh_) + ")");
  f_ = width_ / nh_;
  require(cfg.backbone == "mamba" || cfg.backbone == "transformer",
          "model.backbone: expected mamba | transformer, got '" + cfg.backbone + "'");
  mamba_ = cfg.backbone == "mamba";
  require(c_.mini_batch > 0 || c_.mini_batch == -1,
          "model.ttt.mini_batch: expected a positive size or -1 (whole sequence), got " +
              std::to_string(c_.mini_batch));
  require(!c_.rope || f_ % 2 == 0, "model.ttt.rope needs an even head_dim, got " + std::to_string(f_));
  require(c_.checkpoint_group >= 0, "model.ttt.checkpoint_group must be >= 0, got " +
                                        std::to_string(c_.checkpoint_group));
  require(c_.mlp_cluster == 0 || c_.mlp_cluster == 1 || c_.mlp_cluster == 2 || c_.mlp_cluster == 4,
          "model.ttt.mlp_cluster must be 0 (auto), 1, 2 or 4, got " + std::to_string(c_.mlp_cluster));
  segment_fn(c_.impl);  // validates the name
  impl_ = c_.impl;
  base_lr_ = ttt_base_lr(cfg);
  const double std = cfg.init_std;

  // Projections, in the official order (ttt.py _init_qkvo_proj); bias-free, N(0, 0.02).
  q_proj_ = register_module("q_proj", std::make_shared<Linear>(width_, width_, g, std));
  if (!mamba_) k_proj_ = register_module("k_proj", std::make_shared<Linear>(width_, width_, g, std));
  v_proj_ = register_module("v_proj", std::make_shared<Linear>(width_, width_, g, std));
  o_proj_ = register_module("o_proj", std::make_shared<Linear>(width_, width_, g, std));
  if (mamba_) {
    conv_q_ = register_module("conv_q", std::make_shared<CausalConv1d>(width_, cfg.conv_width, g));
    conv_k_ = register_module("conv_k", std::make_shared<CausalConv1d>(width_, cfg.conv_width, g));
    g_proj_ = register_module("g_proj", std::make_shared<Linear>(width_, width_, g, std));
  }
  // Learnable eta (paper §2.7): per-head gate N(0, 0.02), bias 0 (ttt.py _init_ttt_lr_gate).
  if (c_.learnable_lr) {
    lr_weight_ = register_parameter("learnable_ttt_lr_weight", init_normal({nh_, width_}, g, std));
    lr_bias_ = register_parameter("learnable_ttt_lr_bias", zeros({nh_}));
  }
  // One learnable offset per in-mini-batch index; with b = the whole sequence, per position up to
  // model.max_seq_len.
  max_seq_len_ = cfg.max_seq_len;
  if (c_.learnable_token_idx)
    token_idx_ = register_parameter("learnable_token_idx",
                                    zeros({c_.mini_batch > 0 ? c_.mini_batch : cfg.max_seq_len}));
  // The per-head LN of f (ttt.py _init_ttt_ln): weight 1, bias 0.
  if (c_.ln_residual) {
    norm_w_ = register_parameter("ttt_norm_weight", ones({nh_, f_}));
    norm_b_ = register_parameter("ttt_norm_bias", zeros({nh_, f_}));
  }
  // Official: always there. Without it (and with the Theorem-1 switches) the mixer is linear
  // attention exactly, parameters and draws included (tests/test_ttt_theorem1.cpp).
  if (c_.post_norm) post_norm_ = register_module("post_norm", std::make_shared<LayerNorm>(width_, cfg.norm_eps));
  if (!inner) {
    if (cfg.mixer == "ttt_linear")
      inner = std::make_shared<InnerLinear>(nh_, f_, g, std, c_.learnable_w0, c_.inner_bias);
    else if (cfg.mixer == "ttt_mlp")
      inner = std::make_shared<InnerMLP>(nh_, f_, c_.mlp_expansion, g, std, c_.learnable_w0, c_.inner_bias);
    else
      throw std::invalid_argument("make_ttt_mixer: model.mixer must be ttt_linear | ttt_mlp, got '" + cfg.mixer + "'");
  }
  inner_ = register_module("inner", inner);
}

void TTTMixer::set_impl(const std::string& impl) {
  segment_fn(impl);
  impl_ = impl;
}

void TTTMixer::set_checkpoint_group(int64_t g) {
  require(g >= 0, "TTT checkpoint_group must be >= 0, got " + std::to_string(g));
  c_.checkpoint_group = g;
}

// Inner-loop FLOPs per token of the dual form (forward, 2 per multiply-add), per head with
// f = head_dim, h = MLP hidden, K = mini-batch: TTT-Linear XK W, XQ W, the W update (2f² each) and
// the K-wide XQ XK^T and (eta ∘ A) G (2Kf each); TTT-MLP seven f×h products (14fh) and the two
// layers' attention-like terms (4K(f + h)). The language model already counts 2·|W0| per token
// from the parameter count, so that part is subtracted.
double TTTMixer::extra_flops_per_token(int64_t seq_len) const {
  const double f = static_cast<double>(f_), nh = static_cast<double>(nh_);
  const double K = static_cast<double>(c_.mini_batch > 0 ? std::min(c_.mini_batch, seq_len) : seq_len);
  double inner;
  if (inner_->kind() == "mlp") {
    const double h = static_cast<double>(c_.mlp_expansion) * f;
    inner = 14 * f * h + 4 * K * (f + h);
  } else {
    inner = 6 * f * f + 4 * K * f;
  }
  double counted = 0;
  for (auto& [name, p] : inner_->named_parameters()) counted += 2.0 * static_cast<double>(p.numel());
  return nh * inner - counted;
}

std::shared_ptr<SequenceMixer> make_ttt_mixer(const ModelConfig& cfg, Generator& g) {
  return std::make_shared<TTTMixer>(cfg, g);
}

// --- shared pieces -----------------------------------------------------------------------------

DType TTTMixer::inner_dtype(DType x) const { return x == DType::f64 ? DType::f64 : DType::f32; }

InnerNorm TTTMixer::norm(DType dt) const { return {cast(norm_w_, dt), cast(norm_b_, dt), c_.ln_eps, c_.ln_residual}; }

// tok_i for in-mini-batch indices first .. first+len−1: max(0, 1/(i+1) + θ_tok[i]) (ttt.py get_eta;
// clamp as torch.clamp_min, gradient where the value is >= 0), or 1 (+ θ_tok) without averaging.
// With grad mode off (decoding: every token of every layer asks) the result is kept while θ_tok is
// unchanged: made once instead of an upload and three kernels per call.
Tensor TTTMixer::token_scale(int64_t first, int64_t len, DType dt) const {
  if (GradMode::is_enabled()) return make_token_scale(first, len, dt);
  const uint32_t version = token_idx_.defined() ? token_idx_.version() : 0;
  const void* storage = token_idx_.defined() ? token_idx_.impl()->storage.get() : nullptr;
  const Device dev = q_proj_->weight.device();
  for (const TokenScale& e : token_scales_)
    if (e.first == first && e.len == len && e.dtype == dt && e.version == version && e.storage == storage &&
        e.value.device() == dev) {
      keep_alive_while_captured(e.value);  // a CUDA graph recorded now reads it (autograd/cuda_graph.h)
      return e.value;
    }
  if (token_scales_.size() >= 4) token_scales_.erase(token_scales_.begin());
  token_scales_.push_back({first, len, dt, version, storage, make_token_scale(first, len, dt)});
  return token_scales_.back().value;
}

Tensor TTTMixer::make_token_scale(int64_t first, int64_t len, DType dt) const {
  std::vector<double> v(len);
  for (int64_t i = 0; i < len; ++i) v[i] = c_.token_idx_mean ? 1.0 / static_cast<double>(first + i + 1) : 1.0;
  Device dev = q_proj_->weight.device();
  Tensor tok = from_vector(v, {len}, opts(dt, dev));
  if (!token_idx_.defined()) return tok;
  require(first + len <= token_idx_.shape()[0],
          "TTT layer: with model.ttt.mini_batch=-1 and model.ttt.learnable_token_idx=true a sequence may have at "
          "most model.max_seq_len = " + std::to_string(max_seq_len_) + " tokens, got " + std::to_string(first + len));
  Tensor t = add(tok, cast(narrow(token_idx_, 0, first, len), dt));
  return maximum(t, zeros({len}, opts(dt, dev)));
}

tensor_list TTTMixer::initial_state(int64_t batch, DType dt) const {
  tensor_list W;
  for (const Tensor& w0 : inner_->initial()) {
    if (!w0.defined()) {  // a weight the model does not have (no bias)
      W.push_back(Tensor());
      continue;
    }
    Shape s = w0.shape();
    s.insert(0, batch);
    W.push_back(expand(unsqueeze(cast(w0, dt), 0), s));
  }
  return W;
}

// The parameters the output side reads (the gate, gate_output, o_proj), in Output order.
enum Output : size_t { kPostNorm, kPostNormBias, kGate, kGateBias, kOut, kOutBias };
tensor_list TTTMixer::output_params() const {
  return {weight_of(post_norm_), bias_of(post_norm_), weight_of(g_proj_), bias_of(g_proj_),
          weight_of(o_proj_),    bias_of(o_proj_)};
}

// Runs the scan from state st at absolute position pos0. Forward: the configured form throughout,
// K = T when mini_batch = -1. Decode: whole mini-batches in the configured form, partial ones in
// the primal form (generic stays generic), no checkpointing.
Tensor TTTMixer::run(ScanState& st, const ScanInputs& in0, int64_t pos0, bool decode) {
  const DType dt = in0.lr.dtype();  // the inner dtype; XQ, XK, XV may be bf16 (Note [bf16 activations])
  const ScanInputs in{cast(in0.XQ, dt), cast(in0.XK, dt), cast(in0.XV, dt), in0.lr};
  const int64_t T = in.XQ.shape()[2];
  ScanOptions o;
  o.full = segment_fn(impl_);
  o.partial = decode && segment_fn(impl_) == dual_segment ? primal_segment : o.full;
  o.checkpoint_group = decode ? 0 : c_.checkpoint_group;
  Tensor tok;
  int64_t tok_base = 0;
  if (c_.mini_batch > 0) {
    o.mini_batch = c_.mini_batch;
    tok = token_scale(0, c_.mini_batch, dt);
  } else if (!decode) {
    o.mini_batch = T;  // batch GD over the whole sequence: one mini-batch
    tok = token_scale(0, T, dt);
  } else {
    o.mini_batch = -1;  // decoding a never-ending mini-batch: rows pos0 .. pos0+T−1
    tok = token_scale(pos0, T, dt);
    tok_base = pos0;
  }
  return ttt_scan(*inner_, st, in, tok, tok_base, norm(dt), o);
}

// gate: the gate projection prepare() made (prompt_projections), used when it is what this call's
// gate would be (bf16 heads); undefined: made here.
Tensor TTTMixer::finish(const Tensor& x, const Tensor& heads_out, const Tensor& gate0) {
  const tensor_list p = output_params();
  const bool low = low_gate(x.dtype(), heads_out);
  const Tensor gate = !mamba_ ? Tensor() : gate0.defined() && low ? gate0 : linear(x, p[kGate], p[kGateBias], low);
  return o_proj_->forward(gate_output(gate, heads_out, x.dtype(), p));
}

// Whether the gate and the gated norm run in bf16: bf16 heads (Note [bf16 activations]) from a
// float32 input under autocast.
bool TTTMixer::low_gate(DType x_dtype, const Tensor& heads_out) const {
  return mamba_ && post_norm_ && heads_out.dtype() == DType::bf16 && x_dtype == DType::f32;
}

// post_norm(merged heads), gated by gelu_tanh(gate) with gate = x Wg on the Mamba backbone (ttt.py
// apply_gate; undefined on the Transformer backbone), in the input's dtype x_dtype; p in Output
// order. Norm and gate are one op (gated_layer_norm), which keeps z and x Wg for the backward
// rather than also LN(z) and gelu(x Wg). With bf16 heads (low_gate) the gate is a bf16 product and
// the gated norm reads and writes bf16; o_proj multiplies its bf16 output as it is.
Tensor TTTMixer::gate_output(const Tensor& gate, const Tensor& heads_out, DType x_dtype, const tensor_list& p) const {
  const int64_t B = heads_out.shape()[0], T = heads_out.shape()[2];
  Tensor z = reshape(permute(heads_out, {0, 2, 1, 3}), {B, T, width_});
  if (!low_gate(x_dtype, heads_out)) z = cast(z, x_dtype);
  if (post_norm_ && mamba_) return gated_layer_norm(z, p[kPostNorm], p[kPostNormBias], gate, post_norm_->eps);
  if (post_norm_) z = layer_norm(z, p[kPostNorm], p[kPostNormBias], post_norm_->eps);
  if (mamba_) z = mul(gelu(gate, true), z);
  return z;
}

// --- forward and decoding ----------------------------------------------------------------------

ScanInputs TTTMixer::inner_inputs(const Tensor& x) { return prepare(x, 0, nullptr, nullptr); }

// The fused scan's inputs in its order (see ops.h ttt_linear_scan / ttt_mlp_scan): XQ, XK, XV, lr,
// tok, then the inner weights with biases as [nh, c] (TTT-Linear W0, b0; TTT-MLP W1, b1, W2, b2),
// then the LN weight and bias (undefined without ln_residual).
tensor_list TTTMixer::fused_inputs(const ScanInputs& in) const {
  const DType dt = in.lr.dtype();  // XQ, XK, XV may be bf16 (Note [bf16 activations])
  const InnerNorm n = norm(dt);
  tensor_list x = {in.XQ, in.XK, in.XV, in.lr, token_scale(0, c_.mini_batch, dt)};
  const tensor_list W0 = inner_->initial();
  for (size_t i = 0; i < W0.size(); i += 2) {
    const Tensor& b = W0[i + 1];
    x.push_back(cast(W0[i], dt));
    x.push_back(b.defined() ? reshape(cast(b, dt), {nh_, b.shape().back()}) : Tensor());
  }
  x.push_back(c_.ln_residual ? n.w : Tensor());
  x.push_back(c_.ln_residual ? n.b : Tensor());
  return x;
}

// Why the fused scan does not cover this call (empty when it does).
std::string TTTMixer::fused_unsupported(const ScanInputs& in) const {
  const std::string kind = inner_->kind();
  if (kind != "linear" && kind != "mlp")
    return "the fused scan covers TTT-Linear and TTT-MLP only (model.mixer=ttt_linear | ttt_mlp), not inner model '" +
           kind + "'";
  if (c_.mini_batch <= 0) return "the fused scan needs model.ttt.mini_batch > 0";
  const TTTScanOptions o{c_.checkpoint_group, c_.ln_eps, c_.mlp_cluster, c_.mlp_split_walk};
  if (kind == "mlp") {  // asked without building the inputs: on a GPU the answer is no (dual form)
    const tensor_list W0 = inner_->initial();  // W1, b1, W2, b2
    return ttt_mlp_scan_unsupported(in.XQ, in.lr.dtype(), c_.mini_batch, W0[0].shape().back(), W0[1].defined(),
                                    c_.ln_residual, o);
  }
  const tensor_list x = fused_inputs(in);
  return ttt_linear_scan_unsupported(x[0], x[4], x[6], x[7], o);
}

bool TTTMixer::prefill_in_segments() const {
  return (impl_ == "auto" || impl_ == "fused") && inner_->kind() == "linear" && c_.mini_batch > 0;
}

bool TTTMixer::use_fused(const ScanInputs& in) const {
  if (impl_ != "auto" && impl_ != "fused") return false;
  const std::string why = fused_unsupported(in);
  if (!why.empty() && impl_ == "fused")
    throw std::invalid_argument("model.ttt.impl=fused: " + why + " (use impl=auto to fall back to the dual form)");
  return why.empty();
}

// The fused scan from the initial state in x (fused_inputs' order), with the composite dual form as
// its twin for create_graph: the outputs, then the final state and the accumulators of a partial
// last mini-batch (ops.h ttt_linear_scan / ttt_mlp_scan).
tensor_list TTTMixer::fused_scan(const tensor_list& x, int64_t checkpoint_group) {
  const double eps = c_.ln_eps;
  const TTTScanOptions o{checkpoint_group, eps, c_.mlp_cluster, c_.mlp_split_walk};
  if (inner_->kind() == "mlp") {
    TTTScanComposite composite = [eps](const tensor_list& y) { return dual_mlp_scan(y, eps); };
    return ttt_mlp_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], o, composite);
  }
  TTTScanComposite composite = [eps](const tensor_list& y) { return dual_linear_scan(y, eps); };
  return ttt_linear_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], o, composite);
}

// XQ, XK, XV may be bf16 (Note [bf16 activations]): the scan then keeps them for the backward as
// bf16 and writes its output as bf16 (the CPU reference casts around, ops/ttt_linear_scan.cpp).
Tensor TTTMixer::fused_outputs(const ScanInputs& in) { return fused_scan(fused_inputs(in), c_.checkpoint_group)[0]; }

Tensor TTTMixer::inner_outputs(const ScanInputs& in) {
  if (use_fused(in)) return fused_outputs(in);
  ScanState st;
  st.W = initial_state(in.XQ.shape()[0], in.XQ.dtype());
  return run(st, in, 0, false);
}

Tensor TTTMixer::forward(const Tensor& x) { return finish(x, inner_outputs(inner_inputs(x))); }

// forward(norm(h')) with h' = h + pre(h) that keeps, for the backward, h, the scan's own inputs,
// its output and the gate only (Note [Remat] in ttt_layer.h): the input side (the prelude, the
// norm, the projections and the gate's, the convs, RoPE, the lr gate) and the output side (the
// gated post-norm and o_proj) are two checkpoint regions recomputed in the backward.
ResidualOutput TTTMixer::forward_residual(const Tensor& h, const RMSNorm& norm, const ResidualPrelude* pre) {
  if (!GradMode::is_enabled()) return SequenceMixer::forward_residual(h, norm, pre);
  const double eps = norm.eps;
  const tensor_list out_p = output_params();
  const size_t n_pre = pre ? pre->params.size() : 0;
  // The region outlives this call (its backward recomputes it): it keeps its own copy of the
  // prelude's function; the tensors it reads arrive as the region's inputs.
  const std::function<Tensor(const Tensor&, const tensor_list&)> pre_fn = pre ? pre->fn : nullptr;
  tensor_list args = {h, norm.weight, out_p[kGate], out_p[kGateBias]};
  if (pre) args.insert(args.end(), pre->params.begin(), pre->params.end());
  for (const Tensor& p : input_params()) args.push_back(p);
  // Outputs: XQ, XK, XV, lr, then the gate (Mamba backbone), then h' (with a prelude).
  const tensor_list in_out = checkpoint(
      [this, eps, pre_fn, n_pre](const tensor_list& a) {
        const auto first_input = a.begin() + 4 + static_cast<std::ptrdiff_t>(n_pre);
        // h' = h + pre(h) and its norm in one pass (add_rms_norm; the values of add and rms_norm).
        Tensor h1 = a[0], x;
        if (pre_fn) {
          const tensor_list sum_and_norm = add_rms_norm(h1, pre_fn(h1, tensor_list(a.begin() + 4, first_input)), a[1], eps);
          h1 = sum_and_norm[0];
          x = sum_and_norm[1];
        } else {
          x = rms_norm(h1, a[1], eps);
        }
        const bool low = low_precision_io(x);
        // The gate is one of the input side's products (input_products), in the dtype finish()
        // picks: bf16 heads come only from the fused scan, so where it does not take this call
        // the gate is made again in float32.
        const GateProduct gate{a[2], a[3], post_norm_ && low};
        const ScanInputs in = prepare(x, 0, nullptr, nullptr, tensor_list(first_input, a.end()), low,
                                      mamba_ ? &gate : nullptr);
        tensor_list o = {in.XQ, in.XK, in.XV, in.lr};
        if (mamba_) o.push_back(gate.low && !use_fused(in) ? linear(x, a[2], a[3]) : in.gate);
        if (pre_fn) o.push_back(h1);
        return o;
      },
      args);
  const Tensor heads_out = inner_outputs(ScanInputs{in_out[0], in_out[1], in_out[2], in_out[3]});
  const Tensor gate = mamba_ ? in_out[4] : Tensor();
  const DType x_dtype = h.dtype();
  args = {heads_out, gate};
  args.insert(args.end(), out_p.begin(), out_p.end());
  const Tensor out = checkpoint(
      [this, x_dtype](const tensor_list& a) {
        const tensor_list p(a.begin() + 2, a.end());
        return tensor_list{linear(gate_output(a[1], a[0], x_dtype, p), p[kOut], p[kOutBias])};
      },
      args)[0];
  return {pre ? in_out.back() : h, out};
}

}  // namespace ttt
