// tests/test_ops_golden.cpp — our ops against PyTorch, float64: outputs and the gradients of
// sum(out * w) for a fixed random w, from tests/golden/ops.json (written by
// scripts/make_golden_ops.py, which documents the format; no Python is needed here).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tests/golden_util.h"

using namespace ttt;
using namespace ttt::testing;
using json = nlohmann::json;

namespace {

// float64 agreement up to rounding: both sides compute in double, in different orders.
constexpr double kAtol = 1e-12, kRtol = 1e-10;

Shape shape_of(const json& j) { return Shape(j.at("shape").get<std::vector<int64_t>>()); }

void check_close(const Tensor& got, const json& want, const std::string& what) {
  INFO(what);
  REQUIRE(got.defined());
  REQUIRE(got.shape() == shape_of(want));
  auto g = got.to(DType::f64).tolist<double>();
  auto w = want.at("data").get<std::vector<double>>();
  REQUIRE(g.size() == w.size());
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element ", i, ": ours ", g[i], ", torch ", w[i]);
    CHECK(std::fabs(g[i] - w[i]) <= kAtol + kRtol * std::fabs(w[i]));
  }
}

using OpFn = std::function<Tensor(const json& params, const tensor_list& in)>;

// How each golden op name maps onto our API (inputs in the order the script lists them).
const std::map<std::string, OpFn>& ops() {
  static const std::map<std::string, OpFn> table = {
      {"softmax", [](const json& p, const tensor_list& in) { return softmax(in[0], p.at("dim")); }},
      {"log_softmax", [](const json& p, const tensor_list& in) { return log_softmax(in[0], p.at("dim")); }},
      {"layer_norm",
       [](const json& p, const tensor_list& in) { return layer_norm(in[0], in[1], in[2], p.at("eps")); }},
      {"rms_norm", [](const json& p, const tensor_list& in) { return rms_norm(in[0], in[1], p.at("eps")); }},
      {"cross_entropy",
       [](const json& p, const tensor_list& in) {
         return cross_entropy(in[0], in[1], p.at("ignore_index"), p.at("reduction").get<std::string>());
       }},
      {"gelu",
       [](const json& p, const tensor_list& in) {
         return gelu(in[0], p.at("approximate").get<std::string>() == "tanh");
       }},
      {"silu", [](const json&, const tensor_list& in) { return silu(in[0]); }},
      {"matmul", [](const json&, const tensor_list& in) { return matmul(in[0], in[1]); }},
      {"cumsum", [](const json& p, const tensor_list& in) { return cumsum(in[0], p.at("dim")); }},
      {"embedding", [](const json&, const tensor_list& in) { return embedding(in[0], in[1]); }},
      {"cat", [](const json& p, const tensor_list& in) { return cat(in, p.at("dim")); }},
      {"where", [](const json&, const tensor_list& in) { return where(in[0], in[1], in[2]); }},
      {"max",
       [](const json& p, const tensor_list& in) {
         return max(in[0], {p.at("dim").get<int64_t>()}, p.at("keepdim").get<bool>());
       }},
      {"tril", [](const json& p, const tensor_list& in) { return tril(in[0], p.at("diagonal")); }},
      {"triu", [](const json& p, const tensor_list& in) { return triu(in[0], p.at("diagonal")); }},
  };
  return table;
}

}  // namespace

TEST_CASE("ops agree with PyTorch (tests/golden/ops.json, float64)") {
  const json doc = load_golden("ops");
  const json& cases = doc.at("cases");
  REQUIRE(cases.size() >= 15);
  for (const json& c : cases) {
    const std::string name = c.at("name");
    SUBCASE(name.c_str()) {
      auto op = ops().find(c.at("op").get<std::string>());
      INFO("op ", c.at("op").get<std::string>());
      REQUIRE(op != ops().end());
      tensor_list in, diff;
      std::vector<std::string> diff_names;
      for (const json& j : c.at("inputs")) {
        Tensor t = j.at("dtype") == "int64"
                       ? from_vector_i64(j.at("data").get<std::vector<int64_t>>(), shape_of(j))
                       : golden_tensor(j);
        if (j.at("grad").get<bool>()) {
          t.set_requires_grad(true);
          diff.push_back(t);
          diff_names.push_back(j.at("name"));
        }
        in.push_back(t);
      }
      Tensor out = op->second(c.at("params"), in);
      check_close(out, c.at("output"), name + ": output");
      tensor_list g = grad({out}, diff, {golden_tensor(c.at("weight"))});
      REQUIRE(g.size() == diff_names.size());
      for (size_t i = 0; i < g.size(); ++i)
        check_close(g[i], c.at("grads").at(diff_names[i]), name + ": gradient w.r.t. " + diff_names[i]);
    }
  }
}
