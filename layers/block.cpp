// layers/block.cpp — see block.h.
#include "layers/block.h"

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

Block::Block(const ModelConfig& cfg, Generator& g) {
  // Registration order = draw order = the order of the computation.
  if (cfg.backbone == "mamba") {
    pre_conv_norm = register_module("pre_conv_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
    pre_conv = register_module("pre_conv", std::make_shared<CausalConv1d>(cfg.d_model, cfg.conv_width, g));
  }
  seq_norm = register_module("seq_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  mixer = register_module("mixer", make_mixer(cfg, g));
  if (cfg.d_ff > 0) {  // d_ff = 0: a mixer-only block (the Mamba papers' language models)
    ffn_norm = register_module("ffn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
    mlp = register_module("mlp", std::make_shared<SwiGLU>(cfg.d_model, cfg.d_ff, g, cfg.init_std));
  }
}

Residual Block::forward(Residual r) {
  if (pre_conv) r.pending = pre_conv->forward(r.normalized(*pre_conv_norm));
  r.pending = mixer->forward(r.normalized(*seq_norm));
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
  if (mlp) r.pending = mlp->forward(r.normalized(*ffn_norm));
  return r;
}

}  // namespace ttt
