// tests/ttt_helpers.h — helpers shared by the TTT layer tests (not a test unit itself): tiny
// configs, randomized parameters (so every term of the layer matters), and "output + every
// gradient" of a layer for comparing implementations.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "layers/ttt_layer.h"
#include "tests/layer_helpers.h"

namespace ttt::testing {

// A tiny TTT layer config: D = 8, 2 heads of 4, MLP hidden 16.
inline ModelConfig tiny_ttt_config(const std::string& mixer, int64_t mini_batch, bool ln_residual = true,
                                   const std::string& backbone = "mamba") {
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.mixer = mixer;
  c.backbone = backbone;
  c.ttt.mini_batch = mini_batch;
  c.ttt.ln_residual = ln_residual;
  c.ttt.learnable_token_idx = true;  // with b = -1: one offset per position up to max_seq_len
  c.max_seq_len = 64;
  c.ttt.base_lr = 1.0;  // large enough that the inner updates change the outputs visibly
  c.ttt.checkpoint_group = 0;
  return c;
}

// Converts m to float64 and draws every parameter at random (seeded): norm weights around 1,
// token_idx offsets small (away from the clamp at 0), the rest N(0, scale²).
inline void randomize(Module& m, uint64_t seed, double scale = 0.5) {
  m.to(DType::f64);
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [name, p] : m.named_parameters()) {
    const bool is_norm_weight = name.find("norm_weight") != std::string::npos ||
                                name.find("post_norm.weight") != std::string::npos;
    const bool is_tok = name.find("token_idx") != std::string::npos;
    const double std = is_tok ? 0.02 : (is_norm_weight ? 0.2 : scale);
    Tensor r = randn(p.shape(), g, opts(DType::f64), is_norm_weight ? 1.0 : 0.0, std);
    p.copy_(r);
  }
}

// The layer's output for x and the gradients of sum(out · w) w.r.t. x and every parameter.
struct OutAndGrads {
  Tensor out;
  std::vector<std::pair<std::string, Tensor>> grads;  // "x" first, then parameters by name
};

inline OutAndGrads out_and_grads(TTTMixer& mixer, const Tensor& x, uint64_t w_seed = 99) {
  Tensor xin = x.detach().set_requires_grad(true);
  Tensor out = mixer.forward(xin);
  Tensor w = rand64(out.shape(), w_seed).to(out.dtype()).to(out.device());
  Tensor loss = sum(mul(out, w));
  tensor_list inputs{xin};
  std::vector<std::string> names{"x"};
  for (auto& [name, p] : mixer.named_parameters()) {
    inputs.push_back(p);
    names.push_back(name);
  }
  tensor_list g = grad({loss}, inputs, {}, std::nullopt, false, /*allow_unused=*/true);
  OutAndGrads r{out.detach(), {}};
  for (size_t i = 0; i < g.size(); ++i)
    r.grads.emplace_back(names[i], g[i].defined() ? g[i] : zeros_like(inputs[i].detach()));
  return r;
}

// Largest |a − b| / (1 + |b|) over the output and every gradient; names the worst tensor.
inline std::pair<double, std::string> compare(const OutAndGrads& a, const OutAndGrads& b) {
  auto rel = [](const Tensor& x, const Tensor& y) { return max_rel_diff(x, y, /*floor=*/1.0); };
  std::pair<double, std::string> worst{rel(a.out, b.out), "out"};
  for (size_t i = 0; i < a.grads.size(); ++i) {
    double e = rel(a.grads[i].second, b.grads[i].second);
    if (e > worst.first) worst = {e, a.grads[i].first};
  }
  return worst;
}

// Sum of |g| over all gradients: guards against comparing two all-zero results.
inline double grad_mass(const OutAndGrads& a) {
  double s = 0;
  for (auto& [n, g] : a.grads)
    for (double v : g.tolist<double>()) s += std::fabs(v);
  return s;
}

}  // namespace ttt::testing
