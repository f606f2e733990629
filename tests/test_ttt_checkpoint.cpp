// tests/test_ttt_checkpoint.cpp — gradient checkpointing through time (paper App. C,
// layers/ttt_scan.h) leaves the output and every gradient unchanged: checkpoint groups of 0 (off),
// 1, 3 and 4 mini-batches, a sequence that is not a multiple of the mini-batch nor of the group,
// for the three implementations; and checkpointing really drops the per-mini-batch tape.
// Run: ./build/tests/test_ttt_checkpoint
#include <doctest/doctest.h>

#include "autograd/autocast.h"
#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

TEST_CASE("checkpointing through time: identical outputs and gradients for G in {1, 3, 4}") {
  for (const char* mixer : {"ttt_linear", "ttt_mlp"}) {
    for (const char* impl : {"dual", "primal", "generic"}) {
      CAPTURE(mixer);
      CAPTURE(impl);
      ModelConfig cfg = tiny_ttt_config(mixer, 4);
      Generator g(11);
      TTTMixer layer(cfg, g);
      randomize(layer, 12);
      layer.set_impl(impl);
      Tensor x = rand64({2, 23, cfg.d_model}, 13);  // 5 full mini-batches + 3 tokens
      layer.set_checkpoint_group(0);
      OutAndGrads ref = out_and_grads(layer, x);
      CHECK(grad_mass(ref) > 1e-3);
      for (int64_t G : {1, 3, 4}) {
        CAPTURE(G);
        layer.set_checkpoint_group(G);
        OutAndGrads got = out_and_grads(layer, x);
        auto [err, where] = compare(got, ref);
        CHECK_MESSAGE(err < 1e-13, err << " at " << where);
      }
    }
  }
}

TEST_CASE("checkpointing through time with W0 = 0 (first state needs no gradient) and batch GD") {
  ModelConfig cfg = tiny_ttt_config("ttt_mlp", 4);
  cfg.ttt.learnable_w0 = false;
  for (const char* impl : {"dual", "generic"}) {
    CAPTURE(impl);
    Generator g(11);
    TTTMixer layer(cfg, g);
    randomize(layer, 12);
    {  // W0 = 0 makes TTT-MLP's first mini-batch learn nothing: give the buffers values.
      NoGradGuard ng;
      for (auto& [n, b] : layer.named_buffers()) b.copy_(rand64(b.shape(), 5, false, 0.5));
    }
    layer.set_impl(impl);
    Tensor x = rand64({1, 10, cfg.d_model}, 13);
    layer.set_checkpoint_group(0);
    OutAndGrads ref = out_and_grads(layer, x);
    layer.set_checkpoint_group(2);
    auto [err, where] = compare(out_and_grads(layer, x), ref);
    CHECK_MESSAGE(err < 1e-13, err << " at " << where);
  }
}

TEST_CASE("checkpointing through time lowers the memory held between forward and backward") {
  // Bytes allocated after the forward (the tape's saved tensors) with and without checkpointing.
  // dual: the composite scan keeps every mini-batch's intermediates, G = 4 only the group inputs;
  // fused: the fused op keeps its inputs and the state every G chunks (f² + f per chunk at G = 1).
  ModelConfig cfg = tiny_ttt_config("ttt_linear", 4);
  cfg.d_model = 64;
  cfg.n_heads = 2;  // head_dim 32: |W| dominates the per-mini-batch saved tensors
  Generator g(11);
  TTTMixer layer(cfg, g);
  randomize(layer, 12);
  Tensor x = rand64({1, 128, cfg.d_model}, 13);
  auto held_after_forward = [&](int64_t G) {
    layer.set_checkpoint_group(G);
    Backend& be = backend(cpu());
    const size_t before = be.memory_allocated();
    Tensor out = layer.forward(x);
    const size_t held = be.memory_allocated() - before;
    backward({sum(out)});
    layer.zero_grad();
    return held;
  };
  for (const char* impl : {"dual", "fused"}) {
    CAPTURE(impl);
    layer.set_impl(impl);
    const size_t plain = held_after_forward(0), ckpt = held_after_forward(4);
    MESSAGE(impl << ": held after forward: " << plain << " B without, " << ckpt << " B with checkpointing (G = 4)");
    if (std::string(impl) == "dual") {
      CHECK(static_cast<double>(ckpt) < 0.6 * static_cast<double>(plain));
    } else {  // 32 chunks x 2 heads x (32² + 32) float64 states at G = 1, a quarter of them at G = 4
      const double states = 32.0 * 2 * (32 * 32 + 32) * 8;
      CHECK(static_cast<double>(plain - ckpt) >= 0.75 * states - 64);
    }
  }
}

// --- measurement (not run by default) -------------------------------------------------------------
// Peak memory of forward + backward of one TTT layer of the 125M config (d 768, 12 heads of 64,
// b = 16, Mamba backbone, float32, batch 1) with and without checkpointing through time.
// Run: ./build/tests/test_ttt_checkpoint --no-skip -tc="*peak memory*"
TEST_CASE("peak memory of one 125M TTT layer, T = 2048 and 8192, G = 0 vs 4" * doctest::skip()) {
  for (const char* mixer : {"ttt_linear", "ttt_mlp"})
    for (int64_t T : {2048, 8192}) {
      ModelConfig cfg;  // defaults: the 125M TTT-Linear config
      cfg.mixer = mixer;
      Generator g(1);
      TTTMixer layer(cfg, g);
      Generator gx(2);
      Tensor x = randn({1, T, cfg.d_model}, gx).set_requires_grad(true);
      for (int64_t G : {0, 4}) {
        layer.set_checkpoint_group(G);
        Backend& be = backend(cpu());
        const size_t base = be.memory_allocated();
        be.reset_peak_memory();
        Tensor out = layer.forward(x);
        const size_t after_fwd = be.memory_allocated() - base;
        backward({sum(out)});
        const size_t peak = be.memory_peak() - base;
        layer.zero_grad();
        x.zero_grad();
        MESSAGE(std::string(mixer) << " T=" << T << " G=" << G << ": held after forward " << after_fwd / 1048576.0
                      << " MiB, peak during forward+backward " << peak / 1048576.0 << " MiB");
      }
    }
}

TEST_CASE("checkpointing under bf16 autocast: the recomputation uses the forward's precision") {
  // The trainer runs forward inside an AutocastGuard and backward outside it; a recomputed group
  // must still multiply in bf16 like the forward did, or the gradients shift by bf16 rounding.
  ModelConfig cfg = tiny_ttt_config("ttt_linear", 4);
  cfg.d_model = 32;
  Generator g(11);
  TTTMixer layer(cfg, g);
  randomize(layer, 12);
  layer.to(DType::f32);
  Tensor x = rand64({1, 16, cfg.d_model}, 13).to(DType::f32);
  auto grads_with = [&](int64_t G) {
    layer.set_checkpoint_group(G);
    Tensor out;
    {
      AutocastGuard ac(DType::bf16);
      out = layer.forward(x);
    }
    tensor_list ps = layer.parameters();
    tensor_list gs = grad({sum(out)}, ps);
    std::vector<double> flat;
    for (const Tensor& t : gs)
      for (double v : t.tolist<double>()) flat.push_back(v);
    return flat;
  };
  std::vector<double> a = grads_with(0), b = grads_with(2);
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) err = std::max(err, std::fabs(a[i] - b[i])), scale = std::max(scale, std::fabs(a[i]));
  CHECK(err <= 1e-6 * scale);
}
