// tests/test_golden_transformer.cpp — our tiny language models against an independent PyTorch
// implementation (scripts/golden/transformer_reference.py, float64): logits, loss, the gradient of
// every parameter, and a 10-step plain-SGD loss curve, all to ~1e-9 relative.
// Cases: Transformer++ (RoPE, SwiGLU, RMSNorm, tied embeddings) and linear attention in the
// Mamba backbone (pre-conv). Regenerate the files with
//   /usr/bin/python3 scripts/golden/transformer_reference.py
// Run: ./build/tests/test_golden_transformer
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "layers/language_model.h"
#include "tests/golden_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;
using json = nlohmann::json;

namespace {

void check_case(const std::string& name) {
  const json j = load_golden(name);
  LanguageModel lm(golden_model_config(j.at("config")));
  lm.to(DType::f64);
  // Weights: integers / scale, exact in float64.
  const double scale = j.at("weight_scale");
  std::map<std::string, Tensor> sd;
  for (const auto& [k, p] : j.at("params").items()) {
    std::vector<double> v;
    for (int64_t x : p.at("int_values")) v.push_back(static_cast<double>(x) / scale);
    sd[k] = from_vector(v, Shape(p.at("shape").get<std::vector<int64_t>>()), opts(DType::f64));
  }
  lm.load_state_dict(sd);  // strict: the names must match ours exactly
  const Tensor ids = ids_of(j.at("ids")), targets = ids_of(j.at("targets"));

  const double tol = 1e-9;
  Tensor logits = lm.forward(ids);
  CHECK_MESSAGE(scaled_err(logits.tolist<double>(), j.at("logits").get<std::vector<double>>()) < tol, name, " logits");
  Tensor loss = lm.loss(ids, targets);
  const double want_loss = j.at("loss");
  CHECK_MESSAGE(std::fabs(loss.item() - want_loss) < tol * std::fabs(want_loss), name, " loss");
  lm.zero_grad();
  loss.backward();
  int checked = 0;
  for (const auto& [k, p] : lm.named_parameters()) {
    REQUIRE_MESSAGE(p.grad().defined(), k);
    const double e = scaled_err(p.grad().tolist<double>(), j.at("grads").at(k).get<std::vector<double>>());
    CHECK_MESSAGE(e < tol, name, " grad ", k, " rel err ", e);
    ++checked;
  }
  CHECK(checked == static_cast<int>(j.at("grads").size()));

  // 10 steps of plain SGD on the same batch, from the same weights.
  lm.load_state_dict(sd);
  const double lr = j.at("sgd_lr");
  const auto want = j.at("sgd_losses").get<std::vector<double>>();
  for (size_t step = 0; step < want.size(); ++step) {
    lm.zero_grad();
    Tensor l = lm.loss(ids, targets);
    CHECK_MESSAGE(std::fabs(l.item() - want[step]) < tol * std::fabs(want[step]), name, " SGD step ", step,
                  ": ", l.item(), " vs ", want[step]);
    l.backward();
    NoGradGuard ng;
    for (auto& p : lm.parameters()) p.add_(p.grad(), -lr);
  }
  CHECK(want.back() < 0.5 * want.front());  // the curve does descend (the check above is not vacuous)
}

}  // namespace

TEST_CASE("golden: Transformer++ tiny vs PyTorch (logits, loss, every gradient, 10 SGD steps)") {
  check_case("transformer_tiny");
}

TEST_CASE("golden: linear attention, Mamba backbone, tiny vs PyTorch") { check_case("linear_attention_mamba_tiny"); }
