// tests/test_golden_baselines.cpp — the baseline mixers against an independent PyTorch implementation
// written from the equations (scripts/golden/baselines_reference.py, float64: per-token recurrences,
// TTT-KVB's inner gradient by autograd): Mamba, Mamba 2 (two groups), Gated DeltaNet, TTT-KVB with
// weight norm, TTT-KVB + SWA. 11 tokens, so chunks (3 or 4) end with a partial one. Output and the
// gradients of sum(out · w) w.r.t. the input and every parameter; parameters load with a strict state
// dict, so the names must match too. Mamba 2 and Gated DeltaNet are checked in both the chunked form
// (the training path) and the recurrent one, and decoding token by token reproduces the output.
// Regenerate the files: /usr/bin/python3 scripts/golden/baselines_reference.py
// Run: ./build/tests/test_golden_baselines
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "layers/gated_deltanet.h"
#include "layers/mamba2.h"
#include "layers/mixer_factory.h"
#include "tests/golden_util.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig config_of(const nlohmann::json& c) {
  ModelConfig cfg;
  cfg.mixer = c.at("mixer").get<std::string>();
  cfg.backbone = "transformer";
  cfg.d_model = c.at("d_model");
  cfg.n_heads = c.at("n_heads");
  cfg.norm_eps = c.at("norm_eps");
  cfg.rope_theta = c.at("rope_theta");
  cfg.window = c.at("window");
  if (cfg.mixer == "mamba") {
    cfg.mamba.d_state = c.at("d_state");
    cfg.mamba.expand = c.at("expand");
    cfg.mamba.d_conv = c.at("d_conv");
    cfg.mamba.dt_rank = c.at("dt_rank");
    cfg.mamba.scan_chunk = 4;
  } else if (cfg.mixer == "mamba2") {
    cfg.mamba2.d_state = c.at("d_state");
    cfg.mamba2.head_dim = c.at("head_dim");
    cfg.mamba2.expand = c.at("expand");
    cfg.mamba2.n_groups = c.at("n_groups");
    cfg.mamba2.d_conv = c.at("d_conv");
    cfg.mamba2.chunk = c.at("chunk");
    cfg.mamba2.norm_eps = c.at("norm_eps");
  } else if (cfg.mixer == "gated_deltanet") {
    cfg.gdn.n_heads = c.at("n_heads");
    cfg.gdn.head_dim = c.at("head_dim");
    cfg.gdn.expand_v = c.at("expand_v");
    cfg.gdn.d_conv = c.at("d_conv");
    cfg.gdn.chunk = c.at("chunk");
    cfg.gdn.norm_eps = c.at("norm_eps");
  } else {
    cfg.kvb.n_heads = c.at("kvb_heads");
    cfg.kvb.hidden_mult = c.at("hidden_mult");
    cfg.kvb.mini_batch = c.at("mini_batch");
    cfg.kvb.weight_norm = c.at("weight_norm");
  }
  return cfg;
}

void check_against(SequenceMixer& layer, const nlohmann::json& doc, const std::string& form) {
  CAPTURE(form);
  Tensor x = golden_tensor(doc.at("x")).set_requires_grad(true);
  Tensor out = layer.forward(x);
  CHECK(scaled_err(out, golden_tensor(doc.at("out"))) < 1e-12);
  tensor_list inputs{x};
  std::vector<std::string> names{"x"};
  for (auto& [n, p] : layer.named_parameters()) {
    inputs.push_back(p);
    names.push_back(n);
  }
  tensor_list grads = grad({sum(mul(out, golden_tensor(doc.at("w"))))}, inputs);
  CHECK(names.size() == doc.at("grads").size());
  for (size_t i = 0; i < names.size(); ++i) {
    CAPTURE(names[i]);
    CHECK(scaled_err(grads[i], golden_tensor(doc.at("grads").at(names[i]))) < 1e-10);
  }
}

void check_case(const std::string& name) {
  CAPTURE(name);
  nlohmann::json doc = load_golden("baseline_layer_" + name);
  const ModelConfig cfg = config_of(doc.at("config"));
  Generator g(0);
  auto layer = make_mixer(cfg, g);
  layer->to(DType::f64);
  std::map<std::string, Tensor> sd;
  for (auto& [k, v] : doc.at("params").items()) sd[k] = golden_tensor(v);
  layer->load_state_dict(sd, /*strict=*/true);
  check_against(*layer, doc, "forward");
  if (auto* m = dynamic_cast<Mamba2Mixer*>(layer.get())) {
    m->set_recurrent(true);
    check_against(*layer, doc, "recurrent");
  }
  if (auto* m = dynamic_cast<GatedDeltaNetMixer*>(layer.get())) {
    m->set_recurrent(true);
    check_against(*layer, doc, "recurrent");
  }
  // Decoding token by token from the O(1) state.
  NoGradGuard ng;
  Tensor x = golden_tensor(doc.at("x")), want = golden_tensor(doc.at("out"));
  auto st = layer->init_state(x.shape()[0]);
  tensor_list ys;
  for (int64_t t = 0; t < x.shape()[1]; ++t) ys.push_back(layer->step(x.narrow(1, t, 1), *st));
  CHECK(scaled_err(cat(ys, 1), want) < 1e-12);
}

}  // namespace

TEST_CASE("golden vs PyTorch: Mamba") { check_case("mamba"); }
TEST_CASE("golden vs PyTorch: Mamba 2 (two groups)") { check_case("mamba2"); }
TEST_CASE("golden vs PyTorch: Gated DeltaNet") { check_case("gated_deltanet"); }
TEST_CASE("golden vs PyTorch: TTT-KVB (weight norm)") { check_case("ttt_kvb"); }
TEST_CASE("golden vs PyTorch: TTT-KVB + SWA") { check_case("ttt_kvb_swa"); }
