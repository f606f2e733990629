// tests/test_ttt_forms.cpp — the three TTT implementations agree: dual form (closed-form matmuls),
// primal form (token by token with accumulators) and the generic form (inner gradient from
// grad(create_graph)), on outputs and on the gradients of every parameter and of the input, in
// float64, for TTT-Linear and TTT-MLP, with and without LN + residual, for mini-batch sizes 1, 4
// and 16 with sequence lengths that leave a shorter final mini-batch.
// Run: ./build/tests/test_ttt_forms
#include <doctest/doctest.h>

#include "layers/ttt_inner.h"
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
  // Primal and dual share inner_loss_grad and the MLP's hand-derived inner gradient, so agreeing
  // with each other proves nothing about those: each is also pinned against the generic form,
  // whose inner gradient is autograd's.
  auto [e_pg, where_pg] = compare(primal, generic);
  CHECK_MESSAGE(e_p < 1e-11, "primal vs dual: " << e_p << " at " << where_p);
  CHECK_MESSAGE(e_g < 1e-11, "generic vs dual: " << e_g << " at " << where_g);
  CHECK_MESSAGE(e_pg < 1e-11, "primal vs generic: " << e_pg << " at " << where_pg);
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

TEST_CASE("the hand-derived inner gradients equal autograd's (inner_loss_grad; the MLP's G1)") {
  // The dual and primal forms use inner_loss_grad (dl/dZ of the LN + L2 inner loss) and, for
  // TTT-MLP, G1 = (G2 W2^T) * gelu'(Z1); both written out by hand. Here each against grad() of the
  // loss they differentiate, in float64, with and without LN + residual.
  for (bool ln : {true, false}) {
    CAPTURE(ln);
    InnerNorm n;
    n.ln_residual = ln;
    if (ln) {
      n.w = rand64({2, 5}, 11, false, 0.3);
      n.w = add_scalar(n.w, 1.0);
      n.b = rand64({2, 5}, 12, false, 0.3);
    }
    Tensor target = rand64({3, 2, 4, 5}, 13);
    // inner_loss_grad = d sum(inner_loss) / dZ
    Tensor Z = rand64({3, 2, 4, 5}, 14, true);
    Tensor auto_g = grad({sum(inner_loss(Z, target, n))}, {Z})[0];
    CHECK(max_abs_diff(inner_loss_grad(Z.detach(), target, n), auto_g) < 1e-12);
    CHECK(max_abs_diff(auto_g, zeros_like(auto_g)) > 1e-3);
    // The MLP: Z1 = X W1 + b1, Z2 = gelu(Z1) W2 + b2; G1 = dl/dZ1.
    Tensor X = rand64({3, 2, 4, 5}, 15), W1 = rand64({2, 5, 7}, 16), W2 = rand64({2, 7, 5}, 17);
    Tensor Z1 = matmul(X, W1).detach().set_requires_grad(true);
    Tensor Z2 = matmul(gelu(Z1, true), W2);
    Tensor auto_g1 = grad({sum(inner_loss(Z2, target, n))}, {Z1})[0];
    Tensor G2 = inner_loss_grad(Z2.detach(), target, n);
    Tensor G1 = mul(matmul(G2, transpose(W2, -2, -1)), gelu_tanh_grad(Z1.detach()));
    CHECK(max_abs_diff(G1, auto_g1) < 1e-12);
  }
}
