// data/dataset.h — the shards of one split as a single logical token stream.
//
// Tokens of all documents of the split, in order, each followed by EOS, concatenated across
// shards train_00000.h5, train_00001.h5, ... Only per-shard counts live in memory; tokens and
// document offsets are read on demand (chunked HDF5 reads), so a set of any size opens in
// constant memory. Reads are thread-safe (HDF5 calls are serialised by data_h5::hdf5_mutex()).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/shard_reader.h"

namespace ttt {

class TokenDataset {
 public:
  // Opens <dir>/<split>_*.h5. Throws std::runtime_error naming the file when there are none, one
  // is missing or extra (shard indices must be 0..num_shards-1), a shard is corrupt (see
  // ShardReader), or the shards disagree about vocabulary, EOS or tokenizer.
  static std::shared_ptr<const TokenDataset> open(const std::string& dir, const std::string& split);
  // True when dir holds at least one shard of this split (val is optional).
  static bool has_split(const std::string& dir, const std::string& split);

  const std::string& dir() const { return dir_; }
  const std::string& split() const { return split_; }
  int64_t num_tokens() const { return num_tokens_; }
  int64_t num_docs() const { return num_docs_; }
  int64_t vocab_size() const { return shards_.front()->info().vocab_size; }
  int64_t eos_id() const { return shards_.front()->info().eos_id; }
  const std::string& tokenizer_sha256() const { return shards_.front()->info().tokenizer_sha256; }
  const ShardInfo& shard(size_t i) const { return shards_[i]->info(); }
  size_t num_shards() const { return shards_.size(); }

  // Refuses data made for another model: throws std::runtime_error when model_vocab_size differs
  // from the shards' vocabulary (a larger, padded model vocabulary is accepted when
  // allow_padded_vocab), or when tokenizer_sha256 is given and differs from the shards'.
  void check_compatible(int64_t model_vocab_size, const std::string& tokenizer_sha256 = "",
                        bool allow_padded_vocab = false) const;

  // Copies tokens [start, start + n) of the stream into out (crossing shard boundaries).
  void read(int64_t start, int64_t n, int64_t* out) const;
  // Document d's tokens are [begin, end) of the stream, its EOS at end - 1.
  std::pair<int64_t, int64_t> doc_span(int64_t d) const;
  // Calls fn(doc, begin, end) for every document in order, reading offsets a chunk at a time.
  void for_each_doc(const std::function<void(int64_t doc, int64_t begin, int64_t end)>& fn) const;
  // Reads every token (a chunk at a time): HDF5 verifies each chunk's checksum, and every id must
  // be < vocab_size and every document must end with EOS. Throws naming the shard otherwise.
  // on_progress(tokens_done) is called after each chunk.
  void verify(const std::function<void(int64_t)>& on_progress = {}) const;

 private:
  TokenDataset() = default;
  std::string dir_, split_;
  std::vector<std::unique_ptr<ShardReader>> shards_;
  std::vector<int64_t> token_base_;  // first stream position of each shard; one extra at the end
  std::vector<int64_t> doc_base_;    // first document index of each shard; one extra at the end
  int64_t num_tokens_ = 0, num_docs_ = 0;
};

}  // namespace ttt
