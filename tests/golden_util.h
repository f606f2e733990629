// tests/golden_util.h — reading the PyTorch golden files of tests/golden/*.json (written by
// scripts/golden/*.py and scripts/make_golden_ops.py) for the golden tests (not a test unit
// itself): the file, tensors, token ids, the model config, and the scale-relative error the
// comparisons use.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "layers/model_config.h"

namespace ttt::testing {

// tests/golden/<name>.json, parsed.
inline nlohmann::json load_golden(const std::string& name) {
  const std::string path = std::string(TTT_SOURCE_DIR) + "/tests/golden/" + name + ".json";
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "missing golden file ", path, " (regenerate with the script its test names)");
  return nlohmann::json::parse(f);
}

// A float64 tensor from {"shape": [...], "data": [...]}.
inline Tensor golden_tensor(const nlohmann::json& j) {
  return from_vector(j.at("data").get<std::vector<double>>(), Shape(j.at("shape").get<std::vector<int64_t>>()),
                     opts(DType::f64));
}

// A [rows, cols] int64 tensor from a JSON array of rows.
inline Tensor ids_of(const nlohmann::json& rows) {
  std::vector<int64_t> v;
  for (const auto& r : rows)
    for (int64_t x : r) v.push_back(x);
  return from_vector_i64(v, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

// The model-level fields every golden language-model file records under "config".
inline ModelConfig golden_model_config(const nlohmann::json& c) {
  ModelConfig m;
  m.vocab_size = c.at("vocab_size");
  m.d_model = c.at("d_model");
  m.n_layers = c.at("n_layers");
  m.n_heads = c.at("n_heads");
  m.d_ff = c.at("d_ff");
  m.mixer = c.at("mixer");
  m.backbone = c.at("backbone");
  m.rope_theta = c.at("rope_theta");
  m.norm_eps = c.at("norm_eps");
  m.conv_width = c.at("conv_width");
  m.tie_embeddings = c.at("tie_embeddings");
  return m;
}

// max |a − b| / max |b|: the error relative to the tensor's scale (infinite on a size mismatch).
inline double scaled_err(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / std::max(den, 1e-300);
}
inline double scaled_err(const Tensor& a, const Tensor& b) { return scaled_err(a.tolist<double>(), b.tolist<double>()); }

}  // namespace ttt::testing
