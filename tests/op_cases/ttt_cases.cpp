// tests/op_cases/ttt_cases.cpp — op-table entries: ttt_linear_scan and ttt_mlp_scan (the fused
// TTT scans) and causal_conv1d (the Mamba backbone's fused depthwise convolution).
// First-order gradients in float64 go through the CPU reference's fused backward; gradgradcheck
// goes through the composite twins (layers/ttt_dual.h dual_linear_scan, dual_mlp_scan), the
// create_graph path.
// The fn scales the generated N(0, 1) / [0.5, 2] inputs into the layer's ranges (lr ~ 0.1–0.4,
// tok ~ 1/(i+1), W0 small) so that every term of the inner loop matters.
#include "layers/ttt_dual.h"
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

OpCase scan(const char* label, int64_t B, int64_t H, int64_t T, int64_t f, int64_t K, bool ln, bool bias, int64_t G) {
  OpCase c;
  c.op = "ttt_linear_scan";
  c.label = label;
  c.inputs = {{{B, H, T, f}}, {{B, H, T, f}}, {{B, H, T, f}}, {{B, H, T}, Gen::positive}, {{K}, Gen::positive},
              {{H, f, f}}};
  if (bias) c.inputs.push_back({{H, f}});
  if (ln) c.inputs.push_back({{H, f}, Gen::positive}), c.inputs.push_back({{H, f}});
  c.fn = [=](const tensor_list& x) {
    const Tensor lr = mul_scalar(x[3], 0.2), tok = mul_scalar(x[4], 0.5), w0 = mul_scalar(x[5], 0.3);
    const Tensor b0 = bias ? mul_scalar(x[6], 0.3) : Tensor();
    const Tensor lw = ln ? x[bias ? 7 : 6] : Tensor(), lb = ln ? x[bias ? 8 : 7] : Tensor();
    return one(ttt_linear_scan(x[0], x[1], x[2], lr, tok, w0, b0, lw, lb, {G, 1e-6},
                               [](const tensor_list& in) { return dual_linear_scan(in, 1e-6); })[0]);
  };
  c.bf16 = false;     // the op runs float32 / float64 data
  c.f32_tol = 1e-4;   // a scan of a few steps: float32 rounding compounds
  return c;
}

// ttt_mlp_scan with hidden h = 2f (the kernel takes any h; small keeps finite differences cheap).
OpCase mlp_scan(const char* label, int64_t B, int64_t H, int64_t T, int64_t f, int64_t K, bool ln, bool bias,
                int64_t G) {
  const int64_t h = 2 * f;
  OpCase c;
  c.op = "ttt_mlp_scan";
  c.label = label;
  c.inputs = {{{B, H, T, f}}, {{B, H, T, f}}, {{B, H, T, f}}, {{B, H, T}, Gen::positive}, {{K}, Gen::positive},
              {{H, f, h}}};
  if (bias) c.inputs.push_back({{H, h}});
  c.inputs.push_back({{H, h, f}});
  if (bias) c.inputs.push_back({{H, f}});
  if (ln) c.inputs.push_back({{H, f}, Gen::positive}), c.inputs.push_back({{H, f}});
  c.fn = [=](const tensor_list& x) {
    size_t i = 5;
    const Tensor lr = mul_scalar(x[3], 0.2), tok = mul_scalar(x[4], 0.5), w1 = mul_scalar(x[i++], 0.5);
    const Tensor b1 = bias ? mul_scalar(x[i++], 0.3) : Tensor();
    const Tensor w2 = mul_scalar(x[i++], 0.4);
    const Tensor b2 = bias ? mul_scalar(x[i++], 0.3) : Tensor();
    const Tensor lw = ln ? x[i] : Tensor(), lb = ln ? x[i + 1] : Tensor();
    return one(ttt_mlp_scan(x[0], x[1], x[2], lr, tok, w1, b1, w2, b2, lw, lb, {G, 1e-6},
                            [](const tensor_list& in) { return dual_mlp_scan(in, 1e-6); })[0]);
  };
  c.bf16 = false;
  c.f32_tol = 1e-4;
  return c;
}

std::vector<OpCase> cases() {
  return {
      mlp_scan("TTT-MLP B1 H2 T6 f3 K4 (partial last chunk)", 1, 2, 6, 3, 4, true, true, 1),
      mlp_scan("TTT-MLP B2 H1 T7 f2 K2, checkpoint groups of 2", 2, 1, 7, 2, 2, true, true, 2),
      mlp_scan("TTT-MLP no LN + residual, no biases, T5 K4", 1, 1, 5, 3, 4, false, false, 1),
      scan("B1 H2 T6 f4 K4 (partial last chunk)", 1, 2, 6, 4, 4, true, true, 1),
      scan("B2 H1 T8 f3 K2, checkpoint groups of 3", 2, 1, 8, 3, 2, true, true, 3),
      scan("no LN + residual, no bias, T5 K4", 1, 2, 5, 4, 4, false, false, 1),
  };
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing

namespace ttt::testing {
namespace {

// causal_conv1d: fused forward and backward on the CPU reference (first order), the composite
// formula under create_graph (gradgradcheck).
OpCase conv(const char* label, Shape x, int64_t k, bool bias) {
  OpCase c = make("causal_conv1d", label, {{x}, {{x[2], k}}}, nullptr);
  if (bias) c.inputs.push_back({{x[2]}});
  c.fn = [bias](const tensor_list& in) { return one(causal_conv1d(in[0], in[1], bias ? in[2] : Tensor())); };
  return c;
}

OpCaseRegistrar conv_reg({conv("[2,7,3] width 4", {2, 7, 3}, 4, true), conv("[1,5,2] width 1, no bias", {1, 5, 2}, 1, false),
                          conv("[1,3,2] width 5 > T", {1, 3, 2}, 5, true)});

}  // namespace
}  // namespace ttt::testing
