// trainer/token_source_memory.cpp — a TokenSource over in-memory token lists (tests, bench).
#include <stdexcept>

#include "data/sampler.h"
#include "trainer/token_source.h"

namespace ttt {

namespace {

class MemorySource : public TokenSource {
 public:
  MemorySource(std::vector<int64_t> train, std::vector<int64_t> val, int64_t vocab, uint64_t seed)
      : train_(std::move(train)), val_(std::move(val)), vocab_(vocab), seed_(seed) {}

  Tensor train_rows(int64_t step, int64_t rank, int64_t world, int64_t rows, int64_t seq_len) override {
    const int64_t span = static_cast<int64_t>(train_.size()) - seq_len;
    if (span < 1)
      throw std::invalid_argument("in-memory tokens: " + std::to_string(train_.size()) +
                                  " training tokens cannot hold a window of " + std::to_string(seq_len + 1));
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(rows * (seq_len + 1)));
    for (int64_t j = 0; j < rows; ++j) {
      const uint64_t g = static_cast<uint64_t>((step * world + rank) * rows + j);
      // A counter-based hash, so row g of the data order needs no state.
      const int64_t start = static_cast<int64_t>(splitmix64(seed_ ^ splitmix64(g)) % static_cast<uint64_t>(span));
      out.insert(out.end(), train_.begin() + start, train_.begin() + start + seq_len + 1);
    }
    return from_vector_i64(out, {rows, seq_len + 1});
  }

  int64_t val_windows(int64_t seq_len) override {
    const int64_t n = static_cast<int64_t>(val_.size());
    return seq_len >= n ? 0 : (n - 1) / seq_len;
  }

  Tensor val_rows(int64_t seq_len, int64_t first, int64_t count) override {
    count = std::max<int64_t>(0, std::min(count, val_windows(seq_len) - first));
    std::vector<int64_t> out;
    for (int64_t k = first; k < first + count; ++k)
      out.insert(out.end(), val_.begin() + k * seq_len, val_.begin() + k * seq_len + seq_len + 1);
    return from_vector_i64(out, {count, seq_len + 1});
  }

  int64_t vocab_size() const override { return vocab_; }
  std::string describe() const override {
    return "in-memory tokens (" + std::to_string(train_.size()) + " train, " + std::to_string(val_.size()) + " val)";
  }

 private:
  std::vector<int64_t> train_, val_;
  int64_t vocab_;
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<TokenSource> make_memory_source(std::vector<int64_t> train, std::vector<int64_t> val,
                                                int64_t vocab_size, uint64_t seed) {
  return std::make_unique<MemorySource>(std::move(train), std::move(val), vocab_size, seed);
}

}  // namespace ttt
