// tests/test_baseline_mixers.cpp — the baseline mixers as layers (fp64, tiny shapes): Mamba,
// Mamba 2, Gated DeltaNet, TTT-KVB (with and without its sliding-window branch):
//   decoding from the O(1) state (single tokens and ragged chunks) == forward; causality;
//   gradcheck w.r.t. the input and every parameter, gradgradcheck w.r.t. the input and a few;
//   Mamba 2 / Gated DeltaNet chunked == their per-token recurrence as whole layers;
//   TTT-KVB's hand-written inner gradient == autograd's gradient of the inner loss, and chunk i
//   read with the weights of the chunks before it; parameter counts == presets.h's analytic count;
//   hybrid patterns (model.pattern) and blocks without MLP; clear config errors.
// Run: ./build/tests/test_baseline_mixers
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "layers/block.h"
#include "layers/gated_deltanet.h"
#include "layers/language_model.h"
#include "layers/mamba.h"
#include "layers/mamba2.h"
#include "layers/mixer_factory.h"
#include "layers/presets.h"
#include "layers/ssm_util.h"
#include "layers/ttt_kvb.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig tiny(const std::string& mixer, int64_t window = 0) {
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.mixer = mixer;
  c.backbone = "transformer";
  c.window = window;
  c.init_std = 0.3;  // large enough that every path visibly matters
  c.mamba.d_state = 3;
  c.mamba.d_conv = 3;
  c.mamba.scan_chunk = 2;
  c.mamba2.d_state = 3;
  c.mamba2.head_dim = 4;
  c.mamba2.n_groups = 2;
  c.mamba2.d_conv = 3;
  c.mamba2.chunk = 3;
  c.gdn.n_heads = 2;
  c.gdn.head_dim = 4;
  c.gdn.d_conv = 3;
  c.gdn.chunk = 4;
  c.kvb.n_heads = 2;
  c.kvb.hidden_mult = 2;
  c.kvb.mini_batch = 3;
  c.kvb.base_lr = 0.5;
  return c;
}

std::vector<ModelConfig> all_tiny() {
  return {tiny("mamba"), tiny("mamba2"), tiny("gated_deltanet"), tiny("ttt_kvb"), tiny("ttt_kvb", 3)};
}

std::string label(const ModelConfig& c) { return c.mixer + (c.window ? "+swa" : ""); }

std::shared_ptr<SequenceMixer> make64(const ModelConfig& c, uint64_t seed = 5) {
  Generator g(seed);
  auto m = make_mixer(c, g);
  m->to(DType::f64);
  return m;
}

}  // namespace

TEST_CASE("baseline mixers: decoding from the state == forward (single tokens, ragged chunks)") {
  for (const ModelConfig& c : all_tiny()) {
    CAPTURE(label(c));
    auto m = make64(c);
    const int64_t T = 11;
    Tensor x = rand64({2, T, c.d_model}, 1);
    Tensor full = m->forward(x);
    for (std::vector<int64_t> chunks : {std::vector<int64_t>(T, 1), std::vector<int64_t>{4, 1, 3, 2, 1},
                                        std::vector<int64_t>{T}}) {
      auto st = m->init_state(2);
      int64_t t0 = 0;
      for (int64_t len : chunks) {
        Tensor y = m->step(x.narrow(1, t0, len), *st);
        CHECK_MESSAGE(max_abs_diff(y, full.narrow(1, t0, len)) < 1e-11, "chunk at ", t0);
        t0 += len;
      }
      CHECK(st->position == T);
    }
  }
}

TEST_CASE("baseline mixers: output at t does not depend on inputs after t") {
  for (const ModelConfig& c : all_tiny()) {
    CAPTURE(label(c));
    auto m = make64(c);
    const int64_t T = 10;
    Tensor x = rand64({1, T, c.d_model}, 2);
    Tensor y = m->forward(x);
    for (int64_t t : {0, 2, 5, 8}) {
      Tensor x2 = x.clone();
      {
        NoGradGuard ng;
        x2.narrow(1, t + 1, T - t - 1).add_(rand64({1, T - t - 1, c.d_model}, 3 + t));
      }
      Tensor y2 = m->forward(x2);
      CHECK(max_abs_diff(y.narrow(1, 0, t + 1), y2.narrow(1, 0, t + 1)) < 1e-13);
      CHECK(max_abs_diff(y.narrow(1, t + 1, 1), y2.narrow(1, t + 1, 1)) > 1e-6);
    }
  }
}

TEST_CASE("baseline mixers: gradcheck w.r.t. the input and every parameter (fp64)") {
  for (const ModelConfig& c : all_tiny()) {
    CAPTURE(label(c));
    auto m = make64(c);
    Tensor x = rand64({1, 5, c.d_model}, 4, true);
    tensor_list in = {x};
    for (auto& p : m->parameters()) in.push_back(p);
    auto r = gradcheck([&](const tensor_list& v) { return tensor_list{m->forward(v[0])}; }, in);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("baseline mixers: gradgradcheck w.r.t. the input and the recurrence's own parameters") {
  for (const ModelConfig& c : all_tiny()) {
    CAPTURE(label(c));
    auto m = make64(c);
    Tensor x = rand64({1, 4, c.d_model}, 5, true);
    tensor_list in = {x};
    for (auto& [name, p] : m->named_parameters())
      if (name == "A_log" || name == "dt_bias" || name == "D" || name == "w1" || name == "lr_proj.bias")
        in.push_back(p);
    CHECK(in.size() >= 2);
    auto r = gradgradcheck([&](const tensor_list& v) { return tensor_list{m->forward(v[0])}; }, in);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("Mamba 2 and Gated DeltaNet layers: chunked form == per-token recurrence, with gradients") {
  for (const std::string mixer : {"mamba2", "gated_deltanet"}) {
    CAPTURE(mixer);
    ModelConfig c = tiny(mixer);
    auto m = make64(c);
    Tensor x = rand64({2, 9, c.d_model}, 6, true);
    auto set_rec = [&](bool on) {
      if (auto* a = dynamic_cast<Mamba2Mixer*>(m.get())) a->set_recurrent(on);
      if (auto* b = dynamic_cast<GatedDeltaNetMixer*>(m.get())) b->set_recurrent(on);
    };
    tensor_list in = {x};
    for (auto& p : m->parameters()) in.push_back(p);
    Tensor w = rand64({2, 9, c.d_model}, 7);
    set_rec(false);
    Tensor y1 = m->forward(x);
    tensor_list g1 = grad({sum(mul(y1, w))}, in);
    set_rec(true);
    Tensor y2 = m->forward(x);
    tensor_list g2 = grad({sum(mul(y2, w))}, in);
    CHECK(max_abs_diff(y1, y2) < 1e-12);
    for (size_t i = 0; i < in.size(); ++i) CHECK_MESSAGE(max_abs_diff(g1[i], g2[i]) < 1e-11, "input ", i);
  }
}

TEST_CASE("Mamba: the scan's checkpointing through time does not change values or gradients") {
  ModelConfig c = tiny("mamba");
  auto m = make64(c);
  auto* mm = dynamic_cast<MambaMixer*>(m.get());
  REQUIRE(mm);
  Tensor x = rand64({1, 7, c.d_model}, 8, true);
  tensor_list in = {x};
  for (auto& p : m->parameters()) in.push_back(p);
  mm->set_scan_chunk(0);
  Tensor y0 = m->forward(x);
  tensor_list g0 = grad({sum(square(y0))}, in);
  mm->set_scan_chunk(3);
  Tensor y1 = m->forward(x);
  tensor_list g1 = grad({sum(square(y1))}, in);
  CHECK(max_abs_diff(y0, y1) == 0.0);
  for (size_t i = 0; i < in.size(); ++i) CHECK(max_abs_diff(g0[i], g1[i]) < 1e-13);
}

TEST_CASE("TTT-KVB: the hand-written update == W − autograd's gradient of Σ η ½‖g(k) − v‖²") {
  ModelConfig c = tiny("ttt_kvb");
  c.kvb.weight_norm = false;
  Generator gen(9);
  TTTKVBMixer m(c, gen);
  m.to(DType::f64);
  const int64_t B = 2, H = 2, L = 3, f = 4;
  Tensor k = rand64({B, H, L, f}, 10), v = rand64({B, H, L, f}, 11), eta = softplus(rand64({B, H, L}, 12));
  FastWeights W0{rand64({B, H, 8, f}, 13, true), rand64({B, H, f, 8}, 14, true), rand64({B, H, 8, f}, 15, true)};
  FastWeights W1 = m.update(W0, k, v, eta);
  Tensor loss = mul_scalar(sum(mul(sum(square(sub(m.apply(W0, k), v)), {-1}), eta)), 0.5);
  tensor_list g = grad({loss}, {W0.w0, W0.w1, W0.w2});
  CHECK(max_abs_diff(W1.w0, sub(W0.w0, g[0])) < 1e-12);
  CHECK(max_abs_diff(W1.w1, sub(W0.w1, g[1])) < 1e-12);
  CHECK(max_abs_diff(W1.w2, sub(W0.w2, g[2])) < 1e-12);
  // With weight_norm, each row keeps the norm of that row of the initial weights.
  ModelConfig cn = tiny("ttt_kvb");
  Generator gen2(9);
  TTTKVBMixer mn(cn, gen2);
  mn.to(DType::f64);
  FastWeights Wn = mn.update(mn.initial(), k, v, eta);
  auto norms = [](const Tensor& w) { return sqrt(sum(square(w), {-1})); };
  CHECK(max_abs_diff(norms(Wn.w1), expand(norms(mn.w1), {B, H, f})) < 1e-12);
  CHECK(max_abs_diff(Wn.w1, expand(mn.w1, {B, H, f, 8})) > 1e-3);  // the update did change it
}

TEST_CASE("TTT-KVB: chunk i is read with the weights trained on chunks < i (apply, then update)") {
  ModelConfig c = tiny("ttt_kvb");  // no SWA branch: the layer is the TTT branch alone
  auto m = make64(c);
  auto* kvb = dynamic_cast<TTTKVBMixer*>(m.get());
  REQUIRE(kvb);
  const int64_t T = 7, b = c.kvb.mini_batch;
  Tensor x = rand64({1, T, c.d_model}, 16);
  Tensor y = m->forward(x);
  // Changing the last token of chunk 0 changes nothing in chunk 0 except that token's own output
  // (its query), and it changes chunk 1 (through the update).
  Tensor x2 = x.clone();
  {
    NoGradGuard ng;
    x2.narrow(1, b - 1, 1).add_(rand64({1, 1, c.d_model}, 17));
  }
  Tensor y2 = m->forward(x2);
  CHECK(max_abs_diff(y.narrow(1, 0, b - 1), y2.narrow(1, 0, b - 1)) < 1e-14);
  CHECK(max_abs_diff(y.narrow(1, b, 1), y2.narrow(1, b, 1)) > 1e-6);
  // Chunk 0 alone is g(q; W_0): a single-chunk input gives the same first b outputs.
  CHECK(max_abs_diff(m->forward(x.narrow(1, 0, b)), y.narrow(1, 0, b)) < 1e-14);
}

TEST_CASE("baseline mixers: parameter counts match presets.h's analytic count") {
  for (const ModelConfig& c : all_tiny()) {
    CAPTURE(label(c));
    Generator g(0);
    auto m = make_mixer(c, g);
    CHECK(m->num_parameters() == count_mixer_parameters(c));
  }
  for (const char* mixer : {"mamba", "mamba2", "gated_deltanet", "ttt_kvb"}) {
    CAPTURE(mixer);
    ModelConfig c = preset("tiny", mixer);
    CHECK(LanguageModel(c).num_parameters() == count_parameters(c));
  }
  // The 125M presets' sizes (analytic only): Mamba 24 mixer-only blocks.
  ModelConfig m125 = preset("125m", "mamba");
  CHECK(m125.n_layers == 24);
  CHECK(m125.d_ff == 0);
}

TEST_CASE("hybrid stacks: model.pattern picks each block's mixer; d_ff = 0 drops the MLP") {
  ModelConfig c = tiny("attention");
  c.vocab_size = 11;
  c.n_layers = 6;
  c.d_ff = 0;
  c.window = 4;
  c.pattern = "swa, mamba2, attention";
  LanguageModel lm(c);
  std::set<std::string> names;
  for (auto& [k, p] : lm.named_parameters()) names.insert(k);
  CHECK(names.count("blocks.0.mixer.wq.weight"));
  CHECK(names.count("blocks.1.mixer.in_proj.weight"));
  CHECK(names.count("blocks.4.mixer.A_log"));
  CHECK(names.count("blocks.5.mixer.wq.weight"));
  for (const auto& n : names) CHECK_MESSAGE(n.find("mlp") == std::string::npos, n);
  CHECK(lm.num_parameters() == count_parameters(c));
  CHECK(block_config(c, 0).window == 4);
  CHECK(block_config(c, 2).window == 0);  // "attention" in a pattern is full attention
  CHECK(block_config(c, 3).mixer == "attention");
  CHECK(block_config(c, 4).mixer == "mamba2");
  // Decoding through the hybrid equals the forward.
  lm.to(DType::f64);
  Tensor ids = rand_ids({1, 9}, c.vocab_size, 18);
  Tensor full = lm.forward(ids);
  auto st = lm.init_decode(1);
  Tensor a = lm.decode(ids.narrow(1, 0, 5), *st), b = lm.decode(ids.narrow(1, 5, 4), *st);
  CHECK(max_abs_diff(cat({a, b}, 1), full) < 1e-11);
}

TEST_CASE("baseline configs: clear errors naming the key") {
  ModelConfig c = tiny("attention");
  c.pattern = "swa,mamba3";
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.pattern"), std::invalid_argument);
  c.pattern = "swa,mamba";
  c.window = 0;
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.window"), std::invalid_argument);
  c = tiny("mamba2");
  c.mamba2.head_dim = 5;
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.mamba2.head_dim"), std::invalid_argument);
  c = tiny("mamba2");
  c.mamba2.n_groups = 3;
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.mamba2.n_groups"), std::invalid_argument);
  c = tiny("gated_deltanet");
  c.gdn.chunk = 6;
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.gdn.chunk"), std::invalid_argument);
  c = tiny("gated_deltanet");
  c.gdn.kernel = "recurrent";  // a Mamba 2 choice, not Gated DeltaNet's
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.gdn.kernel"), std::invalid_argument);
  for (const char* k : {"chunked", "chunked_tc"}) {  // the chunked WY kernels on CUDA
    c.gdn.kernel = k;
    CHECK_NOTHROW(validate(c));
  }
  c = tiny("mamba2");
  c.mamba2.kernel = "wy";
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.mamba2.kernel"), std::invalid_argument);
  for (const char* k : {"delta_chunked", "delta_chunked_tc"}) {
    c.mamba2.kernel = k;
    CHECK_NOTHROW(validate(c));
  }
  c = tiny("ttt_kvb");
  c.kvb.n_heads = 3;
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.kvb.n_heads"), std::invalid_argument);
  c = tiny("mamba");
  c.d_ff = -1;
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("model.d_ff"), std::invalid_argument);
}
