// tests/op_cases/attention_cases.cpp — op-table entries: scaled_dot_product_attention (fused
// kernel forward; the float64 first-order gradient and every gradgradcheck go through the
// composite backward). Causal, sliding window, decode-shaped (Tq < Tk) and non-causal.
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

OpCase attn(const char* label, Shape qs, Shape kvs, bool causal, int64_t window) {
  OpCase c;
  c.op = "scaled_dot_product_attention";
  c.label = label;
  c.inputs = {{qs}, {kvs}, {kvs}};
  const double scale = 0.7;  // not 1/sqrt(D): any scale must be honoured
  c.fn = [=](const tensor_list& x) { return one(scaled_dot_product_attention(x[0], x[1], x[2], causal, window, scale)); };
  return c;
}

std::vector<OpCase> cases() {
  return {
      attn("causal [1,2,4,3]", {1, 2, 4, 3}, {1, 2, 4, 3}, true, 0),
      attn("window 2 [2,1,5,3]", {2, 1, 5, 3}, {2, 1, 5, 3}, true, 2),
      attn("decode Tq 2 < Tk 5, causal", {1, 2, 2, 3}, {1, 2, 5, 3}, true, 0),
      attn("decode Tq 3 < Tk 6, window 3", {1, 1, 3, 4}, {1, 1, 6, 4}, true, 3),
      attn("not causal, Tq 3, Tk 4", {1, 2, 3, 2}, {1, 2, 4, 2}, false, 0),
  };
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
