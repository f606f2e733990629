// tests/op_cases/ssd_cases.cpp — op-table entries: ssd_scan (Mamba 2's SSD). Forward through the
// fused CPU reference kernel; the float64 first-order gradient and every gradgradcheck go through
// the composite backward. dt > 0 and A < 0 come from positive inputs; both outputs (y, H_T) are
// checked. Groups, an initial state, chunks that do not divide T.
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

// x [B,T,H,P], dt [B,T,H], A [H], B/C [B,T,G,N] (, h0 [B,H,P,N]).
OpCase ssd(const char* label, int64_t B, int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk,
           bool with_h0) {
  OpCase c;
  c.op = "ssd_scan";
  c.label = label;
  c.inputs = {{{B, T, H, P}}, {{B, T, H}, Gen::positive}, {{H}, Gen::positive}, {{B, T, G, N}}, {{B, T, G, N}}};
  if (with_h0) c.inputs.push_back({{B, H, P, N}});
  c.fn = [=](const tensor_list& x) {
    // Decays e^{dt·A} in (0.1, 1): A = −0.5 · input, dt ∈ [0.5, 2].
    return ssd_scan(x[0], x[1], mul_scalar(x[2], -0.5), x[3], x[4], with_h0 ? x[5] : Tensor(), chunk);
  };
  c.bf16 = false;  // the scan runs in float32 and float64 only (the composite in bf16 is not a target)
  return c;
}

std::vector<OpCase> cases() {
  return {
      ssd("[1,5,2,2] N 3, chunk 2, h0", 1, 5, 2, 2, 1, 3, 2, true),
      ssd("two groups [2,4,4,1] N 2, chunk 3", 2, 4, 4, 1, 2, 2, 3, false),
      ssd("one chunk longer than T", 1, 3, 1, 2, 1, 2, 8, true),
  };
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
