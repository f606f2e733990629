// tests/test_remat_io.cpp — model.remat_io (layers/block.h; layers/ttt_layer.h Note [Remat]) and
// model.ttt.bf16_io: the recomputed pre-conv and the TTT layer's checkpointed input and output
// sides give the values and gradients of the stored path (gradcheck in float64, the whole model
// on and off), and they keep less for the backward, by a hand count of the tensors they no longer
// store. model.ttt.bf16_io (Note [bf16 activations] in layers/ttt_layer.cpp): bf16 activations
// between the projections, the scan and o_proj track the float32 ones and keep fewer bytes.
// Run: ./build/tests/test_remat_io
#include <doctest/doctest.h>

#include <map>

#include "autograd/autocast.h"
#include "autograd/gradcheck.h"
#include "autograd/graph_memory.h"
#include "layers/language_model.h"
#include "layers/norm.h"
#include "tests/check_close.h"
#include "tests/cuda_test_util.h"
#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

ModelConfig micro_lm(const std::string& mixer, const std::string& backbone, bool remat) {
  ModelConfig c;
  c.vocab_size = 29;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 24;
  c.mixer = mixer;
  c.backbone = backbone;
  c.init_std = 0.2;  // every path visibly changes the loss
  c.max_seq_len = 64;
  c.ttt.mini_batch = 4;
  c.ttt.checkpoint_group = 0;
  c.seed = 7;
  c.remat_io = remat;
  return c;
}

std::map<std::string, int64_t> saved_by_op(const Tensor& loss) {
  std::map<std::string, int64_t> m;
  for (const SavedBytes& r : saved_bytes_by_op(loss)) m[r.op] = r.bytes;
  return m;
}

int64_t total(const std::map<std::string, int64_t>& m) {
  int64_t t = 0;
  for (const auto& [op, b] : m) t += b;
  return t;
}

// The loss and every parameter gradient of the same batch through `on` and `off` under bf16
// autocast (on the models' device): equal to the last digits.
void check_same_under_autocast(LanguageModel& on, LanguageModel& off, const Tensor& ids, const Tensor& targets) {
  Tensor l_on, l_off;
  {
    AutocastGuard ac(DType::bf16);
    l_on = on.loss(ids, targets);
    l_off = off.loss(ids, targets);
  }
  CHECK(l_on.item() == doctest::Approx(l_off.item()).epsilon(1e-6));
  const tensor_list g_on = grad({l_on}, on.parameters()), g_off = grad({l_off}, off.parameters());
  REQUIRE(g_on.size() == g_off.size());
  for (size_t i = 0; i < g_on.size(); ++i) {
    CAPTURE(i);
    CHECK(max_rel_diff(g_on[i].to(cpu()), g_off[i].to(cpu()), 1e-3) < 1e-4);
  }
}

}  // namespace

TEST_CASE("TTT forward_residual(h, norm, prelude) == forward(norm(h + prelude(h))); gradcheck w.r.t. h, the norm, the prelude and every parameter") {
  struct Case {
    const char* mixer;
    const char* backbone;
    bool prelude;
  };
  for (Case c : {Case{"ttt_linear", "mamba", true}, Case{"ttt_linear", "mamba", false}, Case{"ttt_mlp", "mamba", true},
                 Case{"ttt_linear", "transformer", false}}) {
    CAPTURE(c.mixer);
    CAPTURE(c.backbone);
    CAPTURE(c.prelude);
    ModelConfig cfg = tiny_ttt_config(c.mixer, 4, true, c.backbone);
    cfg.d_model = 4;
    cfg.ttt.mlp_expansion = 2;
    Generator g(31);
    TTTMixer layer(cfg, g);
    randomize(layer, 32);
    RMSNorm norm(cfg.d_model);
    randomize(norm, 33);
    // The prelude as the Mamba backbone's pre-conv: conv(norm2(h)) with a depthwise conv of width 3.
    RMSNorm pre_norm(cfg.d_model);
    randomize(pre_norm, 35);
    const Tensor conv_w = rand64({cfg.d_model, 3}, 36, true), conv_b = rand64({cfg.d_model}, 37, true);
    const ResidualPrelude pre{[](const Tensor& h, const tensor_list& p) { return causal_conv1d(rms_norm(h, p[0], 1e-6), p[1], p[2]); },
                              {pre_norm.weight, conv_w, conv_b}};
    const ResidualPrelude* pre_p = c.prelude ? &pre : nullptr;
    const Tensor h = rand64({1, 6, cfg.d_model}, 34, true);
    // Same values as the stored path (a loose check would let a region drop a term).
    Tensor h1, direct;
    {
      NoGradGuard ng;
      h1 = c.prelude ? add(h, pre.fn(h, pre.params)) : h;
      direct = layer.forward(norm.forward(h1));
    }
    const ResidualOutput remat = layer.forward_residual(h, norm, pre_p);
    REQUIRE(remat.out.grad_fn() != nullptr);
    CHECK(max_rel_diff(remat.out.detach(), direct, 1.0) < 1e-14);
    CHECK(max_rel_diff(remat.h.detach(), h1, 1.0) < 1e-14);
    tensor_list inputs{h, norm.weight};
    if (c.prelude) inputs.insert(inputs.end(), pre.params.begin(), pre.params.end());
    for (const Tensor& p : layer.parameters()) inputs.push_back(p);
    // Both outputs: h' carries the prelude's gradient to the rest of the block.
    auto fn = [&](const tensor_list& in) {
      const ResidualPrelude pre_in{pre.fn, c.prelude ? tensor_list{in[2], in[3], in[4]} : tensor_list{}};
      const ResidualOutput r = layer.forward_residual(in[0], norm, c.prelude ? &pre_in : nullptr);
      return c.prelude ? tensor_list{r.out, r.h} : tensor_list{r.out};
    };
    GradcheckResult r = gradcheck(fn, inputs);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("remat_io on and off: the same loss and the same gradient for every parameter (whole model)") {
  struct Case {
    const char* mixer;
    const char* backbone;
  };
  for (Case c : {Case{"ttt_linear", "mamba"}, Case{"ttt_mlp", "mamba"}, Case{"ttt_linear", "transformer"},
                 Case{"attention", "mamba"}}) {
    CAPTURE(c.mixer);
    CAPTURE(c.backbone);
    LanguageModel on(micro_lm(c.mixer, c.backbone, true)), off(micro_lm(c.mixer, c.backbone, false));
    const Tensor ids = rand_ids({2, 10}, 29, 3), targets = rand_ids({2, 10}, 29, 4);
    const Tensor l_on = on.loss(ids, targets), l_off = off.loss(ids, targets);
    CHECK(l_on.item() == doctest::Approx(l_off.item()).epsilon(1e-6));
    const tensor_list p_on = on.parameters(), p_off = off.parameters();
    const tensor_list g_on = grad({l_on}, p_on), g_off = grad({l_off}, p_off);
    REQUIRE(g_on.size() == g_off.size());
    for (size_t i = 0; i < g_on.size(); ++i) {
      CAPTURE(i);
      CHECK(max_rel_diff(g_on[i], g_off[i], 1e-3) < 1e-4);
    }
  }
}

TEST_CASE("remat_io under bf16 autocast with the bf16 activations on: the same loss and gradients as without remat") {
  // The regions recompute the bf16 products, convs, RoPE and gated norm exactly as the stored
  // path ran them (Note [bf16 activations] inside the checkpoint regions).
  for (const char* mixer : {"ttt_linear", "attention"}) {
    CAPTURE(mixer);
    ModelConfig c_on = micro_lm(mixer, "mamba", true), c_off = micro_lm(mixer, "mamba", false);
    REQUIRE(c_on.ttt.bf16_io);
    REQUIRE(c_on.bf16_activations);
    LanguageModel on(c_on), off(c_off);
    check_same_under_autocast(on, off, rand_ids({2, 10}, 29, 3), rand_ids({2, 10}, 29, 4));
  }
}

TEST_CASE("CUDA remat_io under bf16 autocast through the fused scan (bf16 heads and gate): the same loss and gradients as without remat") {
  TTT_REQUIRE_GPU();
  // head_dim 64, mini-batch 16: the fused bf16-storage scan runs, so the input region picks the
  // bf16 gate and the output region the bf16 gated norm, as the stored path does.
  ModelConfig c_on = micro_lm("ttt_linear", "mamba", true);
  c_on.d_model = 128;
  c_on.n_heads = 2;
  c_on.d_ff = 192;
  c_on.ttt.mini_batch = 16;
  c_on.init_std = 0.05;
  ModelConfig c_off = c_on;
  c_off.remat_io = false;
  LanguageModel on(c_on), off(c_off);
  on.to(cuda());
  off.to(cuda());
  check_same_under_autocast(on, off, rand_ids({2, 40}, 29, 3).to(cuda()), rand_ids({2, 40}, 29, 4).to(cuda()));
}

TEST_CASE("remat_io keeps 5 activations [B, T, d_model] per TTT block fewer for the backward (hand count)") {
  // Float32, no autocast: each activation a block stops storing is U = B·T·D·4 bytes. Stored path,
  // per block, besides the scan's inputs and the MLP: the residual h (add_rms_norm before the
  // pre-conv), the pre-conv's normed input, the residual h' after it (add_rms_norm before the
  // mixer), the projections' input x, conv_q/conv_k's input x Wq, gated_layer_norm's two inputs
  // (the merged heads z and the gate x Wg) and o_proj's input = 8 U. Remat path: h (the input
  // region's input), the scan's output and the gate (the output region's inputs) = 3 U.
  const int64_t B = 2, T = 12;
  LanguageModel on(micro_lm("ttt_linear", "mamba", true)), off(micro_lm("ttt_linear", "mamba", false));
  const Tensor ids = rand_ids({B, T}, 29, 5), targets = rand_ids({B, T}, 29, 6);
  const auto m_on = saved_by_op(on.loss(ids, targets)), m_off = saved_by_op(off.loss(ids, targets));
  const int64_t U = B * T * 16 * 4, blocks = 2;
  for (const char* op : {"causal_conv1d", "gated_layer_norm"}) {
    CAPTURE(op);
    CHECK(m_off.count(op) == 1);
    CHECK(m_on.count(op) == 0);  // inside the regions: recomputed, not stored
  }
  REQUIRE(m_on.count("checkpoint") == 1);
  INFO("saved with remat_io: ", total(m_on), " B, without: ", total(m_off), " B, U = ", U, " B");
  // The norms' per-row statistics and the like differ by a few hundred bytes; the activations by 4 U.
  const int64_t saved_less = total(m_off) - total(m_on);
  CHECK(saved_less >= 5 * U * blocks);
  CHECK(saved_less < 6 * U * blocks);
}

// One TTTMixer (Mamba backbone) forward + backward under bf16 autocast, with bf16_io on or off:
// the output and the gradients of x and of every parameter, and what the graph keeps, by op.
tensor_list bf16_io_run(ModelConfig cfg, bool bf16_io, const Tensor& x, Device dev,
                        std::map<std::string, int64_t>* saved) {
  cfg.ttt.bf16_io = bf16_io;
  Generator g(8);
  TTTMixer layer(cfg, g);
  layer.to(dev);
  Tensor xin = x.detach().set_requires_grad(true);
  AutocastGuard ac(DType::bf16);
  Tensor out = layer.forward(xin);
  CHECK(out.dtype() == DType::f32);  // o_proj's output: the residual branch stays float32
  Tensor loss = sum(mul(out, out));
  *saved = saved_by_op(loss);
  tensor_list in{xin};
  for (const Tensor& p : layer.parameters()) in.push_back(p);
  tensor_list gr = grad({loss}, in, {}, std::nullopt, false, /*allow_unused=*/true);
  gr.insert(gr.begin(), out.detach());
  return gr;
}

void check_bf16_io_results(const tensor_list& a, const tensor_list& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!b[i].defined()) continue;
    CAPTURE(i);
    REQUIRE(a[i].defined());
    CHECK(a[i].dtype() == b[i].dtype());  // every parameter's gradient stays float32
    check_rel_norm(a[i].to(DType::f32).to(cpu()), b[i].to(DType::f32).to(cpu()), 2e-2, "bf16_io vs float32 activations");
  }
}

TEST_CASE("bf16_io (CPU): the convs and the gated norm keep bf16 activations; TTT-MLP's scan bf16 XQ, XK, XV; same results to bf16") {
  // U = one float32 [B, T, d_model]. conv_q/conv_k keep x Wq in bf16 (U/2 fewer); the gated
  // LayerNorm keeps z and x Wg in bf16 (U fewer; its float32 weight and bias are read as bf16
  // copies). TTT-Linear's CPU scan reads float32, so its op casts around it and keeps float32 XQ,
  // XK, XV; TTT-MLP's op keeps them as bf16 and makes float32 copies on the way in (3 U / 2 fewer).
  struct Case {
    const char* mixer;
    const char* scan_op;
    int64_t scan_saves_less_halves;  // in units of U / 2
  };
  for (Case c : {Case{"ttt_linear", "ttt_linear_scan", 0}, Case{"ttt_mlp", "ttt_mlp_scan", 3}}) {
    CAPTURE(c.mixer);
    ModelConfig cfg = tiny_ttt_config(c.mixer, 4);
    cfg.d_model = 16;
    cfg.n_heads = 2;
    const int64_t B = 2, T = 12, U = B * T * cfg.d_model * 4;
    const Tensor x = rand64({B, T, cfg.d_model}, 9, false, 0.5).to(DType::f32);
    std::map<std::string, int64_t> s16, s32;
    const tensor_list a = bf16_io_run(cfg, true, x, cpu(), &s16), b = bf16_io_run(cfg, false, x, cpu(), &s32);
    check_bf16_io_results(a, b);
    CHECK(s32.at("causal_conv1d") - s16.at("causal_conv1d") == U / 2);
    const int64_t gated_less = s32.at("gated_layer_norm") - s16.at("gated_layer_norm");
    CHECK(gated_less >= U);
    CHECK(gated_less <= U + 4 * cfg.d_model);  // + the float32 weight and bias against their bf16 copies
    CHECK(s32.at(c.scan_op) - s16.at(c.scan_op) == c.scan_saves_less_halves * U / 2);
    CHECK(total(s32) - total(s16) >= 3 * U / 2 + c.scan_saves_less_halves * U / 2);
  }
}

TEST_CASE("CUDA bf16_io: the scan also keeps bf16 XQ, XK, XV (3 U fewer in all); same results to bf16") {
  TTT_REQUIRE_GPU();
  ModelConfig cfg = tiny_ttt_config("ttt_linear", 16);
  cfg.d_model = 256;
  cfg.n_heads = 4;  // head_dim 64
  const int64_t B = 2, T = 128, U = B * T * cfg.d_model * 4;
  const Tensor x = rand64({B, T, cfg.d_model}, 9, false, 0.5).to(DType::f32).to(cuda());
  std::map<std::string, int64_t> s16, s32;
  const tensor_list a = bf16_io_run(cfg, true, x, cuda(), &s16), b = bf16_io_run(cfg, false, x, cuda(), &s32);
  check_bf16_io_results(a, b);
  // XQ, XK, XV: 3 U become bf16 (the stored states are unchanged); the convs and the gated norm as on the CPU.
  CHECK(s32.at("ttt_linear_scan") - s16.at("ttt_linear_scan") == 3 * U / 2);
  CHECK(s32.at("causal_conv1d") - s16.at("causal_conv1d") == U / 2);
  CHECK(s32.at("gated_layer_norm") - s16.at("gated_layer_norm") >= U);
  CHECK(total(s32) - total(s16) >= 3 * U);
}
