// layers/block.cpp — see block.h.
#include "layers/block.h"

#include "autograd/checkpoint.h"
#include "autograd/ops.h"
#include "layers/mixer_factory.h"

namespace ttt {

Tensor Residual::normalized(const RMSNorm& norm) {
  if (!pending.defined()) return norm.forward(h);
  tensor_list sum_and_norm = norm.add_forward(h, pending);
  h = sum_and_norm[0];
  pending = Tensor();
  return sum_and_norm[1];
}

Tensor Residual::settled() {
  if (pending.defined()) h = add(h, pending);
  pending = Tensor();
  return h;
}

Block::Block(const ModelConfig& cfg, Generator& g) : remat_io_(cfg.remat_io) {
  // Registration order = draw order = the order of the computation.
  if (cfg.backbone == "mamba") {
    pre_conv_norm = register_module("pre_conv_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
    pre_conv = register_module("pre_conv", std::make_shared<CausalConv1d>(cfg.d_model, cfg.conv_width, g));
  }
  seq_norm = register_module("seq_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  mixer = register_module("mixer", make_mixer(cfg, g));
  if (cfg.d_ff > 0) {  // d_ff = 0: a mixer-only block (the Mamba papers' language models)
    ffn_norm = register_module("ffn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
    mlp = register_module("mlp", std::make_shared<SwiGLU>(cfg.d_model, cfg.d_ff, g, cfg.init_std, cfg.bf16_activations));
  }
}

// The pre-conv sublayer as a function of the residual: conv(norm(h)) (mamba backbone only).
ResidualPrelude Block::pre_conv_prelude() const {
  const double eps = pre_conv_norm->eps;
  return {[eps](const Tensor& h, const tensor_list& p) { return causal_conv1d(rms_norm(h, p[0], eps), p[1], p[2]); },
          {pre_conv_norm->weight, pre_conv->weight, pre_conv->bias}};
}

// conv(norm(h)), keeping only h for the backward.
Tensor Block::pre_conv_remat(const Tensor& h) const {
  const ResidualPrelude pre = pre_conv_prelude();
  tensor_list args = {h};
  args.insert(args.end(), pre.params.begin(), pre.params.end());
  const CheckpointFn fn = [pre](const tensor_list& a) {
    return tensor_list{pre.fn(a[0], tensor_list(a.begin() + 1, a.end()))};
  };
  return checkpoint(fn, args)[0];
}

Residual Block::forward(Residual r) {
  const bool remat = remat_io_ && GradMode::is_enabled();
  if (remat && mixer->remats_input_norm()) {
    // The mixer's input region recomputes the pre-conv too: the sum after it is stored by no one.
    const ResidualPrelude pre = pre_conv ? pre_conv_prelude() : ResidualPrelude{};
    ResidualOutput o = mixer->forward_residual(r.settled(), *seq_norm, pre_conv ? &pre : nullptr);
    r.h = o.h;
    r.pending = o.out;
  } else {
    if (pre_conv)
      r.pending = remat ? pre_conv_remat(r.settled()) : pre_conv->forward(r.normalized(*pre_conv_norm));
    r.pending = mixer->forward(r.normalized(*seq_norm));
  }
  if (mlp) r.pending = mlp->forward(r.normalized(*ffn_norm));
  return r;
}

BlockState Block::init_state(int64_t batch) {
  BlockState st;
  if (pre_conv) st.conv_tail = pre_conv->init_tail(batch, pre_conv->weight.dtype(), pre_conv->weight.device());
  st.mixer = mixer->init_state(batch);
  return st;
}

Residual Block::step(Residual r, BlockState& st) {
  if (pre_conv) r.pending = pre_conv->step(r.normalized(*pre_conv_norm), st.conv_tail);
  r.pending = mixer->step(r.normalized(*seq_norm), *st.mixer);
  return after_mixer(std::move(r));
}

SplitStep Block::step_begin(Residual& r, BlockState& st) {
  if (pre_conv) r.pending = pre_conv->step(r.normalized(*pre_conv_norm), st.conv_tail);
  return mixer->step_begin(r.normalized(*seq_norm), *st.mixer);
}

Residual Block::step_end(Residual r, SplitStep& split, const tensor_list& scan_outputs) {
  r.pending = split.scan_inputs.empty() ? split.output : split.finish(scan_outputs);
  return after_mixer(std::move(r));
}

Residual Block::after_mixer(Residual r) {
  if (mlp) r.pending = mlp->forward(r.normalized(*ffn_norm));
  return r;
}

}  // namespace ttt
