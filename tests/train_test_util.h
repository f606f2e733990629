// tests/train_test_util.h — training runs in-process for tests (train_loop, resume, init_from): a
// learnable in-memory token stream, one call per run, and the message of an expected error.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trainer/token_source.h"
#include "trainer/train_loop.h"

namespace ttt::testing {

// A learnable stream over 64 tokens: token t+1 = (3 t + 1) mod 64 with occasional resets.
inline std::unique_ptr<TokenSource> learnable_memory_data() {
  std::vector<int64_t> train, val;
  int64_t x = 0;
  for (int i = 0; i < 4000; ++i) train.push_back(x = (i % 97 == 0) ? i % 64 : (3 * x + 1) % 64);
  for (int i = 0; i < 200; ++i) val.push_back(x = (3 * x + 1) % 64);
  return make_memory_source(train, val, 64, 5);
}

// train() into `dir`, quietly.
inline TrainResult run_training(const RunConfig& cfg, TokenSource& data, const std::string& dir, bool resume = false,
                                int64_t stop_at = -1) {
  TrainOptions o;
  o.run_dir = dir;
  o.resume = resume;
  o.stop_at_step = stop_at;
  o.console = false;
  return train(cfg, data, o);
}

// The message of the exception `f` throws, "" if none.
inline std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace ttt::testing
