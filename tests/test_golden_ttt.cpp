// tests/test_golden_ttt.cpp — the TTT layers against an independent PyTorch implementation of the
// official semantics (scripts/golden/ttt_reference.py, float64): TTT-Linear and TTT-MLP, Mamba and
// Transformer backbones, 11 tokens with mini-batch 4 (a shorter final mini-batch). Output and the
// gradients of sum(out · w) w.r.t. the input and every parameter, for the dual, primal and generic
// forms and the fused scan (the CPU reference). Parameters load with a strict state dict, so the
// names must match too.
// Also tiny TTT language models (2 blocks, Mamba backbone) against scripts/golden/ttt_lm_reference.py:
// logits, loss, every gradient and a 10-step plain-SGD loss curve.
// Regenerate the files: /usr/bin/python3 scripts/golden/ttt_reference.py (and ttt_lm_reference.py)
// Run: ./build/tests/test_golden_ttt
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "layers/language_model.h"
#include "tests/golden_util.h"
#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

void check_case(const std::string& name) {
  CAPTURE(name);
  nlohmann::json doc = load_golden("ttt_layer_" + name);
  const auto& c = doc.at("config");
  ModelConfig cfg;
  cfg.mixer = c.at("mixer").get<std::string>();
  cfg.backbone = c.at("backbone").get<std::string>();
  cfg.d_model = c.at("d_model").get<int64_t>();
  cfg.n_heads = c.at("n_heads").get<int64_t>();
  cfg.conv_width = c.at("conv_width").get<int64_t>();
  cfg.rope_theta = c.at("rope_theta").get<double>();
  cfg.norm_eps = c.at("norm_eps").get<double>();
  cfg.ttt.mini_batch = c.at("mini_batch").get<int64_t>();
  cfg.ttt.base_lr = c.at("base_lr").get<double>();
  cfg.ttt.ln_eps = c.at("ln_eps").get<double>();
  cfg.ttt.checkpoint_group = 2;
  Generator g(0);
  TTTMixer layer(cfg, g);
  layer.to(DType::f64);
  std::map<std::string, Tensor> sd;
  for (auto& [k, v] : doc.at("params").items()) sd[k] = golden_tensor(v);
  layer.load_state_dict(sd, /*strict=*/true);

  Tensor x = golden_tensor(doc.at("x")).set_requires_grad(true);
  Tensor w = golden_tensor(doc.at("w"));
  Tensor out_ref = golden_tensor(doc.at("out"));
  for (const char* impl : {"fused", "dual", "primal", "generic"}) {
    CAPTURE(impl);
    layer.set_impl(impl);
    Tensor out = layer.forward(x);
    CHECK(scaled_err(out, out_ref) < 1e-12);
    tensor_list inputs{x};
    std::vector<std::string> names{"x"};
    for (auto& [n, p] : layer.named_parameters()) {
      inputs.push_back(p);
      names.push_back(n);
    }
    tensor_list grads = grad({sum(mul(out, w))}, inputs);
    CHECK(names.size() == doc.at("grads").size());
    for (size_t i = 0; i < names.size(); ++i) {
      CAPTURE(names[i]);
      CHECK(scaled_err(grads[i], golden_tensor(doc.at("grads").at(names[i]))) < 1e-10);
    }
  }
}

void check_lm_case(const std::string& name, const std::string& impl) {
  CAPTURE(name);
  CAPTURE(impl);
  nlohmann::json doc = load_golden("ttt_lm_" + name);
  const auto& c = doc.at("config");
  ModelConfig cfg = golden_model_config(c);
  cfg.ttt.mini_batch = c.at("mini_batch");
  cfg.ttt.base_lr = c.at("base_lr");
  cfg.ttt.ln_eps = c.at("ln_eps");
  cfg.ttt.impl = impl;
  LanguageModel lm(cfg);
  lm.to(DType::f64);
  std::map<std::string, Tensor> sd;
  for (auto& [k, v] : doc.at("params").items()) sd[k] = golden_tensor(v);
  lm.load_state_dict(sd, /*strict=*/true);
  const Tensor ids = ids_of(doc.at("ids")), targets = ids_of(doc.at("targets"));

  const double tol = 1e-9;
  CHECK(scaled_err(lm.forward(ids), golden_tensor(doc.at("logits"))) < tol);
  Tensor loss = lm.loss(ids, targets);
  const double want = doc.at("loss");
  CHECK(std::fabs(loss.item() - want) < tol * std::fabs(want));
  lm.zero_grad();
  loss.backward();
  size_t checked = 0;
  for (auto& [k, p] : lm.named_parameters()) {
    CAPTURE(k);
    REQUIRE(p.grad().defined());
    CHECK(scaled_err(p.grad(), golden_tensor(doc.at("grads").at(k))) < tol);
    ++checked;
  }
  CHECK(checked == doc.at("grads").size());

  // 10 plain-SGD steps on the same batch from the same weights: the outer loop trains through the
  // inner loop the same way.
  lm.load_state_dict(sd);
  const double lr = doc.at("sgd_lr");
  const auto curve = doc.at("sgd_losses").get<std::vector<double>>();
  for (size_t step = 0; step < curve.size(); ++step) {
    lm.zero_grad();
    Tensor l = lm.loss(ids, targets);
    CHECK_MESSAGE(std::fabs(l.item() - curve[step]) < tol * std::fabs(curve[step]), "SGD step " << step);
    l.backward();
    NoGradGuard ng;
    for (auto& p : lm.parameters()) p.add_(p.grad(), -lr);
  }
  CHECK(curve.back() < 0.5 * curve.front());
}

}  // namespace

TEST_CASE("golden vs PyTorch: TTT-Linear, Mamba backbone") { check_case("linear_mamba"); }
TEST_CASE("golden vs PyTorch: TTT-MLP, Mamba backbone") { check_case("mlp_mamba"); }
TEST_CASE("golden vs PyTorch: TTT-Linear, Transformer backbone") { check_case("linear_transformer"); }
TEST_CASE("golden vs PyTorch: TTT-MLP, Transformer backbone") { check_case("mlp_transformer"); }

TEST_CASE("golden vs PyTorch: tiny TTT-Linear LM (logits, loss, every gradient, 10 SGD steps)") {
  check_lm_case("linear_mamba", "fused");
  check_lm_case("linear_mamba", "dual");
  check_lm_case("linear_mamba", "generic");
}
TEST_CASE("golden vs PyTorch: tiny TTT-MLP LM (logits, loss, every gradient, 10 SGD steps)") {
  check_lm_case("mlp_mamba", "fused");
  check_lm_case("mlp_mamba", "dual");
  check_lm_case("mlp_mamba", "primal");
}
