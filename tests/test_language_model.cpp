// tests/test_language_model.cpp — the whole language model for every mixer and backbone:
// causality, incremental decoding == full forward, loss == hand cross-entropy and == the composite
// head + cross-entropy (value and gradients), stable hierarchical parameter names, seeded init,
// state-dict round trip, FLOP count, gradcheck.
// Run: ./build/tests/test_language_model
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "layers/language_model.h"
#include "layers/presets.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig micro(const std::string& mixer, const std::string& backbone) {
  ModelConfig c;
  c.vocab_size = 37;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 24;
  c.mixer = mixer;
  c.backbone = backbone;
  c.init_std = 0.2;  // larger than 0.02 so every path visibly changes the logits
  c.max_seq_len = 64;
  c.ttt.mini_batch = 4;
  c.seed = 42;
  // Small sizes for the baseline mixers (layers/baseline_config.h).
  c.mamba.d_state = 4;
  c.mamba2.d_state = 4;
  c.mamba2.head_dim = 8;
  c.mamba2.chunk = 4;
  c.gdn.chunk = 4;
  c.kvb.mini_batch = 4;
  return c;
}

// Every (mixer, backbone) pair; the baselines (transformer backbone) and a hybrid pattern.
std::vector<ModelConfig> all_micro_configs() {
  std::vector<ModelConfig> out;
  for (std::string mixer : {"attention", "linear_attention", "ttt_linear", "ttt_mlp"})
    for (std::string backbone : {"transformer", "mamba"}) out.push_back(micro(mixer, backbone));
  for (std::string mixer : {"mamba", "mamba2", "gated_deltanet", "ttt_kvb"}) out.push_back(micro(mixer, "transformer"));
  ModelConfig hybrid = micro("attention", "transformer");
  hybrid.window = 3;
  hybrid.pattern = "gated_deltanet,swa";
  out.push_back(hybrid);
  return out;
}

std::string label(const ModelConfig& c) { return (c.pattern.empty() ? c.mixer : c.pattern) + "/" + c.backbone; }

}  // namespace

TEST_CASE("causality of the whole model, every mixer and backbone") {
  for (const ModelConfig& c : all_micro_configs()) {
    LanguageModel lm(c);
    lm.to(DType::f64);
    const int64_t T = 12;
    Tensor ids = rand_ids({2, T}, c.vocab_size, 1);
    Tensor logits = lm.forward(ids);
    CHECK(logits.shape() == Shape{2, T, c.vocab_size});
    for (int64_t t : {0, 3, 7, 10}) {
      // Replace every token after t.
      auto v = ids.tolist<int64_t>();
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t s = t + 1; s < T; ++s) v[b * T + s] = (v[b * T + s] + 1 + s) % c.vocab_size;
      Tensor logits2 = lm.forward(from_vector_i64(v, {2, T}));
      CHECK_MESSAGE(max_abs_diff(logits.narrow(1, 0, t + 1), logits2.narrow(1, 0, t + 1)) < 1e-12, label(c),
                    " t=", t);
      CHECK_MESSAGE(max_abs_diff(logits.narrow(1, t + 1, 1), logits2.narrow(1, t + 1, 1)) > 1e-6, label(c),
                    " t=", t);
    }
  }
}

TEST_CASE("incremental decoding reproduces the full forward's logits") {
  for (const ModelConfig& c : all_micro_configs()) {
    LanguageModel lm(c);
    lm.to(DType::f64);
    const int64_t T = 17;
    Tensor ids = rand_ids({2, T}, c.vocab_size, 2);
    Tensor full = lm.forward(ids);
    // Prefill a multiple of the TTT mini-batch, then ragged chunks, then single tokens.
    for (std::vector<int64_t> chunks : {std::vector<int64_t>{8, 1, 1, 1, 1, 1, 1, 1, 1, 1},
                                        std::vector<int64_t>(T, 1)}) {
      auto st = lm.init_decode(2);
      int64_t t0 = 0;
      for (int64_t len : chunks) {
        Tensor y = lm.decode(ids.narrow(1, t0, len), *st);
        CHECK_MESSAGE(max_abs_diff(y, full.narrow(1, t0, len)) < 1e-10, label(c), " chunk at ", t0);
        t0 += len;
      }
      CHECK(st->position == T);
    }
  }
}

TEST_CASE("prefill (fused TTT-Linear scan) + decode reproduces the forward's logits at any prompt length") {
  // Without grad mode the prompt's decode call runs the TTT layers' fused scan (tests/
  // test_ttt_layer.cpp checks the call and the state); prompts ending on a mini-batch boundary
  // (K = 4) and inside one, then single tokens. fp64.
  for (std::string backbone : {"transformer", "mamba"}) {
    ModelConfig c = micro("ttt_linear", backbone);
    LanguageModel lm(c);
    lm.to(DType::f64);
    NoGradGuard ng;
    const int64_t T = 14;
    Tensor ids = rand_ids({2, T}, c.vocab_size, 3);
    Tensor full = lm.forward(ids);
    for (int64_t P : {1, 4, 6, 8, 11}) {
      auto st = lm.init_decode(2);
      Tensor y = lm.decode(ids.narrow(1, 0, P), *st);
      CHECK_MESSAGE(max_abs_diff(y, full.narrow(1, 0, P)) < 1e-10, backbone, " prompt ", P);
      auto st_last = lm.init_decode(2);  // last_only: the prompt's last position only, same state
      Tensor last = lm.decode(ids.narrow(1, 0, P), *st_last, /*last_only=*/true);
      CHECK(last.shape() == Shape{2, 1, c.vocab_size});
      CHECK(max_abs_diff(last, full.narrow(1, P - 1, 1)) < 1e-10);
      CHECK(max_abs_diff(lm.decode(ids.narrow(1, P, 1), *st_last), full.narrow(1, P, 1)) < 1e-10);
      for (int64_t t = P; t < T; ++t) {
        y = lm.decode(ids.narrow(1, t, 1), *st);
        CHECK_MESSAGE(max_abs_diff(y, full.narrow(1, t, 1)) < 1e-10, backbone, " prompt ", P, " token ", t);
      }
      CHECK(st->position == T);
    }
  }
}

TEST_CASE("loss = mean cross-entropy by hand; token_losses; ignore_index") {
  ModelConfig c = micro("attention", "transformer");
  LanguageModel lm(c);
  lm.to(DType::f64);
  Tensor ids = rand_ids({2, 5}, c.vocab_size, 3), targets = rand_ids({2, 5}, c.vocab_size, 4);
  auto logits = lm.forward(ids).tolist<double>();
  auto tv = targets.tolist<int64_t>();
  const int64_t V = c.vocab_size;
  std::vector<double> per(10);
  for (int64_t r = 0; r < 10; ++r) {
    double mx = -1e300, s = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, logits[r * V + j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(logits[r * V + j] - mx);
    per[r] = mx + std::log(s) - logits[r * V + tv[r]];
  }
  double mean_all = 0;
  for (double x : per) mean_all += x / 10;
  CHECK(lm.loss(ids, targets).item() == doctest::Approx(mean_all).epsilon(1e-12));
  auto tl = lm.token_losses(ids, targets);
  CHECK(tl.shape() == Shape{2, 5});
  auto tlv = tl.tolist<double>();
  for (int r = 0; r < 10; ++r) CHECK(tlv[r] == doctest::Approx(per[r]).epsilon(1e-12));
  // Ignore the first two targets of each row.
  tv[0] = tv[1] = tv[5] = tv[6] = -100;
  double mean_kept = (per[2] + per[3] + per[4] + per[7] + per[8] + per[9]) / 6;
  CHECK(lm.loss(ids, from_vector_i64(tv, {2, 5})).item() == doctest::Approx(mean_kept).epsilon(1e-12));
  CHECK_THROWS_AS(lm.loss(ids, rand_ids({2, 4}, V, 5)), std::invalid_argument);
  CHECK_THROWS_AS(lm.forward(zeros({2, 5})), std::invalid_argument);  // float ids
}

TEST_CASE("loss (fused head + cross-entropy) = cross_entropy(forward): value and every gradient") {
  for (bool tied : {true, false})
    for (bool amp : {false, true}) {
      ModelConfig c = micro("attention", "transformer");
      c.tie_embeddings = tied;
      LanguageModel lm(c);
      Tensor ids = rand_ids({2, 6}, c.vocab_size, 12), targets = rand_ids({2, 6}, c.vocab_size, 13);
      {
        NoGradGuard ng;
        targets.narrow(1, 0, 2).fill_(-100);
      }
      const tensor_list params = lm.parameters();
      Tensor fused, composite;
      {
        AutocastGuard ac(DType::bf16, amp);
        fused = lm.loss(ids, targets);
        composite = cross_entropy(lm.forward(ids), targets, -100, "mean");
      }
      INFO("tied ", tied, ", autocast ", amp);
      CHECK(fused.item() == doctest::Approx(composite.item()).epsilon(1e-6));
      tensor_list gf = grad({fused}, params), gc = grad({composite}, params);
      for (size_t i = 0; i < params.size(); ++i) CHECK(max_rel_diff(gf[i], gc[i], 1e-3) < 1e-4);
    }
}

TEST_CASE("parameter names are hierarchical and stable") {
  LanguageModel t(micro("attention", "transformer"));
  std::vector<std::string> names;
  for (auto& [n, p] : t.named_parameters()) names.push_back(n);
  const std::vector<std::string> block0 = {
      "blocks.0.seq_norm.weight", "blocks.0.mixer.wq.weight", "blocks.0.mixer.wk.weight",
      "blocks.0.mixer.wv.weight", "blocks.0.mixer.wo.weight", "blocks.0.ffn_norm.weight",
      "blocks.0.mlp.w1.weight",   "blocks.0.mlp.w2.weight",   "blocks.0.mlp.w3.weight"};
  REQUIRE(names.size() == 1 + 2 * block0.size() + 1);
  CHECK(names.front() == "embed.weight");
  for (size_t i = 0; i < block0.size(); ++i) CHECK(names[1 + i] == block0[i]);
  CHECK(names[1 + block0.size()] == "blocks.1.seq_norm.weight");
  CHECK(names.back() == "final_norm.weight");

  ModelConfig cm = micro("linear_attention", "mamba");
  cm.tie_embeddings = false;
  LanguageModel m(cm);
  auto sd = m.state_dict();
  for (const char* n : {"blocks.1.pre_conv_norm.weight", "blocks.1.pre_conv.weight", "blocks.1.pre_conv.bias",
                        "blocks.1.mixer.wq.weight", "lm_head.weight"})
    CHECK_MESSAGE(sd.count(n) == 1, n);
  CHECK(m.num_parameters() == count_parameters(cm));
}

TEST_CASE("same seed => identical weights; another seed => different; tied head shares the table") {
  ModelConfig c = micro("attention", "mamba");
  LanguageModel a(c), b(c);
  c.seed = 43;
  LanguageModel d(c);
  auto sa = a.state_dict(), sb = b.state_dict(), sd = d.state_dict();
  bool any_diff = false;
  for (auto& [k, v] : sa) {
    CHECK_MESSAGE(max_abs_diff(v, sb.at(k)) == 0.0, k);
    if (k.find("norm") == std::string::npos && max_abs_diff(v, sd.at(k)) > 0) any_diff = true;
  }
  CHECK(any_diff);
  CHECK(sa.count("lm_head.weight") == 0);
}

TEST_CASE("state_dict round trip: a model with another seed loads and then matches") {
  for (const ModelConfig& c : all_micro_configs()) {
    LanguageModel a(c);
    ModelConfig c2 = c;
    c2.seed = 7;
    LanguageModel b(c2);
    Tensor ids = rand_ids({1, 8}, c.vocab_size, 6);
    CHECK(max_abs_diff(a.forward(ids), b.forward(ids)) > 1e-6);
    b.load_state_dict(a.state_dict());
    CHECK_MESSAGE(max_abs_diff(a.forward(ids), b.forward(ids)) == 0.0, label(c));
  }
  // Shapes that do not fit are a clear error naming the key.
  LanguageModel a(micro("attention", "transformer"));
  ModelConfig wider = micro("attention", "transformer");
  wider.d_ff = 32;
  LanguageModel w(wider);
  CHECK_THROWS_WITH_AS(w.load_state_dict(a.state_dict()), doctest::Contains("blocks.0.mlp.w1.weight"),
                       std::invalid_argument);
}

TEST_CASE("flops_per_token = 2 x matmul parameters + attention's causal QK^T and PV") {
  ModelConfig c = micro("attention", "transformer");
  LanguageModel lm(c);
  const int64_t T = 10;
  const double n = static_cast<double>(lm.num_parameters());  // tied: the table is the head
  const double attn = c.n_layers * 4.0 * c.d_model * (T + 1) / 2.0;
  CHECK(lm.flops_per_token(T) == doctest::Approx(2 * n + attn));
  c.window = 4;  // keys per query: 1, 2, 3, 4, 4, ... -> (1+2+3+4*7)/10
  LanguageModel lw(c);
  CHECK(lw.flops_per_token(T) == doctest::Approx(2 * n + c.n_layers * 4.0 * c.d_model * (34.0 / 10)));
}

TEST_CASE("gradcheck of the loss w.r.t. every parameter (fp64, tiny model, both backbones)") {
  for (std::string backbone : {"transformer", "mamba"}) {
    ModelConfig c;
    c.vocab_size = 7;
    c.d_model = 4;
    c.n_layers = 1;
    c.n_heads = 2;
    c.d_ff = 6;
    c.mixer = "attention";
    c.backbone = backbone;
    c.window = 2;
    c.init_std = 0.5;
    LanguageModel lm(c);
    lm.to(DType::f64);
    {
      // Non-trivial norm weights so their gradients are not a special case.
      NoGradGuard ng;
      for (auto& [k, p] : lm.named_parameters())
        if (k.find("norm") != std::string::npos) p.add_(rand64(p.shape(), 99, false, 0.3));
    }
    Tensor ids = rand_ids({1, 4}, c.vocab_size, 8), targets = rand_ids({1, 4}, c.vocab_size, 9);
    auto r = gradcheck([&](const tensor_list&) { return tensor_list{lm.loss(ids, targets)}; }, lm.parameters());
    CHECK_MESSAGE(r.ok, backbone, ": ", r.message);
  }
}

TEST_CASE("bad configs are clear errors naming the key") {
  ModelConfig c = micro("attention", "transformer");
  c.mixer = "mamba3";
  CHECK_THROWS_WITH_AS(LanguageModel{c}, doctest::Contains("model.mixer"), std::invalid_argument);
  c = micro("attention", "transformer");
  c.backbone = "griffin";
  CHECK_THROWS_WITH_AS(LanguageModel{c}, doctest::Contains("model.backbone"), std::invalid_argument);
  c = micro("attention", "transformer");
  c.n_heads = 3;
  CHECK_THROWS_WITH_AS(LanguageModel{c}, doctest::Contains("model.n_heads"), std::invalid_argument);
}

TEST_CASE("bf16 model: logits bf16, close to the fp32 model; every gradient close to the fp32 one") {
  for (const ModelConfig& c : all_micro_configs()) {
    LanguageModel a(c), b(c);
    b.to(DType::bf16);
    Tensor ids = rand_ids({2, 8}, c.vocab_size, 10), targets = rand_ids({2, 8}, c.vocab_size, 11);
    Tensor la = a.forward(ids), lb = b.forward(ids);
    CHECK(lb.dtype() == DType::bf16);
    // bf16 has 8 mantissa bits; the logits are O(1) at init_std 0.2.
    CHECK_MESSAGE(max_abs_diff(lb.to(DType::f32), la) < 0.1, label(c));
    Tensor loss = b.loss(ids, targets), loss32 = a.loss(ids, targets);
    CHECK(std::fabs(loss.item() - loss32.item()) < 0.05);
    loss.backward();
    loss32.backward();
    // Every parameter's bf16 gradient tracks the float32 model's (all zeros, a wrong scale or a
    // dropped path would not): error within 15% of that gradient's own largest element (measured:
    // at most 8%, learnable_ttt_lr_bias of TTT-Linear).
    auto pa = a.named_parameters(), pb = b.named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      INFO(label(c) << " " << pa[i].first);
      REQUIRE(pb[i].second.grad().defined());
      CHECK(pb[i].second.grad().dtype() == DType::bf16);
      const Tensor ga = pa[i].second.grad(), gb = pb[i].second.grad().to(DType::f32);
      const double mag = max_abs_diff(ga, zeros_like(ga));
      CHECK(mag > 0);
      // Gated DeltaNet in bf16 storage: its decay path (cumsum of log-decays, exp) runs in bf16, so
      // the gate parameters' gradients are only within ~70% (measured up to 65%; fla keeps the gates
      // in float32 — a known limitation of the composite GDN in a bf16 model, not of autocast).
      const bool gdn_gate = label(c).find("gated_deltanet") != std::string::npos;
      CHECK(max_abs_diff(gb, ga) <= (gdn_gate ? 0.7 : 0.15) * mag);
    }
  }
}
