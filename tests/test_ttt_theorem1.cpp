// tests/test_ttt_theorem1.cpp — paper Theorem 1: TTT with a linear inner model f(x) = xW, batch
// gradient descent over the whole sequence, eta = 1/2 on the loss ‖f(XK) − XV‖² and W0 = 0 is
// causal linear attention: z_t = Σ_{s≤t} (XQ_t · XK_s) XV_s.
//
// Settings that reproduce it here (the official loss is ½‖·‖² and eta carries 1/head_dim and the
// in-mini-batch average 1/(i+1) — ttt-lm-pytorch get_eta):
//   mini_batch = -1 (b = T), ln_residual = false, inner_bias = false (f(x) = xW, the official
//   TTT-Linear has a bias b1 whose updates would add Σ_s XV_s), learnable_w0 = false (W0 = 0),
//   learnable_lr = false, learnable_token_idx = false, token_idx_mean = false (plain sum),
//   base_lr = head_dim, so eta = base_lr / head_dim = 1 on ½‖·‖², i.e. 1/2 on ‖·‖².
// The reference is computed directly from the layer's own XQ/XK/XV with matmul + tril.
// With model.ttt.post_norm = false, the transformer backbone and no RoPE, the whole language
// model is the linear-attention model: same parameters, same initial draws, same outputs and
// gradients (Table 1's "TTT equivalence" row is then "linear attn. improved" exactly).
// Run: ./build/tests/test_ttt_theorem1
#include <doctest/doctest.h>

#include <map>

#include "layers/language_model.h"
#include "layers/presets.h"
#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// Theorem 1's switches on c (see the header); RoPE as given.
void set_theorem1(ModelConfig& c, bool rope) {
  c.ttt.mini_batch = -1;
  c.ttt.ln_residual = false;
  c.ttt.learnable_w0 = false;
  c.ttt.inner_bias = false;
  c.ttt.learnable_lr = false;
  c.ttt.learnable_token_idx = false;
  c.ttt.token_idx_mean = false;
  c.ttt.rope = rope;
  c.ttt.base_lr = static_cast<double>(c.head_dim());
}

ModelConfig theorem1_config(const std::string& backbone, bool rope) {
  ModelConfig c = tiny_ttt_config("ttt_linear", -1, /*ln_residual=*/false, backbone);
  set_theorem1(c, rope);
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

namespace {

// A small whole model: Theorem 1's TTT-Linear (transformer backbone, no RoPE, post_norm as given),
// or the linear-attention model of the same size and seed.
ModelConfig lm_config(const std::string& mixer, bool post_norm) {
  ModelConfig c;
  c.vocab_size = 29;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 24;
  c.max_seq_len = 32;
  c.backbone = "transformer";
  c.init_std = 0.2;  // large enough that every path moves the logits
  c.seed = 11;
  c.mixer = mixer;
  set_theorem1(c, /*rope=*/false);
  c.ttt.post_norm = post_norm;
  c.ttt.checkpoint_group = 0;
  return c;
}

// The TTT model's name for a linear-attention parameter (wq -> q_proj, ...).
std::string ttt_name(std::string n) {
  for (auto [la, t] : {std::pair{".mixer.wq.", ".mixer.q_proj."}, std::pair{".mixer.wk.", ".mixer.k_proj."},
                       std::pair{".mixer.wv.", ".mixer.v_proj."}, std::pair{".mixer.wo.", ".mixer.o_proj."}}) {
    auto at = n.find(la);
    if (at != std::string::npos) n.replace(at, std::string(la).size(), t);
  }
  return n;
}

}  // namespace

TEST_CASE("Theorem 1, whole model: TTT equivalence without post_norm IS the linear-attention model") {
  ModelConfig cl = lm_config("linear_attention", true), ct = lm_config("ttt_linear", false);
  LanguageModel la(cl), tt(ct);
  la.to(DType::f64), tt.to(DType::f64);
  // Same parameters, drawn identically from the same seed.
  CHECK(la.num_parameters() == tt.num_parameters());
  CHECK(count_parameters(ct) == tt.num_parameters());
  std::map<std::string, Tensor> tp;
  for (auto& [n, p] : tt.named_parameters()) tp[n] = p;
  REQUIRE(tp.size() == la.named_parameters().size());
  for (auto& [n, p] : la.named_parameters()) {
    REQUIRE_MESSAGE(tp.count(ttt_name(n)) == 1, n);
    CHECK_MESSAGE(max_abs_diff(p, tp[ttt_name(n)]) == 0.0, n);
  }
  // Same logits, same loss, same gradient of every parameter.
  Tensor ids = rand_ids({2, 13}, cl.vocab_size, 3), targets = rand_ids({2, 13}, cl.vocab_size, 4);
  CHECK(max_rel_diff(tt.forward(ids), la.forward(ids), 1e-6) < 1e-10);
  Tensor ll = la.loss(ids, targets), lt = tt.loss(ids, targets);
  CHECK(lt.item() == doctest::Approx(ll.item()).epsilon(1e-12));
  ll.backward();
  lt.backward();
  for (auto& [n, p] : la.named_parameters())
    CHECK_MESSAGE(max_rel_diff(tp[ttt_name(n)].grad(), p.grad(), 1e-6) < 1e-9, n);
  // The post-LayerNorm of the official layer makes it another model (the test can tell).
  LanguageModel with_norm(lm_config("ttt_linear", true));
  with_norm.to(DType::f64);
  CHECK(with_norm.num_parameters() == la.num_parameters() + cl.n_layers * 2 * cl.d_model);
  CHECK(max_abs_diff(with_norm.forward(ids), la.forward(ids)) > 1e-3);
}
