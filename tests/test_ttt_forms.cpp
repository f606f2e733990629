// tests/test_ttt_forms.cpp — the three TTT implementations agree: dual form (closed-form matmuls),
// primal form (token by token with accumulators) and the generic form (inner gradient from
// grad(create_graph)), on outputs and on the gradients of every parameter and of the input, in
// float64, for TTT-Linear and TTT-MLP, with and without LN + residual, for mini-batch sizes 1, 4
// and 16 with sequence lengths that leave a shorter final mini-batch.
// Run: ./build/tests/test_ttt_forms
#include <doctest/doctest.h>

#include "tests/ttt_helpers.h"

using namespace ttt;
using namespace ttt::testing;

namespace {

void check_forms_agree(const std::string& mixer, int64_t b, bool ln, int64_t T, const std::string& backbone,
                       bool bias = true) {
  CAPTURE(mixer);
  CAPTURE(b);
  CAPTURE(ln);
  CAPTURE(T);
  CAPTURE(backbone);
  CAPTURE(bias);
  ModelConfig cfg = tiny_ttt_config(mixer, b, ln, backbone);
  cfg.ttt.inner_bias = bias;
  Generator g(1);
  TTTMixer layer(cfg, g);
  randomize(layer, 2);
  Tensor x = rand64({2, T, cfg.d_model}, 3);

  layer.set_impl("dual");
  OutAndGrads dual = out_and_grads(layer, x);
  layer.set_impl("primal");
  OutAndGrads primal = out_and_grads(layer, x);
  layer.set_impl("generic");
  OutAndGrads generic = out_and_grads(layer, x);

  CHECK(grad_mass(dual) > 1e-3);
  auto [e_p, where_p] = compare(primal, dual);
  auto [e_g, where_g] = compare(generic, dual);
  CHECK_MESSAGE(e_p < 1e-11, "primal vs dual: " << e_p << " at " << where_p);
  CHECK_MESSAGE(e_g < 1e-11, "generic vs dual: " << e_g << " at " << where_g);
  // Every parameter the layer has must receive a gradient (the comparison is not vacuous).
  for (auto& [name, gr] : dual.grads) {
    double m = 0;
    for (double v : gr.tolist<double>()) m = std::max(m, std::fabs(v));
    CHECK_MESSAGE(m > 0, name << " has an all-zero gradient");
  }
}

}  // namespace

TEST_CASE("TTT forms agree: TTT-Linear, b in {1, 4, 16}, LN+residual on/off") {
  for (bool ln : {true, false}) {
    check_forms_agree("ttt_linear", 1, ln, 5, "mamba");
    check_forms_agree("ttt_linear", 4, ln, 11, "mamba");
    check_forms_agree("ttt_linear", 16, ln, 19, "mamba");
  }
}

TEST_CASE("TTT forms agree: TTT-MLP, b in {1, 4, 16}, LN+residual on/off") {
  for (bool ln : {true, false}) {
    check_forms_agree("ttt_mlp", 1, ln, 5, "mamba");
    check_forms_agree("ttt_mlp", 4, ln, 11, "mamba");
    check_forms_agree("ttt_mlp", 16, ln, 19, "mamba");
  }
}

TEST_CASE("TTT forms agree: Transformer backbone, no inner bias, batch GD over the whole sequence") {
  check_forms_agree("ttt_linear", 4, true, 9, "mamba", /*bias=*/false);
  check_forms_agree("ttt_mlp", 4, false, 9, "mamba", /*bias=*/false);
  check_forms_agree("ttt_linear", 4, true, 9, "transformer");
  check_forms_agree("ttt_mlp", 4, true, 9, "transformer");
  check_forms_agree("ttt_linear", -1, true, 9, "mamba");
  check_forms_agree("ttt_mlp", -1, false, 9, "mamba");
}

TEST_CASE("TTT forms: the inner loop actually changes the output (mini-batch matters)") {
  // With b = 1 (online GD) and b = 16 the outputs must differ, else nothing was learned in the loop.
  ModelConfig c1 = tiny_ttt_config("ttt_linear", 1), c16 = tiny_ttt_config("ttt_linear", 16);
  c1.ttt.learnable_token_idx = c16.ttt.learnable_token_idx = false;
  Generator g1(1), g2(1);
  TTTMixer a(c1, g1), b(c16, g2);
  randomize(a, 2);
  randomize(b, 2);
  Tensor x = rand64({1, 12, 8}, 3);
  NoGradGuard ng;
  CHECK(max_abs_diff(a.forward(x), b.forward(x)) > 1e-3);
}
