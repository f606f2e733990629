// trainer/token_source.h — where the trainer, eval and bench get token windows from.
//
// A window is seq_len + 1 consecutive tokens: the model reads [0, T) and predicts [1, T+1).
// Training rows of a step are a pure function of (seed, step, rank, world), so resuming needs
// only the step number. Validation windows are non-overlapping (window k starts at k*T: every
// token after the first is predicted exactly once) and come in a fixed order.
//
// Implementations: shards written by `ttt data prepare` (open_shard_source, over data/sampler.h)
// and an in-memory token list (tests, benchmarks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // int64 [rows, seq_len + 1] on the CPU: the rows of rank `rank` for optimizer step `step`.
  virtual Tensor train_rows(int64_t step, int64_t rank, int64_t world, int64_t rows, int64_t seq_len) = 0;
  // Number of validation windows of seq_len + 1 tokens (0 if there is no validation split).
  virtual int64_t val_windows(int64_t seq_len) = 0;
  // Validation windows [first, first + count) as int64 [count, seq_len + 1] (count clipped at the end).
  virtual Tensor val_rows(int64_t seq_len, int64_t first, int64_t count) = 0;
  virtual int64_t vocab_size() const = 0;
  // Identity of the tokenizer the tokens were made with (SHA-256 of the .model), "" if none.
  virtual std::string tokenizer_sha256() const { return ""; }
  // Path of the sentencepiece model, "" if none (stored inside checkpoints).
  virtual std::string tokenizer_path() const { return ""; }
  virtual std::string describe() const = 0;
};

// Tokens held in memory; training rows start at counter-hashed positions of `train`.
std::unique_ptr<TokenSource> make_memory_source(std::vector<int64_t> train, std::vector<int64_t> val,
                                                int64_t vocab_size, uint64_t seed);

// Shards of `dir` (train_*.h5, val_*.h5 and tokenizer.model from `ttt data prepare`), sampled
// with data/sampler.h. Throws naming the directory when it holds no training shards.
std::unique_ptr<TokenSource> open_shard_source(const std::string& dir, uint64_t seed);

}  // namespace ttt
