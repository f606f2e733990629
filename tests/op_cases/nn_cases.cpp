// tests/op_cases/nn_cases.cpp — op-table entries: softmax, log-softmax, the norms, cross-entropy.
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

Input targets(Shape s, int64_t classes, DType dt = DType::i64) {
  Input in{s, Gen::index, false, classes};
  in.int_dtype = dt;
  return in;
}

std::vector<OpCase> cases() {
  std::vector<OpCase> v;
  v.push_back(make("softmax", "[3,5] dim -1", {{{3, 5}}}, [](const tensor_list& x) { return one(softmax(x[0], -1)); }));
  v.push_back(make("softmax", "[2,4,3] dim 1 (not last)", {{{2, 4, 3}}},
                   [](const tensor_list& x) { return one(softmax(x[0], 1)); }));
  v.push_back(make("log_softmax", "[3,5] dim -1", {{{3, 5}}},
                   [](const tensor_list& x) { return one(log_softmax(x[0], -1)); }));
  v.push_back(make("log_softmax", "[4,3] dim 0 (not last)", {{{4, 3}}},
                   [](const tensor_list& x) { return one(log_softmax(x[0], 0)); }));

  v.push_back(make("layer_norm", "[2,3,5] weight and bias", {{{2, 3, 5}}, {{5}}, {{5}}},
                   [](const tensor_list& x) { return one(layer_norm(x[0], x[1], x[2], 1e-5)); }));
  v.push_back(make("layer_norm", "[4,6] no affine", {{{4, 6}}},
                   [](const tensor_list& x) { return one(layer_norm(x[0], Tensor(), Tensor(), 1e-5)); }));
  v.push_back(make("layer_norm", "[3,4] weight only", {{{3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(layer_norm(x[0], x[1], Tensor(), 1e-5)); }));
  v.push_back(make("rms_norm", "[2,3,4] weight", {{{2, 3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(rms_norm(x[0], x[1], 1e-6)); }));
  v.push_back(make("rms_norm", "[3,5] no weight", {{{3, 5}}},
                   [](const tensor_list& x) { return one(rms_norm(x[0], Tensor(), 1e-6)); }));

  v.push_back(make("cross_entropy", "[4,5] mean", {{{4, 5}}, targets({4}, 5)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1])); }));
  // ignore_index 0 is a real class id, so about a fifth of the rows are ignored.
  v.push_back(make("cross_entropy", "[6,5] mean, ignore_index 0", {{{6, 5}}, targets({6}, 5)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1], 0, "mean")); }));
  v.push_back(make("cross_entropy", "[2,3,4] sum, int32 targets", {{{2, 3, 4}}, targets({2, 3}, 4, DType::i32)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1], -100, "sum")); }));
  v.push_back(make("cross_entropy", "[3,4] none, ignore_index 1", {{{3, 4}}, targets({3}, 4)},
                   [](const tensor_list& x) { return one(cross_entropy(x[0], x[1], 1, "none")); }));
  return v;
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
