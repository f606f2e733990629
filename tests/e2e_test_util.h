// tests/e2e_test_util.h — the small TTT-E2E configs of the test_ttt_e2e_*.cpp tests (not a test
// unit itself).
#pragma once

#include "layers/model_config.h"

namespace ttt::testing {

struct E2ESize {
  int64_t vocab, d_model, n_layers, n_heads, d_ff, window, suffix_blocks, chunk;
};

// An E2E model of that size: seed 0, init std 0.3 (large enough that every path visibly moves the
// losses), RoPE θ 5e5, η 1, clip 1, context 64.
inline ModelConfig e2e_config(const E2ESize& s) {
  ModelConfig c;
  c.arch = "e2e";
  c.mixer = "attention";
  c.backbone = "transformer";
  c.vocab_size = s.vocab;
  c.d_model = s.d_model;
  c.n_layers = s.n_layers;
  c.n_heads = s.n_heads;
  c.d_ff = s.d_ff;
  c.window = s.window;
  c.rope_theta = 5e5;
  c.init_std = 0.3;
  c.max_seq_len = 64;
  c.e2e.suffix_blocks = s.suffix_blocks;
  c.e2e.chunk = s.chunk;
  c.e2e.inner_lr = 1.0;
  c.e2e.inner_clip = 1.0;
  return c;
}

}  // namespace ttt::testing
