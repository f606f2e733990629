// tests/test_trainer_generate.cpp — token sampling: greedy, top-k, top-p, temperature, seeds,
// the option checks; and generation determinism with a tiny model.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "autograd/ops.h"
#include "layers/language_model.h"
#include "trainer/generate.h"

using namespace ttt;

TEST_CASE("greedy picks the argmax, lowest id on ties") {
  Generator g(0);
  SamplingOptions o;
  o.temperature = 0;
  CHECK(sample_token({0.1f, 3.0f, -1.0f, 3.0f}, o, g) == 1);
  CHECK(g.offset == 0);  // greedy draws nothing
}

TEST_CASE("top-k = 1 and tiny top-p are greedy; top-k keeps only the k best") {
  std::vector<float> logits = {1.0f, 2.0f, 0.5f, 1.9f};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Generator g(seed);
    SamplingOptions o;
    o.top_k = 1;
    CHECK(sample_token(logits, o, g) == 1);
    SamplingOptions p;
    p.top_p = 0.01;
    CHECK(sample_token(logits, p, g) == 1);
    SamplingOptions k2;
    k2.top_k = 2;
    int64_t t = sample_token(logits, k2, g);
    CHECK((t == 1 || t == 3));
  }
}

TEST_CASE("sampling frequencies follow softmax(logits / T) within the nucleus") {
  // p = softmax([0, ln 2, ln 3, ln 4]) = [0.1, 0.2, 0.3, 0.4]; top_p 0.7 keeps {3, 2} -> 4/7, 3/7.
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  Generator g(42);
  SamplingOptions o;
  std::map<int64_t, int> all, nucleus;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++all[sample_token(logits, o, g)];
  for (int i = 0; i < 4; ++i) CHECK(all[i] / double(n) == doctest::Approx((i + 1) / 10.0).epsilon(0.05));
  o.top_p = 0.7;
  for (int i = 0; i < n; ++i) ++nucleus[sample_token(logits, o, g)];
  CHECK(nucleus.count(0) == 0);
  CHECK(nucleus.count(1) == 0);
  CHECK(nucleus[3] / double(n) == doctest::Approx(4.0 / 7).epsilon(0.05));
  // Temperature 2 flattens: p ~ sqrt([1, 2, 3, 4]).
  SamplingOptions hot;
  hot.temperature = 2.0;
  std::map<int64_t, int> h;
  for (int i = 0; i < n; ++i) ++h[sample_token(logits, hot, g)];
  const double z = 1 + std::sqrt(2.0) + std::sqrt(3.0) + 2;
  CHECK(h[0] / double(n) == doctest::Approx(1 / z).epsilon(0.08));
}

TEST_CASE("the same seed gives the same draws; another seed differs") {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = 0.1f * i;
  auto draw = [&](uint64_t seed) {
    Generator g(seed);
    SamplingOptions o;
    std::vector<int64_t> v;
    for (int i = 0; i < 30; ++i) v.push_back(sample_token(logits, o, g));
    return v;
  };
  CHECK(draw(5) == draw(5));
  CHECK(draw(5) != draw(6));
}

TEST_CASE("option checks name the option") {
  SamplingOptions o;
  o.top_p = 0;
  CHECK_THROWS_WITH_AS(validate_sampling(o), doctest::Contains("--top-p"), std::invalid_argument);
  o = {};
  o.temperature = -1;
  CHECK_THROWS_WITH_AS(validate_sampling(o), doctest::Contains("--temperature"), std::invalid_argument);
  o = {};
  o.top_k = -2;
  CHECK_THROWS_WITH_AS(validate_sampling(o), doctest::Contains("--top-k"), std::invalid_argument);
}

// A tiny model: vocabulary 40, 2 layers of width 16, TTT mini-batch 4.
static ModelConfig tiny_config(const std::string& mixer, const std::string& backbone) {
  ModelConfig c;
  c.vocab_size = 40;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 32;
  c.mixer = mixer;
  c.backbone = backbone;
  c.max_seq_len = 64;
  c.ttt.mini_batch = 4;
  return c;
}

static void check_generation(const std::string& mixer, const std::string& backbone) {
  LanguageModel model(tiny_config(mixer, backbone));
  SamplingOptions o;
  o.seed = 11;
  o.max_new_tokens = 12;
  o.temperature = 1.5;
  std::vector<int64_t> streamed;
  auto a = generate(model, {1, 2, 3}, o, [&](int64_t id) { streamed.push_back(id); });
  auto b = generate(model, {1, 2, 3}, o);
  CHECK(a.size() == 12);
  CHECK(a == b);
  CHECK(streamed == a);
  o.seed = 12;
  CHECK(generate(model, {1, 2, 3}, o) != a);
  // Greedy decoding equals the argmax of a full forward pass over prompt + generated tokens.
  SamplingOptions greedy;
  greedy.temperature = 0;
  greedy.max_new_tokens = 6;
  auto gtoks = generate(model, {5, 6, 7, 8, 9}, greedy);
  std::vector<int64_t> seq = {5, 6, 7, 8, 9};
  seq.insert(seq.end(), gtoks.begin(), gtoks.end() - 1);
  {
    NoGradGuard ng;
    Tensor logits = model.forward(from_vector_i64(seq, {1, static_cast<int64_t>(seq.size())}));
    Tensor am = argmax(logits, -1).select(0, 0);
    auto ids = am.tolist<int64_t>();
    for (size_t i = 0; i < gtoks.size(); ++i) CHECK(ids[4 + i] == gtoks[i]);
  }
  // Stop token: generation ends right after emitting it.
  greedy.stop_token = gtoks[2];
  greedy.max_new_tokens = 50;
  auto stopped = generate(model, {5, 6, 7, 8, 9}, greedy);
  CHECK(stopped.back() == gtoks[2]);
  CHECK(stopped.size() <= 3);
}

TEST_CASE("generation is deterministic, greedy decode = full forward: Transformer (KV cache)") {
  check_generation("attention", "transformer");
}

TEST_CASE("generation is deterministic, greedy decode = full forward: TTT-Linear (primal decode)") {
  check_generation("ttt_linear", "mamba");
}

TEST_CASE("a batch of prompts of different lengths: each row = generate() of its prompt alone") {
  for (std::string mixer : {"ttt_linear", "attention"}) {
    CAPTURE(mixer);
    ModelConfig c = tiny_config(mixer, mixer == "attention" ? "transformer" : "mamba");
    c.init_std = 0.2;  // logits far apart: no near-ties for the rounding of batched kernels to flip
    LanguageModel model(c);
    model.to(DType::f64);
    // Lengths 6 (mid-mini-batch), 3, 8 (a mini-batch boundary) and 9: prefill of the 3 common tokens,
    // then each row reads the rest of its prompt while shorter ones already sample.
    const std::vector<std::vector<int64_t>> prompts = {
        {5, 6, 7, 8, 9, 10}, {1, 2, 3}, {4, 4, 9, 30, 2, 17, 8, 1}, {3, 1, 4, 1, 5, 9, 2, 6, 5}};
    for (double temperature : {0.0, 1.3}) {
      CAPTURE(temperature);
      SamplingOptions o;
      o.seed = 5;
      o.max_new_tokens = 7;
      o.temperature = temperature;
      std::vector<std::vector<int64_t>> streamed(prompts.size());
      auto rows = generate_batch(model, prompts, o, [&](size_t r, int64_t id) { streamed[r].push_back(id); });
      REQUIRE(rows.size() == prompts.size());
      for (size_t r = 0; r < prompts.size(); ++r) {
        CAPTURE(r);
        CHECK(rows[r].size() == 7);
        CHECK(rows[r] == generate(model, prompts[r], o));
        CHECK(streamed[r] == rows[r]);
      }
      // A stop token ends its row only; the others go on.
      SamplingOptions s = o;
      s.stop_token = rows[1][1];
      auto stopped = generate_batch(model, prompts, s);
      for (size_t r = 0; r < prompts.size(); ++r) CHECK(stopped[r] == generate(model, prompts[r], s));
      CHECK(stopped[1].size() <= 2);
    }
    CHECK_THROWS_AS(generate_batch(model, {{1, 2}, {}}, SamplingOptions{}), std::invalid_argument);
  }
}
