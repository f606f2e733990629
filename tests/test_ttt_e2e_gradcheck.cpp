// tests/test_ttt_e2e_gradcheck.cpp — the exact second-order meta-gradient of TTT-E2E against
// central finite differences in float64: ∂L/∂W0 (every element of every MLP' tensor) and ∂L/∂θ
// for a prefix weight, a suffix attention weight, norms and the embedding, through three inner
// steps (T = 8, b = 2), with the inner clip active, inactive and off, with and without remat.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "layers/e2e_model.h"
#include "layers/language_model.h"
#include "tests/e2e_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig tiny_e2e(double clip, bool remat) {
  ModelConfig c = e2e_config({.vocab = 11, .d_model = 8, .n_layers = 2, .n_heads = 2, .d_ff = 8, .window = 3,
                              .suffix_blocks = 1, .chunk = 2});
  c.seed = 3;
  c.e2e.inner_clip = clip;
  c.e2e.remat = c.e2e.remat_prefix = remat;
  return c;
}

// The norm of the first inner gradient, to place the clip threshold on either side of it.
double first_inner_grad_norm(LanguageModel& lm, const Tensor& ids, const Tensor& targets) {
  // Sequence 0's chunk-0 loss at W0 is the mean of its first two token losses (the chunk is
  // predicted with W0), differentiated w.r.t. the MLP' parameters.
  Tensor l = mean(narrow(narrow(lm.token_losses(ids, targets), 0, 0, 1), 1, 0, 2));
  tensor_list W;
  for (const auto& [n, t] : lm.named_parameters())
    if (n.find("prime.w") != std::string::npos) W.push_back(t);
  double sq = 0;
  for (const Tensor& g : grad({l}, W))
    for (double v : g.tolist<double>()) sq += v * v;
  return std::sqrt(sq);
}

// Compares the analytic gradient of the outer loss with central differences, element by element,
// for every parameter whose name contains one of `which`.
void check_meta_gradient(const ModelConfig& c, const std::vector<std::string>& which) {
  LanguageModel lm(c);
  lm.to(DType::f64);
  const int64_t T = 8;  // 4 chunks: 3 inner steps feed the loss
  Tensor ids = rand_ids({2, T}, c.vocab_size, 21), targets = rand_ids({2, T}, c.vocab_size, 22);
  auto named = lm.named_parameters();
  tensor_list params;
  for (const auto& [n, t] : named) params.push_back(t);
  tensor_list g = grad({lm.loss(ids, targets)}, params);
  NoGradGuard ng;
  const double eps = 1e-6;
  int checked = 0;
  for (size_t i = 0; i < named.size(); ++i) {
    bool wanted = false;
    for (const std::string& w : which) wanted |= named[i].first.find(w) != std::string::npos;
    if (!wanted) continue;
    Tensor p = named[i].second;
    const std::vector<double> analytic = g[i].contiguous().tolist<double>();
    const int64_t n = p.numel();
    Tensor flat = p.reshape({n});  // a view: writes go to the parameter
    double worst = 0;
    for (int64_t k = 0; k < n; ++k) {
      const double x0 = flat.narrow(0, k, 1).item();
      flat.narrow(0, k, 1).fill_(x0 + eps);
      const double up = lm.loss(ids, targets).item();
      flat.narrow(0, k, 1).fill_(x0 - eps);
      const double down = lm.loss(ids, targets).item();
      flat.narrow(0, k, 1).fill_(x0);
      const double fd = (up - down) / (2 * eps);
      // Rounding of the differences is ~1e-10 here; truncation ~eps^2.
      worst = std::max(worst, std::fabs(fd - analytic[k]) - (1e-8 + 1e-6 * std::fabs(fd)));
      ++checked;
    }
    INFO(named[i].first, " clip ", c.e2e.inner_clip, " remat ", c.e2e.remat);
    CHECK(worst <= 0);
  }
  CHECK(checked > 0);
}

}  // namespace

TEST_CASE("the clip thresholds of these tests sit on both sides of the inner gradient norm") {
  LanguageModel lm(tiny_e2e(0, false));
  lm.to(DType::f64);
  const double norm = first_inner_grad_norm(lm, rand_ids({2, 8}, 11, 21), rand_ids({2, 8}, 11, 22));
  INFO("first inner gradient norm ", norm);
  CHECK(norm > 0.05 * 4);  // clip 0.05: active
  CHECK(norm < 100.0 / 4); // clip 100: inactive
}

TEST_CASE("dL/dW0 and dL/dtheta match finite differences: clip active") {
  check_meta_gradient(tiny_e2e(0.05, false),
                      {"prime.w", "blocks.0.attn.wq", "blocks.1.attn.wk", "blocks.1.prime_norm", "final_norm"});
}

TEST_CASE("dL/dW0 and dL/dtheta match finite differences: clip inactive, and off") {
  check_meta_gradient(tiny_e2e(100.0, false), {"prime.w", "blocks.0.mlp.w2", "blocks.1.attn.wv", "blocks.1.attn.k_norm"});
  check_meta_gradient(tiny_e2e(0.0, false), {"prime.w1", "embed", "blocks.0.seq_post_norm"});
}

TEST_CASE("dL/dW0 and dL/dtheta match finite differences through the rematerialised scan") {
  check_meta_gradient(tiny_e2e(0.05, true), {"prime.w2", "blocks.0.attn.wo", "blocks.1.attn.wq", "blocks.1.mlp.w1"});
}
