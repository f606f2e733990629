// tests/test_decode_graphs.cpp — one-token decode steps replayed from CUDA graphs
// (layers/decode_graphs.h) give the logits of the same steps run eagerly, by a second copy of the
// model with graphs off: across mini-batch boundaries, prompts ending inside a mini-batch, float32
// and bf16 autocast, TTT-Linear (fused scan) and TTT-MLP (composite decode), both backbones; two
// states taking turns (the owner's tensors are the graphs' buffers); a training step between decode
// steps (memory churn, dropped weight casts) and a changed weight (the graphs are recorded again).
// Each case also checks that graphs were recorded and replayed, so it cannot pass by running eagerly.
// Skips itself without a GPU.
// Run: ./build/tests/test_decode_graphs
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "autograd/autocast.h"
#include "autograd/engine.h"
#include "layers/decode_graphs.h"
#include "layers/language_model.h"
#include "tests/cuda_test_util.h"
#include "tests/layer_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

// head_dim 16, K = 4: the CUDA TTT-Linear scan runs it.
ModelConfig small(const std::string& mixer, const std::string& backbone) {
  ModelConfig c;
  c.vocab_size = 53;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.d_ff = 96;
  c.mixer = mixer;
  c.backbone = backbone;
  c.init_std = 0.1;
  c.max_seq_len = 128;
  c.ttt.mini_batch = 4;
  c.seed = 11;
  return c;
}

// A pair of identical models on the GPU, one decoding eagerly.
struct Pair {
  explicit Pair(const ModelConfig& c) : graphed(c), eager(c) {
    graphed.to(cuda());
    eager.to(cuda());
    eager.set_decode_graphs(false);
  }
  LanguageModel graphed, eager;
};

Tensor column(const Tensor& ids, int64_t t) { return contiguous(narrow(ids, 1, t, 1)).to(cuda()); }

// Decodes ids[:, from:from+n] one token at a time into both states, checking every step's logits.
void decode_and_compare(Pair& p, DecodeState& sg, DecodeState& se, const Tensor& ids, int64_t from, int64_t n,
                        const std::string& what) {
  for (int64_t t = from; t < from + n; ++t) {
    Tensor a = p.graphed.decode(column(ids, t), sg), b = p.eager.decode(column(ids, t), se);
    REQUIRE(a.shape() == b.shape());
    CHECK_MESSAGE(max_abs_diff(a.to(cpu()), b.to(cpu())) <= 1e-5, what, " token ", t);
  }
}

}  // namespace

TEST_CASE("decode graphs give the eager decode's logits") {
  TTT_REQUIRE_GPU();
  for (const std::string mixer : {"ttt_linear", "ttt_mlp"})
    for (const std::string backbone : {"mamba", "transformer"})
      for (const bool bf16 : {false, true}) {
        const std::string what = mixer + " " + backbone + (bf16 ? " bf16" : " float32");
        Pair p(small(mixer, backbone));
        NoGradGuard ng;
        AutocastGuard ac(DType::bf16, bf16);
        const int64_t prompt = 6, steps = 22;  // the prompt ends inside a mini-batch of 4
        Tensor ids = rand_ids({2, prompt + steps}, 53, 3);
        auto sg = p.graphed.init_decode(2), se = p.eager.init_decode(2);
        Tensor pre = narrow(ids, 1, 0, prompt).to(cuda());
        CHECK(max_abs_diff(p.graphed.decode(pre, *sg, true).to(cpu()), p.eager.decode(pre, *se, true).to(cpu())) <= 1e-5);
        decode_and_compare(p, *sg, *se, ids, prompt, steps, what);
        // 4 keys of the open mini-batch: 4 eager steps, 4 recorded, the rest replayed. TTT-Linear's
        // first step after the prompt has a key of its own, seen once (eager): the prompt left its
        // open mini-batch's 2 tokens in the state, and the one-token steps carry none.
        const int64_t once = mixer == "ttt_linear" ? 1 : 0;
        CHECK_MESSAGE(p.graphed.decode_graphs().recorded() == 4, what);
        CHECK_MESSAGE(p.graphed.decode_graphs().replays() == steps - 8 - once, what);
        CHECK(p.eager.decode_graphs().recorded() == 0);
        // The state after the replays continues as the eager one: a multi-token chunk (eager).
        Tensor more = rand_ids({2, 5}, 53, 4).to(cuda());
        CHECK_MESSAGE(max_abs_diff(p.graphed.decode(more, *sg).to(cpu()), p.eager.decode(more, *se).to(cpu())) <= 1e-5, what);
      }
}

TEST_CASE("decode graphs: two states taking turns, a training step between steps, a changed weight") {
  TTT_REQUIRE_GPU();
  Pair p(small("ttt_linear", "mamba"));
  Tensor ids_a = rand_ids({1, 60}, 53, 5), ids_b = rand_ids({1, 60}, 53, 6);
  auto ga = p.graphed.init_decode(1), gb = p.graphed.init_decode(1);
  auto ea = p.eager.init_decode(1), eb = p.eager.init_decode(1);
  {
    NoGradGuard ng;
    (void)p.graphed.decode(narrow(ids_a, 1, 0, 8).to(cuda()), *ga);
    (void)p.eager.decode(narrow(ids_a, 1, 0, 8).to(cuda()), *ea);
    (void)p.graphed.decode(narrow(ids_b, 1, 0, 3).to(cuda()), *gb);
    (void)p.eager.decode(narrow(ids_b, 1, 0, 3).to(cuda()), *eb);
    decode_and_compare(p, *ga, *ea, ids_a, 8, 12, "A alone");  // A owns the recordings' outputs
    // Turns: each switch hands the recordings to the other state; A keeps copies of its tensors.
    for (int64_t i = 0; i < 10; ++i) {
      decode_and_compare(p, *gb, *eb, ids_b, 3 + i, 1, "B in turns");
      decode_and_compare(p, *ga, *ea, ids_a, 20 + i, 1, "A in turns");
    }
  }
  const int64_t replays = p.graphed.decode_graphs().replays();
  CHECK(replays > 10);
  // A training step of the same model between decode steps: memory freed and made again (the
  // weights are unchanged, so their kept casts serve it too).
  {
    AutocastGuard ac(DType::bf16);
    Tensor x = rand_ids({2, 32}, 53, 7).to(cuda());
    Tensor loss = p.graphed.loss(x, x);
    tensor_list g = grad({loss}, p.graphed.parameters());
    CHECK(g.size() == p.graphed.parameters().size());
  }
  {
    NoGradGuard ng;
    decode_and_compare(p, *ga, *ea, ids_a, 30, 6, "A after a training step");
    CHECK(p.graphed.decode_graphs().replays() >= replays + 6);
    // A changed weight (the same change in both models): the graphs read the old one, so they go.
    const int64_t recorded = p.graphed.decode_graphs().recorded();
    for (LanguageModel* m : {&p.graphed, &p.eager}) m->parameters()[3].mul_(1.5);
    decode_and_compare(p, *ga, *ea, ids_a, 36, 12, "A after a weight changed");
    CHECK(p.graphed.decode_graphs().recorded() > recorded);
    // B was detached (its own copies) when A took over, and continues exactly.
    decode_and_compare(p, *gb, *eb, ids_b, 13, 10, "B after A's steps");
  }
}

TEST_CASE("decode graphs of Transformer++ (full and sliding-window attention) give the eager decode's logits") {
  // The KV cache is written in place and its length read on the device, so one recording per cache
  // capacity serves every position; the step that grows (or, with a window, compacts) the cache runs
  // eagerly and the recording of the old cache is dropped. head_dim 64: the CUDA decode kernel's.
  TTT_REQUIRE_GPU();
  for (const int64_t window : {0, 24})
    for (const bool bf16 : {false, true}) {
      const std::string what = std::string("attention window ") + std::to_string(window) + (bf16 ? " bf16" : " float32");
      ModelConfig c = small("attention", "transformer");
      c.n_heads = 1;  // head_dim 64
      c.window = window;
      Pair p(c);
      NoGradGuard ng;
      AutocastGuard ac(DType::bf16, bf16);
      const int64_t prompt = 5, steps = 70;
      Tensor ids = rand_ids({2, prompt + steps}, 53, 8);
      auto sg = p.graphed.init_decode(2), se = p.eager.init_decode(2);
      Tensor pre = narrow(ids, 1, 0, prompt).to(cuda());
      CHECK(max_abs_diff(p.graphed.decode(pre, *sg, true).to(cpu()), p.eager.decode(pre, *se, true).to(cpu())) <= 1e-5);
      decode_and_compare(p, *sg, *se, ids, prompt, steps, what);
      CAPTURE(p.graphed.decode_graphs().recorded());
      CAPTURE(p.graphed.decode_graphs().replays());
      // Full: capacities 16, 32, 64, 128 (a recording each; the growing steps are seen once).
      // Window 24: the cache compacts to 23 entries in a capacity of 48 every 25 steps.
      CHECK_MESSAGE(p.graphed.decode_graphs().recorded() >= 3, what);
      CHECK_MESSAGE(p.graphed.decode_graphs().replays() >= steps - 12, what);
      Tensor more = rand_ids({2, 3}, 53, 9).to(cuda());
      CHECK_MESSAGE(max_abs_diff(p.graphed.decode(more, *sg).to(cpu()), p.eager.decode(more, *se).to(cpu())) <= 1e-5, what);
      decode_and_compare(p, *sg, *se, rand_ids({2, 6}, 53, 10), 0, 6, what + " after a chunk");
      // A second state taking turns with the first: each switch drops the recordings that write the
      // other's cache (they are recorded again), and neither cache is disturbed.
      auto sg2 = p.graphed.init_decode(2), se2 = p.eager.init_decode(2);
      Tensor pre2 = rand_ids({2, 7}, 53, 11).to(cuda());
      (void)p.graphed.decode(pre2, *sg2);
      (void)p.eager.decode(pre2, *se2);
      const Tensor ids_a = rand_ids({2, 8}, 53, 12), ids_b = rand_ids({2, 8}, 53, 13);
      for (int64_t t = 0; t < 8; t += 4) {
        decode_and_compare(p, *sg, *se, ids_a, t, 4, what + " first state in turns");
        decode_and_compare(p, *sg2, *se2, ids_b, t, 4, what + " second state in turns");
      }
    }
}
