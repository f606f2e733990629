// tests/op_cases/elementwise_cases.cpp — op-table entries: binary, scalar, unary, activations.
#include "tests/op_table.h"

namespace ttt::testing {
namespace {

OpCase binary_case(const char* op, Tensor (*f)(const Tensor&, const Tensor&), Shape a, Shape b, Gen ga, Gen gb,
                   const char* label) {
  OpCase c;
  c.op = op;
  c.label = label;
  c.inputs = {{a, ga}, {b, gb}};
  c.fn = [f](const tensor_list& x) { return one(f(x[0], x[1])); };
  return c;
}

OpCase unary_case(const char* op, std::function<Tensor(const Tensor&)> f, Gen g, Shape s = {3, 4}) {
  OpCase c;
  c.op = op;
  c.label = "[3,4]";
  c.inputs = {{s, g}};
  c.fn = [f](const tensor_list& x) { return one(f(x[0])); };
  return c;
}

std::vector<OpCase> cases() {
  std::vector<OpCase> v;
  v.push_back(binary_case("add", add, {2, 3}, {2, 3}, Gen::normal, Gen::normal, "same shape"));
  v.push_back(binary_case("add", add, {2, 3}, {3}, Gen::normal, Gen::normal, "broadcast [2,3] + [3]"));
  v.push_back(binary_case("add", add, {2, 1, 3}, {4, 1}, Gen::normal, Gen::normal, "broadcast both ways"));
  v.push_back(binary_case("sub", sub, {2, 3}, {2, 1}, Gen::normal, Gen::normal, "broadcast [2,3] - [2,1]"));
  v.push_back(binary_case("mul", mul, {2, 3}, {2, 3}, Gen::normal, Gen::normal, "same shape"));
  v.push_back(binary_case("mul", mul, {4}, {3, 1}, Gen::normal, Gen::normal, "outer broadcast"));
  v.push_back(binary_case("div", div, {2, 3}, {3}, Gen::normal, Gen::positive, "broadcast"));
  v.push_back(binary_case("maximum", maximum, {3, 4}, {3, 4}, Gen::away_from_0, Gen::away_from_0, "same shape"));
  v.push_back(binary_case("minimum", minimum, {3, 4}, {4}, Gen::away_from_0, Gen::away_from_0, "broadcast"));
  v.push_back(binary_case("pow", pow, {2, 3}, {2, 3}, Gen::positive, Gen::normal, "tensor exponent"));
  for (auto& c : v)
    if (c.op == "maximum" || c.op == "minimum") c.gradgrad = true;

  v.push_back(unary_case("add_scalar", [](const Tensor& x) { return add_scalar(x, 1.5); }, Gen::normal));
  v.push_back(unary_case("mul_scalar", [](const Tensor& x) { return mul_scalar(x, -2.0); }, Gen::normal));
  v.push_back(unary_case("rsub_scalar", [](const Tensor& x) { return rsub_scalar(x, 3.0); }, Gen::normal));
  v.push_back(unary_case("div_scalar", [](const Tensor& x) { return div_scalar(x, 4.0); }, Gen::normal));
  v.push_back(unary_case("rdiv_scalar", [](const Tensor& x) { return rdiv_scalar(x, 2.0); }, Gen::positive));
  v.push_back(unary_case("pow_scalar", [](const Tensor& x) { return pow_scalar(x, 2.5); }, Gen::positive));
  v.push_back(unary_case("scaled_sigmoid", [](const Tensor& x) { return scaled_sigmoid(x, 0.75); }, Gen::normal));
  v.push_back(unary_case("pow_scalar", [](const Tensor& x) { return pow_scalar(x, 3.0); }, Gen::normal));
  v.back().label = "integer exponent, negative base";

  v.push_back(unary_case("neg", neg, Gen::normal));
  v.push_back(unary_case("exp", exp, Gen::normal));
  v.push_back(unary_case("log", log, Gen::positive));
  v.push_back(unary_case("sqrt", sqrt, Gen::positive));
  v.push_back(unary_case("rsqrt", rsqrt, Gen::positive));
  v.push_back(unary_case("abs", abs, Gen::away_from_0));
  v.push_back(unary_case("square", square, Gen::normal));
  v.push_back(unary_case("reciprocal", reciprocal, Gen::positive));
  v.push_back(unary_case("tanh", tanh, Gen::normal));
  v.push_back(unary_case("sigmoid", sigmoid, Gen::normal));
  v.push_back(unary_case("relu", relu, Gen::away_from_0));
  v.push_back(unary_case("silu", silu, Gen::normal));
  v.push_back(unary_case("gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, Gen::normal));
  v.push_back(unary_case("gelu_erf", [](const Tensor& x) { return gelu(x, false); }, Gen::normal));
  v.push_back(unary_case("silu_grad", silu_grad, Gen::normal));
  v.push_back(unary_case("gelu_tanh_grad", gelu_tanh_grad, Gen::normal));
  v.push_back(unary_case("gelu_erf_grad", gelu_erf_grad, Gen::normal));
  return v;
}

OpCaseRegistrar reg(cases());

}  // namespace
}  // namespace ttt::testing
