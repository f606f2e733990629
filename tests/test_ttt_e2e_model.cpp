// tests/test_ttt_e2e_model.cpp — the TTT-E2E model (layers/e2e_model.h) on tiny float64 shapes:
// b = T is the SWA model exactly, η = 0 gives the plain gradient, remat on/off identical,
// causality chunk by chunk, information carried by W beyond the attention's reach, decode ==
// forward, naive mode, parameter names and counts, the paper's sizes.
// (The finite-difference checks of the meta-gradient are in test_ttt_e2e_gradcheck.cpp.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "autograd/graph_memory.h"
#include "autograd/ops.h"
#include "layers/e2e_config.h"
#include "layers/e2e_model.h"
#include "layers/language_model.h"
#include "layers/presets.h"
#include "tests/check_close.h"
#include "tests/e2e_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// 3 blocks (2 prefix, 1 suffix), window 3, chunk 2: every path of the inner loop is short.
ModelConfig tiny_e2e() {
  ModelConfig c = e2e_config({.vocab = 13, .d_model = 8, .n_layers = 3, .n_heads = 2, .d_ff = 12, .window = 3,
                              .suffix_blocks = 1, .chunk = 2});
  c.seed = 7;
  c.e2e.inner_lr = 0.5;
  return c;
}

struct Model {
  LanguageModel lm;
  explicit Model(const ModelConfig& c) : lm(c) { lm.to(DType::f64); }
};

tensor_list grads_of(LanguageModel& lm, const Tensor& loss) {
  tensor_list params = lm.parameters();
  return grad({loss}, params, {}, std::nullopt, false, /*allow_unused=*/true);
}

// The plain (no inner loop) loss of the same weights: the model as SWA sees it.
Tensor static_loss(LanguageModel& lm, const Tensor& ids, const Tensor& targets) {
  return cross_entropy(lm.e2e()->static_logits(ids), targets, -100, "mean");
}

void check_grads_equal(const tensor_list& a, const tensor_list& b, const std::vector<std::pair<std::string, Tensor>>& names,
                       double tol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(names[i].first);
    REQUIRE(a[i].defined());
    REQUIRE(b[i].defined());
    CHECK(max_abs_diff(a[i], b[i]) <= tol);
  }
}

}  // namespace

TEST_CASE("b = T: the E2E model is the SWA model (values and every gradient)") {
  ModelConfig c = tiny_e2e();
  c.e2e.chunk = -1;
  Model m(c);
  const int64_t T = 10;
  Tensor ids = rand_ids({2, T}, c.vocab_size, 1), targets = rand_ids({2, T}, c.vocab_size, 2);
  Tensor l_e2e = m.lm.loss(ids, targets), l_swa = static_loss(m.lm, ids, targets);
  CHECK(std::fabs(l_e2e.item() - l_swa.item()) <= 1e-14);
  check_close(m.lm.token_losses(ids, targets), cross_entropy(m.lm.e2e()->static_logits(ids), targets, -100, "none"),
              {1e-14, 0}, "token losses");
  check_grads_equal(grads_of(m.lm, l_e2e), grads_of(m.lm, l_swa), m.lm.named_parameters(), 1e-14);
  // A chunk longer than the sequence is the same.
  ModelConfig c2 = tiny_e2e();
  c2.e2e.chunk = 64;
  Model m2(c2);
  CHECK(std::fabs(m2.lm.loss(ids, targets).item() - l_swa.item()) <= 1e-14);
}

TEST_CASE("eta = 0: several chunks with the K/V cache give the SWA values and the plain gradient") {
  ModelConfig c = tiny_e2e();
  c.e2e.inner_lr = 0;
  c.e2e.chunk = 3;  // 4 chunks of 3 (+ the window's cache crossing chunk borders)
  for (bool remat : {false, true}) {
    c.e2e.remat = c.e2e.remat_prefix = remat;
    Model m(c);
    const int64_t T = 11;  // a shorter last chunk
    Tensor ids = rand_ids({2, T}, c.vocab_size, 3), targets = rand_ids({2, T}, c.vocab_size, 4);
    Tensor l_meta = m.lm.loss(ids, targets), l_swa = static_loss(m.lm, ids, targets);
    CHECK(std::fabs(l_meta.item() - l_swa.item()) <= 1e-13);
    check_grads_equal(grads_of(m.lm, l_meta), grads_of(m.lm, l_swa), m.lm.named_parameters(), 1e-13);
  }
}

TEST_CASE("eta > 0 changes the loss (the inner steps act)") {
  ModelConfig c = tiny_e2e();
  Model m(c);
  Tensor ids = rand_ids({2, 10}, c.vocab_size, 5), targets = rand_ids({2, 10}, c.vocab_size, 6);
  CHECK(std::fabs(m.lm.loss(ids, targets).item() - static_loss(m.lm, ids, targets).item()) > 1e-4);
  // The first chunk is predicted with W0 in both.
  Tensor a = m.lm.token_losses(ids, targets).narrow(1, 0, 2);
  Tensor b = cross_entropy(m.lm.e2e()->static_logits(ids), targets, -100, "none").narrow(1, 0, 2);
  CHECK(max_abs_diff(a, b) <= 1e-14);
}

TEST_CASE("remat on and off: identical loss and gradients (clip active, several steps)") {
  ModelConfig c = tiny_e2e();
  c.e2e.inner_clip = 0.05;  // active
  c.e2e.suffix_blocks = 2;
  const int64_t T = 9;
  Tensor ids = rand_ids({2, T}, c.vocab_size, 7), targets = rand_ids({2, T}, c.vocab_size, 8);
  c.e2e.remat = c.e2e.remat_prefix = false;
  Model off(c);
  c.e2e.remat = c.e2e.remat_prefix = true;
  Model on(c);
  Tensor l_off = off.lm.loss(ids, targets), l_on = on.lm.loss(ids, targets);
  CHECK(std::fabs(l_off.item() - l_on.item()) <= 1e-14);
  check_grads_equal(grads_of(on.lm, l_on), grads_of(off.lm, l_off), on.lm.named_parameters(), 1e-13);
}

TEST_CASE("causality: a token of chunk i+1 leaves every loss before it unchanged") {
  ModelConfig c = tiny_e2e();
  Model m(c);
  const int64_t T = 12;
  Tensor seq = rand_ids({2, T + 1}, c.vocab_size, 9);
  auto split = [&](const Tensor& s) {
    return std::pair{contiguous(narrow(s, 1, 0, T)), contiguous(narrow(s, 1, 1, T))};
  };
  auto [ids, targets] = split(seq);
  NoGradGuard ng;
  const std::vector<double> base = m.lm.token_losses(ids, targets).tolist<double>();
  for (int64_t p : {3, 5, 8, 11}) {  // token x_p: input at p, target of p − 1
    auto v = seq.tolist<int64_t>();
    for (int64_t b = 0; b < 2; ++b) v[b * (T + 1) + p] = (v[b * (T + 1) + p] + 5) % c.vocab_size;
    auto [ids2, targets2] = split(from_vector_i64(v, {2, T + 1}));
    const std::vector<double> now = m.lm.token_losses(ids2, targets2).tolist<double>();
    bool later_changed = false;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < T; ++t) {
        if (t < p - 1) CHECK_MESSAGE(now[b * T + t] == base[b * T + t], "p=", p, " t=", t);
        if (t >= p && now[b * T + t] != base[b * T + t]) later_changed = true;
      }
    CHECK(later_changed);
  }
}

TEST_CASE("the fast weights carry information beyond the reach of the windowed attention") {
  // 3 blocks x (window − 1) = 6 positions of attention reach; T = 16. Changing the first token
  // moves losses at positions >= 9 only through W (eta > 0), never with eta = 0.
  for (double eta : {0.0, 0.5}) {
    ModelConfig c = tiny_e2e();
    c.e2e.inner_lr = eta;
    Model m(c);
    const int64_t T = 16;
    Tensor ids = rand_ids({1, T}, c.vocab_size, 10), targets = rand_ids({1, T}, c.vocab_size, 11);
    auto v = ids.tolist<int64_t>();
    v[0] = (v[0] + 3) % c.vocab_size;
    NoGradGuard ng;
    Tensor a = m.lm.token_losses(ids, targets).narrow(1, 9, T - 9);
    Tensor b = m.lm.token_losses(from_vector_i64(v, {1, T}), targets).narrow(1, 9, T - 9);
    if (eta == 0) CHECK(max_abs_diff(a, b) == 0);
    else CHECK(max_abs_diff(a, b) > 1e-6);
  }
}

TEST_CASE("decode token by token and in pieces equals forward, across inner steps") {
  for (int64_t window : {3, 0}) {
    ModelConfig c = tiny_e2e();
    c.window = window;
    c.e2e.chunk = 4;
    c.e2e.suffix_blocks = 2;
    Model m(c);
    const int64_t T = 14;
    Tensor ids = rand_ids({2, T}, c.vocab_size, 12);
    Tensor full;
    {
      NoGradGuard ng;
      full = m.lm.forward(ids);
    }
    for (const std::vector<int64_t>& pieces : {std::vector<int64_t>(T, 1), std::vector<int64_t>{3, 5, 1, 4, 1}}) {
      auto st = m.lm.init_decode(2);
      tensor_list outs;
      int64_t t = 0;
      for (int64_t n : pieces) {
        outs.push_back(m.lm.decode(contiguous(narrow(ids, 1, t, n)), *st));
        t += n;
      }
      INFO("window ", window, " pieces ", pieces.size());
      check_close(cat(outs, 1), full, {1e-11, 0}, "decode vs forward");
    }
  }
}

TEST_CASE("naive mode: trains at W0, evaluates with the inner loop") {
  ModelConfig c = tiny_e2e();
  c.e2e.train_mode = "naive";
  Model m(c);
  Tensor ids = rand_ids({2, 10}, c.vocab_size, 13), targets = rand_ids({2, 10}, c.vocab_size, 14);
  m.lm.train(true);
  CHECK(std::fabs(m.lm.loss(ids, targets).item() - static_loss(m.lm, ids, targets).item()) <= 1e-15);
  m.lm.train(false);
  Tensor eval = m.lm.loss(ids, targets);
  ModelConfig cm = tiny_e2e();
  Model meta(cm);
  CHECK(std::fabs(eval.item() - meta.lm.loss(ids, targets).item()) <= 1e-14);  // the same inner loop
  CHECK(std::fabs(eval.item() - static_loss(m.lm, ids, targets).item()) > 1e-4);
}

TEST_CASE("the inner learning rate set by the trainer is the one used") {
  ModelConfig c = tiny_e2e();
  Model a(c);
  c.e2e.inner_lr = 0.1;
  Model b(c);
  a.lm.e2e()->set_inner_lr(0.1);
  Tensor ids = rand_ids({1, 10}, c.vocab_size, 15), targets = rand_ids({1, 10}, c.vocab_size, 16);
  CHECK(a.lm.loss(ids, targets).item() == b.lm.loss(ids, targets).item());
  // The ramp: inner_lr_init at the start, inner_lr from the end of the warmup on.
  ModelConfig r = tiny_e2e();
  r.e2e.inner_lr = 1.0;
  r.e2e.inner_lr_init = 0.1;
  CHECK(e2e_inner_lr(r, 1, 10) == doctest::Approx(0.19));
  CHECK(e2e_inner_lr(r, 5, 10) == doctest::Approx(0.55));
  CHECK(e2e_inner_lr(r, 10, 10) == doctest::Approx(1.0));
  CHECK(e2e_inner_lr(r, 50, 10) == doctest::Approx(1.0));
  CHECK(e2e_inner_lr(r, 1, 0) == 1.0);
}

TEST_CASE("switches: suffix 0, all layers, multi-head MLP', no post/qk norms, untied head") {
  const int64_t T = 8;
  Tensor ids = rand_ids({2, T}, 13, 17), targets = rand_ids({2, T}, 13, 18);
  std::vector<ModelConfig> cs;
  for (int k = 0; k < 6; ++k) cs.push_back(tiny_e2e());
  cs[0].e2e.suffix_blocks = 0;
  cs[1].e2e.suffix_blocks = 3;  // all layers
  cs[2].e2e.fast_heads = 2;
  cs[3].e2e.post_norm = false;
  cs[4].e2e.qk_norm = false;
  cs[5].tie_embeddings = false;
  for (const ModelConfig& c : cs) {
    Model m(c);
    CHECK(m.lm.num_parameters() == count_parameters(c));
    Tensor l = m.lm.loss(ids, targets);
    CHECK(std::isfinite(l.item()));
    tensor_list g = grads_of(m.lm, l);
    for (size_t i = 0; i < g.size(); ++i) CHECK_MESSAGE(g[i].defined(), m.lm.named_parameters()[i].first);
  }
  Model none(cs[0]);
  for (const auto& [name, t] : none.lm.named_parameters()) CHECK(name.find("prime") == std::string::npos);
  // Multi-head MLP' is block-diagonal: h heads of [d_ff/h, d/h].
  Model mh(cs[2]);
  CHECK(mh.lm.state_dict().at("blocks.2.prime.w1").shape() == Shape{2, 6, 4});
}

TEST_CASE("parameter names, counts and the paper's sizes") {
  Model m(tiny_e2e());
  std::set<std::string> names;
  for (const auto& [n, t] : m.lm.named_parameters()) names.insert(n);
  for (const char* n : {"embed.weight", "blocks.0.seq_norm.weight", "blocks.0.attn.wq.weight", "blocks.0.attn.q_norm.weight",
                        "blocks.0.attn.k_norm.weight", "blocks.0.seq_post_norm.weight", "blocks.0.ffn_norm.weight",
                        "blocks.0.mlp.w1.weight", "blocks.0.ffn_post_norm.weight", "blocks.2.prime_norm.weight",
                        "blocks.2.prime.w1", "blocks.2.prime.w2", "blocks.2.prime.w3", "blocks.2.prime_post_norm.weight",
                        "final_norm.weight"})
    CHECK_MESSAGE(names.count(n), n);
  CHECK(names.count("blocks.1.prime.w1") == 0);  // prefix blocks have no MLP'
  CHECK(m.lm.num_parameters() == count_parameters(tiny_e2e()));
  // The sizes of the official configs: fast parameters and a count within 1.5% of the
  // full-attention baseline of the same size (the point of shrinking d_ff).
  const std::vector<std::pair<std::string, int64_t>> fast = {{"125m", 11'501'568}, {"350m", 42'467'328}, {"760m", 92'012'544}};
  for (const auto& [size, n] : fast) {
    ModelConfig e = e2e_preset(size), fa = e2e_preset(size, true);
    CHECK(count_e2e_fast_parameters(e) == n);
    const double ratio = static_cast<double>(count_parameters(e)) / static_cast<double>(count_parameters(fa));
    INFO(size, " e2e ", count_parameters(e), " fa ", count_parameters(fa));
    CHECK(std::fabs(ratio - 1.0) < 0.015);
  }
  ModelConfig tiny = e2e_preset("tiny");
  LanguageModel lm(tiny);
  CHECK(lm.num_parameters() == count_parameters(tiny));
}

TEST_CASE("bad E2E settings name the key") {
  auto throws_with = [](ModelConfig c, const std::string& key) {
    try {
      validate(c);
      FAIL("no error for ", key);
    } catch (const std::invalid_argument& e) {
      CHECK_MESSAGE(std::string(e.what()).find(key) != std::string::npos, e.what());
    }
  };
  ModelConfig c = tiny_e2e();
  c.e2e.chunk = 0;
  throws_with(c, "model.e2e.chunk");
  c = tiny_e2e();
  c.e2e.suffix_blocks = 4;
  throws_with(c, "model.e2e.suffix_blocks");
  c = tiny_e2e();
  c.e2e.fast_heads = 3;
  throws_with(c, "model.e2e.fast_heads");
  c = tiny_e2e();
  c.e2e.train_mode = "maml";
  throws_with(c, "model.e2e.train_mode");
  c = tiny_e2e();
  c.mixer = "ttt_linear";
  throws_with(c, "model.mixer");
  c = tiny_e2e();
  c.arch = "hybrid";
  throws_with(c, "model.arch");
}

TEST_CASE("second_order = autocast: the same model without autocast; under bf16 autocast close to float32 products, fewer bytes kept") {
  ModelConfig c = tiny_e2e();
  c.d_model = 16;
  c.d_ff = 24;
  c.e2e.remat = c.e2e.remat_prefix = false;  // what the graph keeps is then visible from the loss
  c.e2e.second_order = "float32";             // not the default: the exact mode to compare with
  ModelConfig ca = c;
  ca.e2e.second_order = "autocast";
  LanguageModel exact(c), at_autocast(ca);  // float32 models, the same weights
  const int64_t T = 9;
  const Tensor ids = rand_ids({2, T}, c.vocab_size, 17), targets = rand_ids({2, T}, c.vocab_size, 18);
  // Without autocast the mode has nothing to act on: the same values and gradients, bit for bit.
  {
    const Tensor l1 = exact.loss(ids, targets), l2 = at_autocast.loss(ids, targets);
    CHECK(l1.item() == l2.item());
    check_grads_equal(grads_of(at_autocast, l2), grads_of(exact, l1), exact.named_parameters(), 0.0);
  }
  Tensor l_exact, l_auto;
  {
    AutocastGuard ac(DType::bf16);
    l_exact = exact.loss(ids, targets);
    l_auto = at_autocast.loss(ids, targets);
  }
  // The inner gradients' products are bf16 now, so the updated fast weights and later chunks' losses
  // move by bf16 rounding, no more.
  CHECK(l_auto.item() == doctest::Approx(l_exact.item()).epsilon(1e-2));
  int64_t kept_exact = 0, kept_auto = 0;
  for (const SavedBytes& r : saved_bytes_by_op(l_exact)) kept_exact += r.bytes;
  for (const SavedBytes& r : saved_bytes_by_op(l_auto)) kept_auto += r.bytes;
  CHECK(kept_auto < kept_exact);  // no float32 operands kept for the taped products
  const tensor_list g_exact = grads_of(exact, l_exact), g_auto = grads_of(at_autocast, l_auto);
  REQUIRE(g_exact.size() == g_auto.size());
  double largest = 0;
  for (size_t i = 0; i < g_exact.size(); ++i) {
    if (!g_exact[i].defined()) continue;
    CAPTURE(exact.named_parameters()[i].first);
    REQUIRE(g_auto[i].defined());
    check_rel_norm(g_auto[i], g_exact[i], 5e-2, "meta-gradient, autocast vs float32 second-order products");
    largest = std::max(largest, max_abs_diff(g_auto[i], g_exact[i]));
  }
  CHECK(largest > 0);  // the mode acted
}
