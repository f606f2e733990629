// tests/test_ttt_e2e_golden.cpp — TTT-E2E against an independent PyTorch implementation
// (scripts/golden/e2e_reference.py: one sequence at a time, per-token K/V lists, complex RoPE,
// torch.autograd.grad(create_graph=True) for the inner steps): per-token losses with the inner
// loop, the outer loss, and its second-order gradient w.r.t. every parameter, float64, with and
// without remat. Cases: 2 updated blocks with the clip active and a shorter last chunk; a
// multi-head MLP' with full attention, no post norms and the clip inactive.
// Regenerate: /usr/bin/python3 scripts/golden/e2e_reference.py
#include <doctest/doctest.h>

#include <map>

#include "autograd/engine.h"
#include "layers/language_model.h"
#include "tests/golden_util.h"

using namespace ttt;
using namespace ttt::testing;
using json = nlohmann::json;

namespace {

ModelConfig e2e_config(const json& c) {
  ModelConfig m;
  m.arch = "e2e";
  m.mixer = "attention";
  m.backbone = "transformer";
  m.vocab_size = c.at("vocab_size");
  m.d_model = c.at("d_model");
  m.n_layers = c.at("n_layers");
  m.n_heads = c.at("n_heads");
  m.d_ff = c.at("d_ff");
  m.window = c.at("window");
  m.rope_theta = c.at("rope_theta");
  m.norm_eps = c.at("norm_eps");
  m.e2e.suffix_blocks = c.at("suffix_blocks");
  m.e2e.chunk = c.at("chunk");
  m.e2e.inner_lr = c.at("inner_lr");
  m.e2e.inner_clip = c.at("inner_clip");
  m.e2e.fast_heads = c.at("fast_heads");
  m.e2e.qk_norm = c.at("qk_norm");
  m.e2e.post_norm = c.at("post_norm");
  return m;
}

void check_case(const std::string& name, bool remat) {
  const json j = load_golden(name);
  ModelConfig cfg = e2e_config(j.at("config"));
  cfg.e2e.remat = cfg.e2e.remat_prefix = remat;
  LanguageModel lm(cfg);
  lm.to(DType::f64);
  const double scale = j.at("config").at("weight_scale");
  std::map<std::string, Tensor> sd;
  for (const auto& [k, w] : j.at("weights").items()) {
    std::vector<double> v;
    for (int64_t x : w.at("data")) v.push_back(static_cast<double>(x) / scale);
    sd[k] = from_vector(v, Shape(w.at("shape").get<std::vector<int64_t>>()), opts(DType::f64));
  }
  lm.load_state_dict(sd);  // strict: our names and shapes are the reference's
  const Tensor ids = ids_of(j.at("ids")), targets = ids_of(j.at("targets"));
  INFO(name, " remat ", remat);
  const double tol = 1e-10;
  {
    NoGradGuard ng;
    CHECK(scaled_err(lm.token_losses(ids, targets), golden_tensor(j.at("token_losses"))) < tol);
  }
  Tensor loss = lm.loss(ids, targets);
  CHECK(std::fabs(loss.item() - j.at("loss").get<double>()) < tol);
  auto named = lm.named_parameters();
  tensor_list params;
  for (const auto& [n, t] : named) params.push_back(t);
  tensor_list g = grad({loss}, params);
  for (size_t i = 0; i < named.size(); ++i) {
    INFO(named[i].first);
    CHECK(scaled_err(g[i], golden_tensor(j.at("grads").at(named[i].first))) < 1e-9);
  }
}

}  // namespace

TEST_CASE("golden: 2 updated blocks, clip active, shorter last chunk") {
  check_case("e2e_tiny", false);
  check_case("e2e_tiny", true);
}

TEST_CASE("golden: multi-head MLP', full attention, no post norms, clip inactive") {
  check_case("e2e_tiny_multihead", false);
  check_case("e2e_tiny_multihead", true);
}
