// trainer/export_schema.h — how our models map onto the two external schemas that `ttt export` /
// `ttt import` speak:
//
//   ttt-pytorch  the official TTT model (test-time-training/ttt-lm-pytorch, ttt.py: TTTForCausalLM,
//                TTTConfig) for TTT-Linear / TTT-MLP in either backbone;
//   hf-llama     Hugging Face transformers' LlamaForCausalLM / LlamaConfig for Transformer++.
//
// Parameter names and layouts (ours -> theirs):
//   embed.weight -> model.embed_tokens.weight; final_norm.weight -> model.norm.weight; lm_head.weight
//   (untied only; tied models store the embedding once, as save_pretrained does).
//   blocks.N.mlp.{w1,w3,w2} -> model.layers.N.mlp.{gate_proj,up_proj,down_proj} (SwiGLU w2(silu(w1 x) * w3 x)).
//   ttt-pytorch: blocks.N.{seq_norm,ffn_norm} keep their names; pre_conv_norm / pre_conv ->
//     model.layers.N.conv.{norm,conv} (conv weight [D, k] -> [D, 1, k], nn.Conv1d's layout);
//     blocks.N.mixer.X -> model.layers.N.seq_modeling_block.X with inner.W1.. -> W1..,
//     learnable_ttt_lr_weight [nh, D] -> [nh, 1, D], learnable_ttt_lr_bias [nh] -> [nh, 1],
//     conv_q / conv_k weight [D, k] -> [D, 1, k]; everything else keeps name and shape.
//   hf-llama: seq_norm -> input_layernorm, ffn_norm -> post_attention_layernorm, mixer.w{q,k,v,o} ->
//     self_attn.{q,k,v,o}_proj. Our RoPE rotates adjacent pairs (x[2i], x[2i+1]); HF Llama rotates
//     (x[i], x[i + d/2]) ("rotate_half"), so the rows of q_proj and k_proj are permuted inside each
//     head, row 2i + j -> j * d/2 + i (the permutation of transformers' convert_llama_weights_to_hf.py).
//     Attention scores are unchanged: q and k get the same permutation.
// Every mapping is a reshape or a row permutation, so export followed by import is bit-exact.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"
#include "layers/model_config.h"

namespace ttt {

enum class ExternalSchema { ttt_pytorch, hf_llama };
const char* schema_name(ExternalSchema s);  // "ttt-pytorch" / "hf-llama"

// The schema that expresses `m` exactly, or std::invalid_argument naming the config key (and the
// value) that neither schema can express, and why.
ExternalSchema external_schema_for(const ModelConfig& m);

// One of our parameters in the external model.
struct ExternalTensor {
  std::string ours;           // "blocks.0.mixer.inner.W1"
  std::string theirs;         // "model.layers.0.seq_modeling_block.W1"
  Shape our_shape, their_shape;
  bool rope_permute = false;  // hf-llama q_proj / k_proj: rows permuted per head (above)
};
// The external name, shape and layout of each of `params` (our names and shapes, e.g. a model's
// named_parameters()); std::logic_error for a name the schema has no place for.
std::vector<ExternalTensor> external_tensors(ExternalSchema s, const ModelConfig& m,
                                             const std::vector<std::pair<std::string, Tensor>>& params);

// Our tensor -> theirs, and back (CPU float32 in, CPU float32 out).
Tensor to_external(const ExternalTensor& e, const Tensor& ours, const ModelConfig& m);
Tensor from_external(const ExternalTensor& e, const Tensor& theirs, const ModelConfig& m);

// config.json in the external schema (TTTConfig's or LlamaConfig's keys; bos/eos ids -1 = null).
nlohmann::json external_config_json(ExternalSchema s, const ModelConfig& m, int bos_id, int eos_id);

// Our model config from a config.json of either schema (keys missing from it take the defaults
// of TTTConfig / LlamaConfig); other fields keep their values in `base`. std::invalid_argument
// naming `origin` and the key for anything our models cannot express (grouped-query attention,
// rope_scaling, biases, another activation, half a Mamba backbone, ...).
ModelConfig model_config_from_external(const nlohmann::json& j, const std::string& origin, ModelConfig base = {});

}  // namespace ttt
