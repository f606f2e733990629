// tests/op_cases/structural_cases.cpp — op-table entries: reductions, matmul, views, copies.
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

std::vector<OpCase> cases() {
  std::vector<OpCase> v;
  v.push_back(make("sum", "all dims", {{{3, 4}}}, [](const tensor_list& x) { return one(sum(x[0])); }));
  v.push_back(make("sum", "dims {0, 2} keepdim", {{{2, 3, 4}}},
                   [](const tensor_list& x) { return one(sum(x[0], {0, 2}, true)); }));
  v.push_back(make("sum", "dim -1", {{{2, 3, 4}}}, [](const tensor_list& x) { return one(sum(x[0], {-1})); }));
  v.push_back(make("mean", "dim 1", {{{2, 3, 4}}}, [](const tensor_list& x) { return one(mean(x[0], {1})); }));
  v.push_back(make("max", "dim 1", {{{3, 5}}}, [](const tensor_list& x) { return one(max(x[0], {1})); }));
  v.push_back(make("max", "all", {{{3, 5}}}, [](const tensor_list& x) { return one(max(x[0])); }));
  v.push_back(make("min", "dim 0 keepdim", {{{3, 5}}}, [](const tensor_list& x) { return one(min(x[0], {0}, true)); }));
  v.push_back(make("sum_to", "[2,3,4] -> [3,1]", {{{2, 3, 4}}},
                   [](const tensor_list& x) { return one(sum_to(x[0], {3, 1})); }));
  v.push_back(make("cumsum", "dim 1", {{{3, 4}}}, [](const tensor_list& x) { return one(cumsum(x[0], 1)); }));
  v.push_back(make("cumsum", "dim 0", {{{3, 4}}}, [](const tensor_list& x) { return one(cumsum(x[0], 0)); }));

  v.push_back(make("matmul", "2-D", {{{3, 4}}, {{4, 5}}}, [](const tensor_list& x) { return one(matmul(x[0], x[1])); }));
  v.push_back(make("matmul", "batched, broadcast batch", {{{2, 3, 4}}, {{4, 2}}},
                   [](const tensor_list& x) { return one(matmul(x[0], x[1])); }));
  v.push_back(make("matmul", "batch broadcast both", {{{2, 1, 3, 4}}, {{3, 4, 2}}},
                   [](const tensor_list& x) { return one(matmul(x[0], x[1])); }));
  v.push_back(make("matmul", "vector @ matrix", {{{4}}, {{4, 3}}},
                   [](const tensor_list& x) { return one(matmul(x[0], x[1])); }));
  v.push_back(make("matmul", "matrix @ vector", {{{3, 4}}, {{4}}},
                   [](const tensor_list& x) { return one(matmul(x[0], x[1])); }));
  v.push_back(make("matmul", "transposed operand", {{{4, 3}}, {{4, 5}}},
                   [](const tensor_list& x) { return one(matmul(transpose(x[0], 0, 1), x[1])); }));
  // multi_linear: three weights of different widths, a bias on the second; the gradient of x is
  // the GEMMs' accumulated sum (first order) and the recomputed separate products (second order).
  v.push_back(make("multi_linear", "x [2,3,4] with W [5,4], [2,4] + b [2], [3,4]",
                   {{{2, 3, 4}}, {{5, 4}}, {{2, 4}}, {{3, 4}}, {{2}}}, [](const tensor_list& x) {
                     return multi_linear(x[0], {x[1], x[2], x[3]}, {Tensor(), x[4], Tensor()}, {false, false, false});
                   }));
  v.push_back(make("multi_linear", "one weight, x [3,4] transposed", {{{4, 3}}, {{2, 4}}}, [](const tensor_list& x) {
    return multi_linear(transpose(x[0], 0, 1), {x[1]}, {Tensor()}, {false});
  }));
  for (auto& c : v)
    if (c.op == "matmul" || c.op == "multi_linear") c.f32_tol = 1e-5;

  v.push_back(make("reshape", "[2,6] -> [3,4]", {{{2, 6}}}, [](const tensor_list& x) { return one(reshape(x[0], {3, -1})); }));
  v.push_back(make("permute", "[2,3,4] (2,0,1)", {{{2, 3, 4}}},
                   [](const tensor_list& x) { return one(permute(x[0], {2, 0, 1})); }));
  v.push_back(make("transpose", "[2,3,4] (0,2)", {{{2, 3, 4}}},
                   [](const tensor_list& x) { return one(transpose(x[0], 0, 2)); }));
  v.push_back(make("narrow", "dim 1 [1,3)", {{{3, 4}}}, [](const tensor_list& x) { return one(narrow(x[0], 1, 1, 2)); }));
  v.push_back(make("expand", "[3,1] -> [2,3,4]", {{{3, 1}}},
                   [](const tensor_list& x) { return one(expand(x[0], {2, 3, 4})); }));
  v.push_back(make("unsqueeze", "dim 1", {{{3, 4}}}, [](const tensor_list& x) { return one(unsqueeze(x[0], 1)); }));
  v.push_back(make("squeeze", "dim 1", {{{3, 1, 4}}}, [](const tensor_list& x) { return one(squeeze(x[0], 1)); }));
  v.push_back(make("contiguous", "of a transpose", {{{3, 4}}},
                   [](const tensor_list& x) { return one(contiguous(transpose(x[0], 0, 1))); }));
  v.push_back(make("clone", "[3,4]", {{{3, 4}}}, [](const tensor_list& x) { return one(clone(x[0])); }));
  v.push_back(make("to_dtype", "f64 -> f32 -> f64", {{{3, 4}}}, [](const tensor_list& x) {
    return one(to_dtype(to_dtype(x[0], DType::f32), x[0].dtype()));
  }));
  v.back().atol = 1e-3;  // the float32 round trip: a larger step keeps rounding out of the differences
  v.back().eps = 1e-3;
  v.back().gradgrad = true;
  v.push_back(make("narrow_scatter", "[3,2] into [3,5] at 1", {{{3, 2}}},
                   [](const tensor_list& x) { return one(narrow_scatter(x[0], {3, 5}, 1, 1)); }));
  return v;
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
