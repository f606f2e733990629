// data/sampler.cpp — see sampler.h.
#include "data/sampler.h"

#include <algorithm>
#include <stdexcept>

namespace ttt {

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

namespace {

// Maps a uniform 64-bit value onto [0, n) by a 128-bit multiply (no modulo bias worth the name).
int64_t uniform_below(uint64_t u, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(u) * static_cast<uint64_t>(n)) >> 64);
}

void check_rank(int rank, int world, int64_t batch_size) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("sampler: rank " + std::to_string(rank) + " is not in [0, world size " +
                                std::to_string(world) + ")");
  if (batch_size < 0) throw std::invalid_argument("sampler: batch size must be >= 0");
}

Batch read_windows(const TokenDataset& ds, std::vector<int64_t> starts, int64_t seq_len) {
  Batch b;
  int64_t rows = static_cast<int64_t>(starts.size()), width = seq_len + 1;
  std::vector<int64_t> tokens(static_cast<size_t>(rows * width));
  for (int64_t r = 0; r < rows; ++r) ds.read(starts[static_cast<size_t>(r)], width, tokens.data() + r * width);
  b.tokens = from_vector_i64(tokens, Shape{rows, width});
  b.starts = std::move(starts);
  return b;
}

}  // namespace

uint64_t counter_hash(uint64_t seed, uint64_t counter) { return splitmix64(splitmix64(seed) ^ counter); }

WindowIndex::WindowIndex(const TokenDataset& ds, WindowOptions opt, int64_t stride) : stride_(stride) {
  if (opt.seq_len <= 0) throw std::invalid_argument("sampler: seq_len must be positive");
  if (opt.min_doc_tokens < 0) throw std::invalid_argument("sampler: min_doc_tokens must be >= 0");
  const int64_t width = opt.seq_len + 1;
  // A span of n tokens holds 1 + (n - width) / stride windows when n >= width.
  auto add_span = [&](int64_t begin, int64_t n) {
    if (n < width) return;
    span_begin_.push_back(begin);
    first_window_.push_back(count_);
    count_ += 1 + (n - width) / stride_;
  };
  if (opt.min_doc_tokens == 0) {
    add_span(0, ds.num_tokens());
    if (count_ == 0)
      throw std::invalid_argument(ds.dir() + " (" + ds.split() + "): " + std::to_string(ds.num_tokens()) +
                                  " tokens, fewer than one window of seq_len + 1 = " + std::to_string(width));
  } else {
    const int64_t min_len = std::max(opt.min_doc_tokens, width);
    ds.for_each_doc([&](int64_t, int64_t begin, int64_t end) {
      if (end - begin >= min_len) add_span(begin, end - begin);
    });
    if (count_ == 0)
      throw std::invalid_argument(ds.dir() + " (" + ds.split() + "): no document has at least " +
                                  std::to_string(min_len) + " tokens (min_doc_tokens / seq_len + 1)");
  }
  first_window_.push_back(count_);
}

int64_t WindowIndex::start(int64_t window) const {
  if (window < 0 || window >= count_) throw std::out_of_range("window " + std::to_string(window) + " out of range");
  size_t s = static_cast<size_t>(std::upper_bound(first_window_.begin(), first_window_.end(), window) -
                                 first_window_.begin()) - 1;
  return span_begin_[s] + (window - first_window_[s]) * stride_;
}

// --- RandomWindowSampler --------------------------------------------------------------------------

RandomWindowSampler::RandomWindowSampler(std::shared_ptr<const TokenDataset> ds, WindowOptions opt, uint64_t seed)
    : ds_(std::move(ds)), opt_(opt), seed_(seed), index_(*ds_, opt, /*stride=*/1) {}

int64_t RandomWindowSampler::draw_start(uint64_t g) const {
  return index_.start(uniform_below(counter_hash(seed_, g), index_.count()));
}

Batch RandomWindowSampler::sample(int64_t step, int rank, int world, int64_t batch_size) const {
  check_rank(rank, world, batch_size);
  if (step < 0) throw std::invalid_argument("sampler: step must be >= 0");
  std::vector<int64_t> starts(static_cast<size_t>(batch_size));
  const uint64_t first = (static_cast<uint64_t>(step) * world + rank) * static_cast<uint64_t>(batch_size);
  for (int64_t j = 0; j < batch_size; ++j) starts[static_cast<size_t>(j)] = draw_start(first + j);
  return read_windows(*ds_, std::move(starts), opt_.seq_len);
}

// --- SequentialWindows ----------------------------------------------------------------------------

SequentialWindows::SequentialWindows(std::shared_ptr<const TokenDataset> ds, WindowOptions opt)
    : ds_(std::move(ds)), opt_(opt), index_(*ds_, opt, /*stride=*/opt.seq_len) {}

Batch SequentialWindows::read(int64_t first, int64_t count) const {
  if (first < 0 || count < 0) throw std::invalid_argument("SequentialWindows::read: negative range");
  int64_t end = std::min(first + count, num_windows());
  std::vector<int64_t> starts;
  for (int64_t k = first; k < end; ++k) starts.push_back(index_.start(k));
  return read_windows(*ds_, std::move(starts), opt_.seq_len);
}

Batch SequentialWindows::batch(int64_t index, int rank, int world, int64_t batch_size) const {
  check_rank(rank, world, batch_size);
  return read((index * world + rank) * batch_size, batch_size);
}

int64_t SequentialWindows::num_batches(int world, int64_t batch_size) const {
  check_rank(0, world, batch_size);
  int64_t per = static_cast<int64_t>(world) * batch_size;
  return per == 0 ? 0 : (num_windows() + per - 1) / per;
}

}  // namespace ttt
