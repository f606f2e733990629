// tests/export_test_util.h — tiny models with every parameter moved off its initial value, saved as
// checkpoints, for the tests of `ttt export` / `ttt import` / `train.init_from` (not a test unit).
#pragma once

#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "layers/language_model.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"

namespace ttt::testing {

// A tiny model config: vocab 40, d_model 16, 2 heads, 2 layers, d_ff 24, TTT mini-batch 4, plus `extra`.
inline RunConfig tiny_export_config(const std::string& mixer, const std::string& backbone,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> sets = {"model.vocab_size=40", "model.d_model=16",  "model.n_heads=2",
                                   "model.n_layers=2",    "model.d_ff=24",     "model.max_seq_len=32",
                                   "model.ttt.mini_batch=4", "model.mixer=" + mixer, "model.backbone=" + backbone};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return load_config("", sets);
}

// Adds N(0, 0.2) to every parameter, so that no two parameters of a kind (norm weights at 1, biases
// and offsets at 0) stay equal: a swapped or misplaced tensor then changes the outputs.
inline void perturb_parameters(LanguageModel& m, uint64_t seed) {
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [name, p] : m.named_parameters()) p.add_(randn(p.shape(), g, opts(p.dtype()), 0.0, 0.2));
}

// Builds the model of `cfg`, perturbs it, saves it to `path` (no optimizer state) with `extras`.
inline std::unique_ptr<LanguageModel> write_tiny_checkpoint(const RunConfig& cfg, const std::string& path,
                                                           std::map<std::string, std::string> extras = {},
                                                           uint64_t seed = 11) {
  auto m = std::make_unique<LanguageModel>(cfg.model);
  perturb_parameters(*m, seed);
  CheckpointMeta meta;
  meta.step = 7;
  meta.tokens = 7 * 128;
  meta.config_yaml = dump_config(cfg);
  meta.extras = std::move(extras);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  save_checkpoint(path, m->named_parameters(), nullptr, meta);
  return m;
}

// Same shape, dtype and bytes.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor x = a.detach().contiguous(), y = b.detach().contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * dtype_size(x.dtype())) == 0;
}

}  // namespace ttt::testing
