// data/sampler.h — which windows of tokens make up each batch.
//
// A window is seq_len + 1 consecutive tokens of a split's stream (documents packed, EOS after each):
// the model reads tokens [0, T) and predicts tokens [1, T+1). Two modes (WindowOptions):
//   packed (min_doc_tokens = 0)  windows anywhere in the stream, crossing document boundaries
//                                 (as the official TTT code and llm.c train);
//   single-document (min_doc_tokens = L > 0)  only windows inside one document of at least
//                                 max(L, T+1) tokens (for long-context evaluation).
//
// Training: RandomWindowSampler is stateless. Batch `step` of rank r out of world W is a pure
// function of (seed, step, r, W, batch_size) and the data: row j is draw number
// g = step*W*B + r*B + j, whose start is a counter-based hash (splitmix64) of (seed, g) mapped
// uniformly onto the possible windows. So ranks never share a draw, the global batch of a step is
// the same however it is split over ranks (rank r's rows are rows [r*B, (r+1)*B) of the world-1
// batch of size W*B), and resuming needs only the step number.
//
// Evaluation: SequentialWindows walks non-overlapping windows in order, no randomness: window k
// starts at k*T (packed) so every token after the first is predicted exactly once; in
// single-document mode each document is cut the same way and leftovers shorter than T+1 are dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/tensor.h"
#include "data/dataset.h"

namespace ttt {

struct WindowOptions {
  int64_t seq_len = 0;         // T (> 0)
  int64_t min_doc_tokens = 0;  // 0: packed windows; > 0: single-document windows (see above)
};

struct Batch {
  Tensor tokens;                // int64 [rows, T+1] on the CPU; inputs = [:, :T], targets = [:, 1:]
  std::vector<int64_t> starts;  // stream position of each row's first token
  int64_t rows() const { return static_cast<int64_t>(starts.size()); }
};

// The windows a mode allows, shared by both samplers: `count` windows numbered 0..count-1.
class WindowIndex {
 public:
  // stride: distance between consecutive window starts inside a span (1 for random draws, T for
  // sequential evaluation). Throws std::invalid_argument when no window fits.
  WindowIndex(const TokenDataset& ds, WindowOptions opt, int64_t stride);
  int64_t count() const { return count_; }
  int64_t start(int64_t window) const;  // stream position of window `window`

 private:
  int64_t stride_;
  std::vector<int64_t> span_begin_;   // eligible spans (one for packed mode, one per document otherwise)
  std::vector<int64_t> first_window_; // index of each span's first window; count_ appended
  int64_t count_ = 0;
};

class RandomWindowSampler {
 public:
  RandomWindowSampler(std::shared_ptr<const TokenDataset> ds, WindowOptions opt, uint64_t seed);
  Batch sample(int64_t step, int rank, int world, int64_t batch_size) const;
  // Start of draw number g (what row j of a batch uses with g = step*W*B + r*B + j).
  int64_t draw_start(uint64_t g) const;
  int64_t num_windows() const { return index_.count(); }
  int64_t seq_len() const { return opt_.seq_len; }

 private:
  std::shared_ptr<const TokenDataset> ds_;
  WindowOptions opt_;
  uint64_t seed_;
  WindowIndex index_;
};

class SequentialWindows {
 public:
  SequentialWindows(std::shared_ptr<const TokenDataset> ds, WindowOptions opt);
  int64_t num_windows() const { return index_.count(); }
  int64_t window_start(int64_t k) const { return index_.start(k); }
  // Windows [first, first + count), clipped at the end (a batch may have fewer rows, even none).
  Batch read(int64_t first, int64_t count) const;
  // Batch i of rank r out of W: windows (i*W + r)*B + j for j < B, clipped. All ranks together
  // cover every window exactly once over num_batches(W, B) batches.
  Batch batch(int64_t index, int rank, int world, int64_t batch_size) const;
  int64_t num_batches(int world, int64_t batch_size) const;
  int64_t seq_len() const { return opt_.seq_len; }

 private:
  std::shared_ptr<const TokenDataset> ds_;
  WindowOptions opt_;
  WindowIndex index_;
};

// splitmix64's output function (Steele, Lea & Flood 2014): a bijection on 64-bit integers with
// good avalanche, so distinct counters give distinct, well-mixed values.
uint64_t splitmix64(uint64_t z);

// The counter-based hash behind the draws: splitmix64's finaliser applied to (seed, counter).
uint64_t counter_hash(uint64_t seed, uint64_t counter);

}  // namespace ttt
