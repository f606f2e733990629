// tests/test_ttt_theorem1.cpp — paper Theorem 1: TTT with a linear inner model f(x) = xW, batch
// gradient descent over the whole sequence, eta = 1/2 on the loss ‖f(XK) − XV‖² and W0 = 0 is
// causal linear attention: z_t = Σ_{s≤t} (XQ_t · XK_s) XV_s.
//
// Settings that reproduce it here (the official loss is ½‖·‖² and eta carries 1/head_dim and the
// in-mini-batch average 1/(i+1), ttt-official.md §1.3):
//   mini_batch = -1 (b = T), ln_residual = false, inner_bias = false (f(x) = xW, the official
//   TTT-Linear has a bias b1 whose updates would add Σ_s XV_s), learnable_w0 = false (W0 = 0),
//   learnable_lr = false, learnable_token_idx = false, token_idx_mean = false (plain sum),
//   base_lr = head_dim, so eta = base_lr / head_dim = 1 on ½‖·‖², i.e. 1/2 on ‖·‖².
// The reference is computed directly from the layer's own XQ/XK/XV with matmul + tril.
// Run: ./build/tests/test_ttt_theorem1
#include <doctest/doctest.h>

#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig theorem1_config(const std::string& backbone, bool rope) {
  ModelConfig c = tiny_ttt_config("ttt_linear", -1, /*ln_residual=*/false, backbone);
  c.ttt.learnable_w0 = false;
  c.ttt.inner_bias = false;
  c.ttt.learnable_lr = false;
  c.ttt.learnable_token_idx = false;
  c.ttt.token_idx_mean = false;
  c.ttt.rope = rope;
  c.ttt.base_lr = static_cast<double>(c.head_dim());
  return c;
}

// Causal linear attention per head: tril(XQ XK^T) XV, [B, nh, T, f].
Tensor linear_attention(const ScanInputs& in) {
  return matmul(tril(matmul(in.XQ, transpose(in.XK, -2, -1))), in.XV);
}

}  // namespace

TEST_CASE("Theorem 1: batch-GD TTT-Linear with eta 1/2, W0 = 0, no LN == causal linear attention") {
  for (const char* impl : {"dual", "primal", "generic"}) {
    for (bool rope : {false, true}) {
      CAPTURE(impl);
      CAPTURE(rope);
      ModelConfig cfg = theorem1_config("mamba", rope);
      Generator g(5);
      TTTMixer layer(cfg, g);
      randomize(layer, 6);
      layer.set_impl(impl);
      Tensor x = rand64({2, 13, cfg.d_model}, 7);
      ScanInputs in = layer.inner_inputs(x);
      Tensor z = layer.inner_outputs(in);
      Tensor ref = linear_attention(in);
      CHECK(max_abs_diff(ref, zeros_like(ref)) > 0.1);
      CHECK(max_rel_diff(z, ref, 1e-6) < 1e-10);
      // The W0 buffers exist and are zero, and are not trained.
      for (auto& [name, p] : layer.named_parameters()) CHECK(name.find("inner.") == std::string::npos);
      CHECK(layer.named_buffers().size() == 1);  // inner.W1
      for (auto& [name, b] : layer.named_buffers()) CHECK(max_abs_diff(b, zeros_like(b)) == 0.0);
    }
  }
}

TEST_CASE("Theorem 1 fails when a condition is dropped (the test can tell)") {
  Tensor x = rand64({1, 10, 8}, 7);
  auto error_with = [&](auto tweak) {
    ModelConfig cfg = theorem1_config("transformer", false);
    tweak(cfg);
    Generator g(5);
    TTTMixer layer(cfg, g);
    randomize(layer, 6);
    ScanInputs in = layer.inner_inputs(x);
    return max_rel_diff(layer.inner_outputs(in), linear_attention(in), 1e-6);
  };
  CHECK(error_with([](ModelConfig&) {}) < 1e-10);
  CHECK(error_with([](ModelConfig& c) { c.ttt.mini_batch = 4; }) > 1e-3);       // mini-batch GD
  CHECK(error_with([](ModelConfig& c) { c.ttt.token_idx_mean = true; }) > 1e-3); // running average
  CHECK(error_with([](ModelConfig& c) { c.ttt.base_lr = 1.0; }) > 1e-3);         // eta = 1/(2 head_dim)
  CHECK(error_with([](ModelConfig& c) { c.ttt.learnable_w0 = true; }) > 1e-3);   // random W0
  CHECK(error_with([](ModelConfig& c) { c.ttt.inner_bias = true; }) > 1e-3);     // f(x) = xW + b
}
