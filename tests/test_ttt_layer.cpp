// tests/test_ttt_layer.cpp — the TTT mixer as a module: gradcheck of a tiny layer w.r.t. the input
// and every parameter (θK/θQ (shared, Mamba) or separate, θV, convs, gate, W0, θ_lr, token_idx, the
// TTT LN, the post-norm, Wo), causality, incremental decoding == the full forward (both
// backbones, all implementations, mini-batch-aligned or not), the Table 1 switches, the inner
// learning-rate multiplier, config errors, and the prefill through the fused scan (its decode
// state == the composite step()'s, prefill + decode == forward).
// Run: ./build/tests/test_ttt_layer
#include <doctest/doctest.h>

#include <functional>
#include <map>

#include "kernels/profiler.h"

#include <set>

#include "autograd/autocast.h"
#include "autograd/gradcheck.h"
#include "layers/language_model.h"
#include "tests/profile_count.h"
#include "tests/ttt_helpers.h"
#include "trainer/model_hooks.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

std::set<std::string> param_names(const Module& m) {
  std::set<std::string> s;
  for (auto& [n, p] : m.named_parameters()) s.insert(n);
  return s;
}

// Output of `step` fed in chunks of the given sizes, concatenated over time.
Tensor decode_in_chunks(TTTMixer& layer, const Tensor& x, const std::vector<int64_t>& chunks) {
  auto st = layer.init_state(x.shape()[0]);
  tensor_list outs;
  int64_t t = 0;
  for (int64_t c : chunks) {
    outs.push_back(layer.step(narrow(x, 1, t, c), *st));
    t += c;
  }
  CHECK(st->position == x.shape()[1]);
  return cat(outs, 1);
}

}  // namespace

TEST_CASE("gradcheck of a tiny TTT layer w.r.t. the input and every parameter") {
  struct Case {
    const char* mixer;
    const char* backbone;
    int64_t T;
  };
  for (Case c : {Case{"ttt_linear", "mamba", 6}, Case{"ttt_mlp", "transformer", 6}}) {
    CAPTURE(c.mixer);
    ModelConfig cfg = tiny_ttt_config(c.mixer, 4, true, c.backbone);
    cfg.d_model = 4;
    cfg.ttt.mlp_expansion = 2;
    Generator g(21);
    TTTMixer layer(cfg, g);
    randomize(layer, 22);
    Tensor x = rand64({1, c.T, cfg.d_model}, 23, true);
    tensor_list inputs{x};
    for (const Tensor& p : layer.parameters()) inputs.push_back(p);
    auto fn = [&](const tensor_list& in) { return tensor_list{layer.forward(in[0])}; };
    GradcheckResult r = gradcheck(fn, inputs);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("causality: outputs up to t ignore tokens after t (every form, both inner models)") {
  for (const char* mixer : {"ttt_linear", "ttt_mlp"})
    for (const char* impl : {"dual", "primal", "generic"}) {
      CAPTURE(mixer);
      CAPTURE(impl);
      ModelConfig cfg = tiny_ttt_config(mixer, 4);
      Generator g(31);
      TTTMixer layer(cfg, g);
      randomize(layer, 32);
      layer.set_impl(impl);
      NoGradGuard ng;
      const int64_t T = 11;
      Tensor x = rand64({1, T, cfg.d_model}, 33);
      Tensor y = layer.forward(x);
      for (int64_t t : {0, 2, 3, 6, 9}) {
        CAPTURE(t);
        Tensor x2 = x.clone();
        narrow(x2, 1, t + 1, T - t - 1).copy_(rand64({1, T - t - 1, cfg.d_model}, 34 + t));
        Tensor y2 = layer.forward(x2);
        CHECK(max_abs_diff(narrow(y2, 1, 0, t + 1), narrow(y, 1, 0, t + 1)) < 1e-13);
        CHECK(max_abs_diff(narrow(y2, 1, t + 1, 1), narrow(y, 1, t + 1, 1)) > 1e-6);
      }
    }
}

TEST_CASE("a shorter final mini-batch: the remainder is the prefix of a full mini-batch") {
  ModelConfig cfg = tiny_ttt_config("ttt_mlp", 8);
  Generator g(41);
  TTTMixer layer(cfg, g);
  randomize(layer, 42);
  NoGradGuard ng;
  Tensor x = rand64({2, 24, cfg.d_model}, 43);
  Tensor full = layer.forward(x), part = layer.forward(narrow(x, 1, 0, 19));
  CHECK(max_abs_diff(part, narrow(full, 1, 0, 19)) < 1e-13);
}

TEST_CASE("incremental decoding (step) reproduces the full forward") {
  const std::vector<std::vector<int64_t>> chunkings = {
      std::vector<int64_t>(19, 1), {3, 5, 4, 7}, {8, 11}, {19}, {1, 16, 2}};
  for (const char* backbone : {"mamba", "transformer"})
    for (const char* mixer : {"ttt_linear", "ttt_mlp"})
      for (const char* impl : {"dual", "primal", "generic"})
        for (int64_t b : {4, -1}) {
          CAPTURE(backbone);
          CAPTURE(mixer);
          CAPTURE(impl);
          CAPTURE(b);
          ModelConfig cfg = tiny_ttt_config(mixer, b, true, backbone);
          Generator g(51);
          TTTMixer layer(cfg, g);
          randomize(layer, 52);
          layer.set_impl(impl);
          NoGradGuard ng;
          Tensor x = rand64({2, 19, cfg.d_model}, 53);
          Tensor ref = layer.forward(x);
          for (const auto& ch : chunkings) {
            if (std::string(impl) == "generic" && ch.size() == 19) continue;  // slow, covered by primal
            CHECK(max_abs_diff(decode_in_chunks(layer, x, ch), ref) < 1e-12);
          }
        }
}

// Calls of the fused scan's forward kernel while fn runs.
static int64_t fused_forward_calls(const std::function<void()>& fn) { return backend_calls(fn, "ttt_linear_scan_fwd"); }
// Calls of the fused scan's forward kernel and of the one-token decode kernel (a single generated
// token: the primal form from the accumulators) while fn runs.
static std::pair<int64_t, int64_t> scan_and_step_calls(const std::function<void()>& fn) {
  Profiler::reset();
  Profiler::set_enabled(true);
  fn();
  Profiler::set_enabled(false);
  std::pair<int64_t, int64_t> n{0, 0};
  for (const KernelStat& k : Profiler::snapshot()) {
    if (k.name == "ttt_linear_scan_fwd") n.first += k.calls;
    if (k.name == "ttt_linear_decode_step") n.second += k.calls;
  }
  Profiler::reset();
  return n;
}

TEST_CASE("prefill through the fused scan leaves the composite path's decode state; prefill + decode == forward") {
  // Prompts that end on a mini-batch boundary (4, 8, 16), inside one (1, 3, 5, 7, 18) and the
  // whole text; K = 4, fp64 (the CPU reference's float64 instantiation). The reference state is
  // the composite step()'s (impl = dual: dual for whole mini-batches, primal for partial ones).
  const int64_t T = 19, K = 4;
  for (const char* backbone : {"mamba", "transformer"})
    for (bool ln : {true, false})
      for (bool bias : {true, false}) {
        CAPTURE(backbone);
        CAPTURE(ln);
        CAPTURE(bias);
        ModelConfig cfg = tiny_ttt_config("ttt_linear", K, ln, backbone);
        cfg.ttt.inner_bias = bias;
        Generator g(61);
        TTTMixer layer(cfg, g);
        randomize(layer, 62);
        NoGradGuard ng;
        Tensor x = rand64({2, T, cfg.d_model}, 63);
        Tensor ref = layer.forward(x);
        for (int64_t P : {1, 3, 4, 5, 7, 8, 16, 18, 19}) {
          CAPTURE(P);
          auto st = layer.init_state(2);
          Tensor pre;
          // A one-token prompt is a decode step: the kernel of one token, not the scan.
          const auto calls = scan_and_step_calls([&] { pre = layer.step(narrow(x, 1, 0, P), *st); });
          CHECK(calls.first == (P == 1 ? 0 : 1));
          CHECK(calls.second == (P == 1 ? 1 : 0));
          CHECK(max_abs_diff(pre, narrow(ref, 1, 0, P)) < 1e-12);
          // The state the composite step() leaves after the same prompt.
          layer.set_impl("dual");
          auto want = layer.init_state(2);
          CHECK(fused_forward_calls([&] { (void)layer.step(narrow(x, 1, 0, P), *want); }) == 0);
          layer.set_impl("auto");
          auto& a = dynamic_cast<TTTState&>(*st);
          auto& b = dynamic_cast<TTTState&>(*want);
          CHECK(a.position == P);
          CHECK(a.scan.index == P % K);
          CHECK(b.scan.index == P % K);
          REQUIRE(a.scan.W.size() == b.scan.W.size());
          for (size_t k = 0; k < a.scan.W.size(); ++k) {
            CAPTURE(k);
            REQUIRE(a.scan.W[k].defined() == b.scan.W[k].defined());
            if (a.scan.W[k].defined()) CHECK(max_abs_diff(a.scan.W[k], b.scan.W[k]) < 1e-12);
            // Accumulators: undefined means zero on either side.
            const bool da = k < a.scan.acc.size() && a.scan.acc[k].defined();
            const bool db = k < b.scan.acc.size() && b.scan.acc[k].defined();
            CHECK(da == db);
            if (da && db) CHECK(max_abs_diff(a.scan.acc[k], b.scan.acc[k]) < 1e-12);
          }
          if (std::string(backbone) == "mamba") {
            CHECK(max_abs_diff(a.q_tail, b.q_tail) == 0);
            CHECK(max_abs_diff(a.k_tail, b.k_tail) == 0);
          }
          // Decoding on, one token at a time, then a ragged chunk: the forward's outputs.
          int64_t t = P;
          for (int64_t len : {int64_t{1}, int64_t{1}, int64_t{5}}) {
            len = std::min(len, T - t);
            if (len <= 0) break;
            Tensor y = layer.step(narrow(x, 1, t, len), *st);
            CHECK_MESSAGE(max_abs_diff(y, narrow(ref, 1, t, len)) < 1e-12, "decode at ", t);
            t += len;
          }
        }
      }
}

TEST_CASE("prefill under bf16 autocast hands the fused scan bf16 XQ, XK, XV (model.ttt.bf16_io); + decode tracks the forward") {
  // A prompt of several tokens runs as the forward does (Note [bf16 activations]): bf16 projections
  // (with bf16_io on the Mamba backbone Q/K, V and the gate as one product of concatenated weights,
  // TTTMixer::prompt_projections: a wrong slice would break the bit-for-bit equality below), convs
  // through the float32 tails, bf16 into the scan; single tokens after it float32. With
  // bf16_io off the prompt's scan reads float32: the two prefills must differ (by the rounding), the
  // one with bf16_io must equal the autocast forward (the same ops on the same values), and both
  // stay within bf16 tolerance of it, decoding on included. TTT-MLP prefills from the start the same way.
  const int64_t T = 19, K = 4, P = 14;
  for (const char* mixer : {"ttt_linear", "ttt_mlp"}) {
    CAPTURE(mixer);
    const std::string kernel = std::string(mixer) + "_scan_fwd";
    Tensor out[2];
    for (bool io : {true, false}) {
      CAPTURE(io);
      ModelConfig cfg = tiny_ttt_config(mixer, K);
      cfg.ttt.bf16_io = io;
      Generator g(71);
      TTTMixer layer(cfg, g);
      randomize(layer, 72);
      layer.to(DType::f32);
      NoGradGuard ng;
      AutocastGuard ac(DType::bf16);
      const Tensor x = rand64({2, T, cfg.d_model}, 73).to(DType::f32);
      const Tensor ref = layer.forward(x).to(DType::f32);
      auto st = layer.init_state(2);
      Tensor pre;
      CHECK(backend_calls([&] { pre = layer.step(narrow(x, 1, 0, P), *st); }, kernel.c_str()) == 1);
      if (io) CHECK(max_abs_diff(pre.to(DType::f32), narrow(ref, 1, 0, P)) == 0);
      pre = pre.to(DType::f32);
      const Tensor one = layer.step(narrow(x, 1, P, 1), *st).to(DType::f32);
      const Tensor y = cat({pre, one, layer.step(narrow(x, 1, P + 1, T - P - 1), *st).to(DType::f32)}, 1);
      const double scale = max_abs_diff(ref, zeros_like(ref));
      CHECK(max_abs_diff(y, ref) < 0.03 * scale);
      out[io ? 1 : 0] = pre;
    }
    CHECK(max_abs_diff(out[0], out[1]) > 0);
  }
}

TEST_CASE("a prompt decoded in chunks: each chunk is one fused scan call (after a composite step, once a mini-batch completes), a single token one decode-step call; == forward") {
  // K = 4, T = 19: chunks that start on a boundary or inside a mini-batch, shorter than one, then
  // single tokens. Under impl auto from the start every chunk is one fused call (the partial
  // mini-batch's inputs ride in the state). When the first chunk runs composite (impl dual), the
  // partial mini-batch is only in the accumulators: a later chunk finishes it in the composite
  // forms and runs the rest fused if that holds a whole mini-batch, else stays composite; after a
  // fused call every chunk is fused again. A chunk of one token is the one-token decode kernel from
  // the accumulators (the inputs are then no longer carried). The state after each chunk equals the composite
  // step()'s; the outputs equal the forward's. fp64.
  const int64_t T = 19, K = 4;
  for (const char* backbone : {"mamba", "transformer"})
    for (bool bias : {true, false})
      for (bool first_dual : {false, true}) {
        ModelConfig cfg = tiny_ttt_config("ttt_linear", K, true, backbone);
        cfg.ttt.inner_bias = bias;
        Generator g(81);
        TTTMixer layer(cfg, g);
        randomize(layer, 82);
        NoGradGuard ng;
        Tensor x = rand64({2, T, cfg.d_model}, 83);
        Tensor ref = layer.forward(x);
        for (const std::vector<int64_t>& chunks : std::vector<std::vector<int64_t>>{
                 {8, 8, 3}, {5, 9, 5}, {3, 7, 1, 8}, {2, 3, 14}, {4, 4, 4, 4, 3}, {6, 2, 11}, {3, 1, 1, 1, 1, 1, 11}}) {
          CAPTURE(backbone);
          CAPTURE(bias);
          CAPTURE(first_dual);
          CAPTURE(chunks.size());
          CAPTURE(chunks[0]);
          CAPTURE(chunks[1]);
          auto st = layer.init_state(2);
          layer.set_impl("dual");
          auto want = layer.init_state(2);
          layer.set_impl("auto");
          int64_t t = 0;
          bool carried = true;  // the partial mini-batch's inputs are in the state (or none is open)
          for (size_t i = 0; i < chunks.size(); ++i) {
            const int64_t n = chunks[i];
            CAPTURE(t);
            const int64_t index = t % K, head = index == 0 ? 0 : K - index;
            const bool dual = first_dual && i == 0;
            // One token is the decode kernel's (from the accumulators: the inputs are no longer carried).
            const bool one = !dual && n == 1;
            const bool expect_fused = !dual && !one && (index == 0 || carried || n - head >= K);
            if (dual) layer.set_impl("dual");
            Tensor y;
            const auto calls = scan_and_step_calls([&] { y = layer.step(narrow(x, 1, t, n), *st); });
            CHECK(calls.first == (expect_fused ? 1 : 0));
            CHECK(calls.second == (one ? 1 : 0));
            layer.set_impl("auto");
            carried = expect_fused || (t + n) % K == 0;
            CHECK(max_abs_diff(y, narrow(ref, 1, t, n)) < 1e-12);
            layer.set_impl("dual");
            (void)layer.step(narrow(x, 1, t, n), *want);
            layer.set_impl("auto");
            t += n;
            auto& a = dynamic_cast<TTTState&>(*st);
            auto& b = dynamic_cast<TTTState&>(*want);
            CHECK(a.scan.index == b.scan.index);
            CHECK(a.scan.pending.XQ.defined() == (carried && a.scan.index > 0));
            for (size_t k = 0; k < a.scan.W.size(); ++k)
              if (a.scan.W[k].defined()) CHECK(max_abs_diff(a.scan.W[k], b.scan.W[k]) < 1e-12);
          }
        }
      }
}

TEST_CASE("TTT-MLP prefill from the start is one fused scan call and leaves the composite path's state; + decode == forward") {
  NoGradGuard ng;
  const int64_t T = 11, K = 4;
  for (bool bias : {true, false})
    for (int64_t P : {3, 4, 9}) {
      CAPTURE(bias);
      CAPTURE(P);
      ModelConfig cfg = tiny_ttt_config("ttt_mlp", K);
      cfg.ttt.inner_bias = bias;
      Generator g(91);
      TTTMixer layer(cfg, g);
      randomize(layer, 92);
      Tensor x = rand64({2, T, cfg.d_model}, 93);
      const Tensor ref = layer.forward(x);
      auto st = layer.init_state(2);
      Tensor pre;
      CHECK(backend_calls([&] { pre = layer.step(narrow(x, 1, 0, P), *st); }, "ttt_mlp_scan_fwd") == 1);
      CHECK(max_abs_diff(pre, narrow(ref, 1, 0, P)) < 1e-12);
      layer.set_impl("dual");
      auto want = layer.init_state(2);
      (void)layer.step(narrow(x, 1, 0, P), *want);
      layer.set_impl("auto");
      auto& a = dynamic_cast<TTTState&>(*st);
      auto& b = dynamic_cast<TTTState&>(*want);
      CHECK(a.scan.index == P % K);
      REQUIRE(a.scan.W.size() == 4);
      REQUIRE(b.scan.W.size() == 4);
      for (size_t k = 0; k < 4; ++k) {
        CAPTURE(k);
        REQUIRE(a.scan.W[k].defined() == b.scan.W[k].defined());
        if (a.scan.W[k].defined()) CHECK(max_abs_diff(a.scan.W[k], b.scan.W[k]) < 1e-12);
        const bool da = k < a.scan.acc.size() && a.scan.acc[k].defined();
        const bool db = k < b.scan.acc.size() && b.scan.acc[k].defined();
        CHECK(da == db);
        if (da && db) CHECK(max_abs_diff(a.scan.acc[k], b.scan.acc[k]) < 1e-12);
      }
      for (int64_t t = P; t < T; ++t)  // the composite primal steps continue from that state
        CHECK_MESSAGE(max_abs_diff(layer.step(narrow(x, 1, t, 1), *st), narrow(ref, 1, t, 1)) < 1e-12, "decode at ", t);
    }
}

TEST_CASE("prefill keeps the composite path where the fused scan does not apply") {
  NoGradGuard ng;
  // Batch GD (mini_batch = -1), a TTT-MLP chunk after the start (its scan takes no per-sequence
  // state) and a mini-batch left open by a composite step: no fused call, and the step's outputs are
  // still the forward's.
  {
    ModelConfig cfg = tiny_ttt_config("ttt_linear", -1);
    Generator g(71);
    TTTMixer layer(cfg, g);
    randomize(layer, 72);
    Tensor x = rand64({1, 9, cfg.d_model}, 73);
    auto st = layer.init_state(1);
    Tensor y;
    CHECK(backend_calls([&] { y = layer.step(x, *st); }, "ttt_") == 0);  // any fused TTT scan
    CHECK(max_abs_diff(y, layer.forward(x)) < 1e-12);
  }
  {
    ModelConfig cfg = tiny_ttt_config("ttt_mlp", 4);
    Generator g(71);
    TTTMixer layer(cfg, g);
    randomize(layer, 72);
    Tensor x = rand64({1, 9, cfg.d_model}, 73);
    auto st = layer.init_state(1);
    Tensor y0 = layer.step(narrow(x, 1, 0, 2), *st), y1;
    CHECK(backend_calls([&] { y1 = layer.step(narrow(x, 1, 2, 7), *st); }, "ttt_") == 0);
    Tensor ref;
    // The forward does fuse TTT-MLP (so the count above could see a call).
    CHECK(backend_calls([&] { ref = layer.forward(x); }, "ttt_") == 1);
    CHECK(max_abs_diff(cat({y0, y1}, 1), ref) < 1e-12);
  }
  ModelConfig cfg = tiny_ttt_config("ttt_linear", 4);
  Generator g(74);
  TTTMixer layer(cfg, g);
  randomize(layer, 75);
  Tensor x = rand64({1, 9, cfg.d_model}, 76);
  auto st = layer.init_state(1);
  // After a composite step (impl dual) that leaves a mini-batch open, fewer tokens than its rest
  // plus a whole one: the composite forms.
  layer.set_impl("dual");
  CHECK(fused_forward_calls([&] { (void)layer.step(narrow(x, 1, 0, 1), *st); }) == 0);
  layer.set_impl("auto");
  CHECK(fused_forward_calls([&] { (void)layer.step(narrow(x, 1, 1, 6), *st); }) == 0);
  // Grad mode on: the step stays differentiable through the state (composite forms).
  GradMode::set_enabled(true);
  auto st2 = layer.init_state(1);
  CHECK(fused_forward_calls([&] { (void)layer.step(x, *st2); }) == 0);
  GradMode::set_enabled(false);
}

TEST_CASE("Table 1 switches map to parameters and behaviour") {
  Generator g(61);
  ModelConfig base = tiny_ttt_config("ttt_linear", 16);
  const std::set<std::string> mamba = param_names(TTTMixer(base, g));
  for (const char* p : {"q_proj.weight", "v_proj.weight", "o_proj.weight", "g_proj.weight", "conv_q.weight",
                        "conv_k.bias", "learnable_ttt_lr_weight", "learnable_ttt_lr_bias", "learnable_token_idx",
                        "ttt_norm_weight", "ttt_norm_bias", "post_norm.weight", "inner.W1", "inner.b1"})
    CHECK_MESSAGE(mamba.count(p), p);
  CHECK_FALSE(mamba.count("k_proj.weight"));

  ModelConfig tf = base;
  tf.backbone = "transformer";
  const std::set<std::string> t = param_names(TTTMixer(tf, g));
  CHECK(t.count("k_proj.weight"));
  CHECK_FALSE(t.count("g_proj.weight"));
  CHECK_FALSE(t.count("conv_q.weight"));

  ModelConfig off = base;
  off.ttt.ln_residual = false;
  off.ttt.learnable_w0 = false;
  off.ttt.learnable_lr = false;
  off.ttt.learnable_token_idx = false;
  TTTMixer bare(off, g);
  const std::set<std::string> b = param_names(bare);
  for (const char* p : {"ttt_norm_weight", "learnable_ttt_lr_weight", "learnable_token_idx", "inner.W1"})
    CHECK_FALSE_MESSAGE(b.count(p), p);
  CHECK(bare.named_buffers().size() == 2);  // W0 = 0 buffers

  ModelConfig mlp = base, lin = base;
  mlp.mixer = "ttt_mlp";
  mlp.ttt.base_lr = lin.ttt.base_lr = -1;  // the paper's defaults
  TTTMixer m(mlp, g);
  CHECK(m.base_lr() == 0.1);
  CHECK(TTTMixer(lin, g).base_lr() == 1.0);
  CHECK(param_names(m).count("inner.W2"));
}

TEST_CASE("inner learning rate: multiplier 0 turns the inner loop off; warmup schedule") {
  ModelConfig c1 = tiny_ttt_config("ttt_linear", 1), c8 = tiny_ttt_config("ttt_linear", 8);
  c1.ttt.learnable_token_idx = c8.ttt.learnable_token_idx = false;
  c1.ttt.rope = c8.ttt.rope = false;  // RoPE positions t mod b differ between the two
  Generator g1(71), g2(71);
  TTTMixer a(c1, g1), b(c8, g2);
  randomize(a, 72);
  randomize(b, 72);
  NoGradGuard ng;
  Tensor x = rand64({1, 10, 8}, 73);
  CHECK(max_abs_diff(a.forward(x), b.forward(x)) > 1e-4);  // mini-batch size matters when learning
  a.set_base_lr_multiplier(0.0);
  b.set_base_lr_multiplier(0.0);
  CHECK(max_abs_diff(a.forward(x), b.forward(x)) < 1e-14);  // nothing learned: W = W0 throughout

  ModelConfig mlp = tiny_ttt_config("ttt_mlp", 16);
  mlp.ttt.base_lr = -1;  // 0.1, warmed up from 0.01
  // ttt-lm-jax make_get_ttt_lr_mult: (0.01 + min(1, (step-1)/warmup) (0.1 - 0.01)) / 0.1
  CHECK(ttt_base_lr_multiplier(mlp, 1, 100) == doctest::Approx(0.1));
  CHECK(ttt_base_lr_multiplier(mlp, 51, 100) == doctest::Approx(0.55));
  CHECK(ttt_base_lr_multiplier(mlp, 500, 100) == doctest::Approx(1.0));
  CHECK(ttt_base_lr_multiplier(tiny_ttt_config("ttt_linear", 16), 1, 100) == 1.0);

  // The trainer's hook reaches every TTT layer of a language model (0-based step 50 = JAX step 51).
  ModelConfig lm = mlp;
  lm.vocab_size = 16;
  lm.n_layers = 2;
  lm.d_ff = 16;
  LanguageModel model(lm);
  apply_ttt_base_lr_warmup(model, 50, 100);
  int found = 0;
  std::function<void(const Module&)> visit = [&](const Module& mod) {
    if (auto* t = dynamic_cast<const TTTMixer*>(&mod)) {
      CHECK(t->base_lr_multiplier() == doctest::Approx(0.55));
      ++found;
    }
    for (auto& [n, c] : mod.named_children()) visit(*c);
  };
  visit(model);
  CHECK(found == 2);
}

TEST_CASE("config and input errors name the key") {
  Generator g(81);
  auto throws_with = [&](auto tweak, const char* text) {
    ModelConfig c = tiny_ttt_config("ttt_linear", 16);
    tweak(c);
    CHECK_THROWS_WITH_AS(TTTMixer(c, g), doctest::Contains(text), std::invalid_argument);
  };
  throws_with([](ModelConfig& c) { c.ttt.mini_batch = 0; }, "model.ttt.mini_batch");
  throws_with([](ModelConfig& c) { c.ttt.impl = "fast"; }, "model.ttt.impl");
  throws_with([](ModelConfig& c) { c.backbone = "rwkv"; }, "model.backbone");
  throws_with([](ModelConfig& c) { c.n_heads = 3; }, "model.n_heads");
  throws_with([](ModelConfig& c) { c.mixer = "attention"; }, "model.mixer");
  TTTMixer layer(tiny_ttt_config("ttt_linear", 16), g);
  CHECK_THROWS_WITH_AS(layer.forward(zeros({1, 4, 6})), doctest::Contains("expected input [B, T, 8]"),
                       std::invalid_argument);
  // b = the whole sequence with learnable token offsets: one offset per position up to max_seq_len.
  ModelConfig whole = tiny_ttt_config("ttt_linear", -1);
  whole.ttt.learnable_token_idx = true;
  whole.max_seq_len = 6;
  TTTMixer w(whole, g);
  CHECK(w.forward(zeros({1, 6, 8})).shape() == Shape{1, 6, 8});
  CHECK_THROWS_WITH_AS(w.forward(zeros({1, 7, 8})), doctest::Contains("model.max_seq_len"), std::invalid_argument);
}

TEST_CASE("bf16 activations: the inner loop runs in float32 and the result tracks the float32 layer") {
  // The kernel profiler names each GEMM by its dtypes. With bf16 activations, the projections (a fixed
  // number per call) run in bf16 and every product of the inner loop (whose number grows with the
  // sequence: one set per mini-batch) in float32. A bf16 inner loop would add bf16 GEMMs per
  // mini-batch and leave no float32 ones.
  auto gemms_by_dtype = [](TTTMixer& layer, const Tensor& x) {
    Profiler::reset();
    Profiler::set_enabled(true);
    (void)layer.forward(x);
    Profiler::set_enabled(false);
    std::map<std::string, int64_t> n;
    for (const KernelStat& k : Profiler::snapshot())
      if (k.name.rfind("gemm ", 0) == 0) n[k.name.substr(k.name.rfind(' ') + 1)] += k.calls;  // "<ab>-><c>"
    Profiler::reset();
    return n;
  };
  for (std::string mixer : {"ttt_linear", "ttt_mlp"}) {
    CAPTURE(mixer);
    ModelConfig cfg = tiny_ttt_config(mixer, 4);
    Generator g1(91), g2(91);
    TTTMixer a(cfg, g1), b(cfg, g2);
    randomize(a, 92);
    randomize(b, 92);
    a.to(DType::f32);
    b.to(DType::bf16);
    NoGradGuard ng;
    Tensor x = rand64({1, 9, cfg.d_model}, 93).to(DType::f32);
    Tensor ya = a.forward(x), yb = b.forward(x.to(DType::bf16));
    CHECK(yb.dtype() == DType::bf16);
    double scale = max_abs_diff(ya, zeros_like(ya));
    CHECK(max_abs_diff(yb.to(DType::f32), ya) < 0.05 * scale);

    // The fused TTT-Linear scan (impl auto) runs on float32 (or float64) tensors only
    // (kernels/ttt_linear_scan.h); the composite dual form is where bf16 could leak into the loop.
    a.set_impl("dual");
    b.set_impl("dual");
    Tensor x17 = rand64({1, 17, cfg.d_model}, 94).to(DType::f32);  // 5 mini-batches instead of 3
    auto a9 = gemms_by_dtype(a, x), b9 = gemms_by_dtype(b, x.to(DType::bf16));
    auto b17 = gemms_by_dtype(b, x17.to(DType::bf16));
    const int64_t f32_9 = b9["float32->float32"], f32_17 = b17["float32->float32"];
    int64_t bf16_9 = 0, bf16_17 = 0;
    for (auto& [name, n] : b9) bf16_9 += name.rfind("bfloat16", 0) == 0 ? n : 0;
    for (auto& [name, n] : b17) bf16_17 += name.rfind("bfloat16", 0) == 0 ? n : 0;
    INFO("bf16 layer, T = 9: " << f32_9 << " float32 and " << bf16_9 << " bf16 GEMMs; T = 17: " << f32_17 << " and "
                               << bf16_17);
    CHECK(bf16_9 > 0);                                  // the projections take the activations' dtype
    CHECK(bf16_17 == bf16_9);                           // ... and only they: none per mini-batch
    CHECK(f32_17 > f32_9);                              // the inner loop's products are float32
    CHECK(f32_9 + bf16_9 == a9["float32->float32"]);    // and nothing else changed
    CHECK(b9.size() <= 2);                              // no other dtype pairs
  }
}
