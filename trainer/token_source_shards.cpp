// trainer/token_source_shards.cpp — TokenSource over the shards of `ttt data prepare`
// (data/dataset.h, data/sampler.h): random packed windows for training (stateless: a function
// of seed, step, rank, world), sequential non-overlapping packed windows for validation.
#include <filesystem>
#include <map>
#include <memory>

#include "data/dataset.h"
#include "data/sampler.h"
#include "trainer/token_source.h"

namespace fs = std::filesystem;

namespace ttt {

namespace {

class ShardSource : public TokenSource {
 public:
  ShardSource(const std::string& dir, uint64_t seed) : dir_(dir), seed_(seed) {
    if (!fs::is_directory(dir))
      throw std::invalid_argument("data directory '" + dir + "' does not exist (make it with `ttt data prepare`)");
    train_ = TokenDataset::open(dir, "train");
    if (TokenDataset::has_split(dir, "val")) val_ = TokenDataset::open(dir, "val");
  }

  Tensor train_rows(int64_t step, int64_t rank, int64_t world, int64_t rows, int64_t seq_len) override {
    auto& s = train_samplers_[seq_len];
    if (!s) s = std::make_unique<RandomWindowSampler>(train_, WindowOptions{seq_len, 0}, seed_);
    return s->sample(step, static_cast<int>(rank), static_cast<int>(world), rows).tokens;
  }

  int64_t val_windows(int64_t seq_len) override {
    if (!val_ || seq_len >= val_->num_tokens()) return 0;  // no window of seq_len + 1 (never computed: overflow)
    return windows(seq_len).num_windows();
  }

  Tensor val_rows(int64_t seq_len, int64_t first, int64_t count) override {
    if (!val_) throw std::invalid_argument("data directory '" + dir_ + "' has no validation shards (val_*.h5)");
    return windows(seq_len).read(first, count).tokens;
  }

  int64_t vocab_size() const override { return train_->vocab_size(); }
  std::string tokenizer_sha256() const override { return train_->tokenizer_sha256(); }
  std::string tokenizer_path() const override {
    fs::path p = fs::path(dir_) / "tokenizer.model";
    return fs::exists(p) ? p.string() : "";
  }
  std::string describe() const override {
    return dir_ + " (" + std::to_string(train_->num_tokens()) + " train tokens, " +
           std::to_string(val_ ? val_->num_tokens() : 0) + " val tokens, vocab " + std::to_string(vocab_size()) + ")";
  }

 private:
  SequentialWindows& windows(int64_t seq_len) {
    auto& w = val_windows_[seq_len];
    if (!w) w = std::make_unique<SequentialWindows>(val_, WindowOptions{seq_len, 0});
    return *w;
  }

  std::string dir_;
  uint64_t seed_;
  std::shared_ptr<const TokenDataset> train_, val_;
  std::map<int64_t, std::unique_ptr<RandomWindowSampler>> train_samplers_;
  std::map<int64_t, std::unique_ptr<SequentialWindows>> val_windows_;
};

}  // namespace

std::unique_ptr<TokenSource> open_shard_source(const std::string& dir, uint64_t seed) {
  return std::make_unique<ShardSource>(dir, seed);
}

}  // namespace ttt
