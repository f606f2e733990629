// layers/block.cpp — see block.h.
#include "layers/block.h"

#include "autograd/ops.h"
#include "layers/mixer_factory.h"

namespace ttt {

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

Tensor Block::forward(const Tensor& h0) {
  Tensor h = h0;
  if (pre_conv) h = add(h, pre_conv->forward(pre_conv_norm->forward(h)));
  h = add(h, mixer->forward(seq_norm->forward(h)));
  return mlp ? add(h, mlp->forward(ffn_norm->forward(h))) : h;
}

BlockState Block::init_state(int64_t batch) {
  BlockState st;
  if (pre_conv) st.conv_tail = pre_conv->init_tail(batch, pre_conv->weight.dtype(), pre_conv->weight.device());
  st.mixer = mixer->init_state(batch);
  return st;
}

Tensor Block::step(const Tensor& h0, BlockState& st) {
  Tensor h = h0;
  if (pre_conv) h = add(h, pre_conv->step(pre_conv_norm->forward(h), st.conv_tail));
  h = add(h, mixer->step(seq_norm->forward(h), *st.mixer));
  return mlp ? add(h, mlp->forward(ffn_norm->forward(h))) : h;
}

}  // namespace ttt
