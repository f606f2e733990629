// tests/op_cases/gated_delta_cases.cpp — op-table entries: gated_delta_scan (Gated DeltaNet's delta
// rule, and without its erase term Mamba 2's SSD recurrence). Forward and first-order backward through
// the fused CPU reference kernels; every gradgradcheck goes through the composite twin (the chunked
// WY form, or the chunked gated linear form). Decays e^g in (0.3, 1) and β ∈ (0, 1) come from the
// inputs through differentiable maps; both outputs (o, M_T) are checked; an initial state, chunks
// that do not divide T.
#include "layers/delta_rule.h"
#include "layers/ssd.h"
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

// q, k [B,T,H,dk], v [B,T,H,dv], g, beta [B,T,H] (, M0 [B,H,dk,dv]).
OpCase delta(const char* label, int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv, int64_t chunk, bool with_M0,
             bool erase) {
  OpCase c;
  c.op = "gated_delta_scan";
  c.label = label;
  c.inputs = {{{B, T, H, dk}}, {{B, T, H, dk}}, {{B, T, H, dv}}, {{B, T, H}, Gen::positive}, {{B, T, H}}};
  if (with_M0) c.inputs.push_back({{B, H, dk, dv}});
  c.fn = [=](const tensor_list& x) {
    const Tensor g = mul_scalar(x[3], -0.5), beta = sigmoid(x[4]), M0 = with_M0 ? x[5] : Tensor();
    const ScanResult r = erase ? gated_delta_rule(x[0], x[1], x[2], g, beta, chunk, M0, /*fused=*/true)
                               : gated_linear_rule(x[0], x[1], x[2], g, beta, chunk, M0, /*fused=*/true);
    return tensor_list{r.y, r.state};
  };
  c.bf16 = false;  // the scan runs in float32 and float64 (activations are cast to float32 before it)
  return c;
}

std::vector<OpCase> cases() {
  return {
      delta("delta rule [1,5,2] dk 2 dv 3, chunk 2, M0", 1, 5, 2, 2, 3, 2, true, true),
      delta("delta rule [2,3,1] dk 3 dv 2, chunk 4 > T", 2, 3, 1, 3, 2, 4, false, true),
      delta("no erase term [1,5,2] dk 2 dv 3, chunk 2, M0", 1, 5, 2, 2, 3, 2, true, false),
  };
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
