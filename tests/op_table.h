// tests/op_table.h — the op table: every differentiable op of autograd/op_list.h has entries here
// (spread over tests/op_cases/*.cpp), and tests/test_ops.cpp walks them all:
//   1. gradcheck in float64 (central differences) on contiguous inputs,
//   2. gradgradcheck when `gradgrad` is set (every op unless it is piecewise linear noise),
//   3. the same op on non-contiguous views of the same values (transposed / sliced inputs) must
//      give the same outputs and first-order gradients,
//   4. float32 and bfloat16 forward results must match float64 within the case's tolerances.
// A name in TTT_DIFFERENTIABLE_OPS without an entry fails the suite.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace ttt::testing {

enum class Gen {
  normal,       // N(0, 1)
  positive,     // uniform [0.5, 2] (log, sqrt, pow base, div denominators)
  away_from_0,  // |x| in [0.3, 1.5] with random sign (abs, relu, max ties)
  index,        // int64 in [0, hi)
  mask,         // float 0/1
};

struct Input {
  Shape shape;
  Gen gen = Gen::normal;
  bool grad = true;      // differentiable input (float64 leaf in the checks)
  int64_t hi = 0;        // for Gen::index
  DType int_dtype = DType::i64;
};

struct OpCase {
  std::string op;     // a name from TTT_DIFFERENTIABLE_OPS
  std::string label;  // what this case covers, e.g. "broadcast [2,3] + [3]"
  std::vector<Input> inputs;
  std::function<tensor_list(const tensor_list&)> fn;
  double atol = 1e-5, rtol = 1e-3;  // gradcheck / gradgradcheck
  double eps = 1e-6;                // finite-difference step
  bool gradgrad = true;
  bool noncontig = true;            // also run check 3
  double f32_tol = 1e-5;            // |y - y64| <= tol * (1 + |y64|)
  double bf16_tol = 3e-2;           // bf16 storage: ~3 significant digits
  bool bf16 = true;
};

// Registration: a static OpCaseRegistrar in each tests/op_cases/*.cpp adds its cases.
std::vector<OpCase>& op_table();
struct OpCaseRegistrar {
  explicit OpCaseRegistrar(std::vector<OpCase> cases) {
    for (auto& c : cases) op_table().push_back(std::move(c));
  }
};

// Helpers for case lambdas.
inline tensor_list one(const Tensor& t) { return {t}; }
// A non-differentiable integer input (indices, ids, class targets) in [0, hi), stored as dt.
inline Input index_input(Shape s, int64_t hi, DType dt = DType::i64) {
  Input in{s, Gen::index, false, hi};
  in.int_dtype = dt;
  return in;
}
inline OpCase make(const char* op, const char* label, std::vector<Input> in,
                   std::function<tensor_list(const tensor_list&)> f) {
  OpCase c;
  c.op = op;
  c.label = label;
  c.inputs = std::move(in);
  c.fn = std::move(f);
  return c;
}

}  // namespace ttt::testing
