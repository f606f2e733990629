// data/shard_writer.h — writes one split ("train" or "val") as a sequence of token shards.
// Memory: a write buffer of ~1M tokens, whatever the size of the data (see shard_format.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/h5.h"
#include "data/shard_format.h"

namespace ttt {

struct ShardMeta {
  std::string split;             // "train" or "val": the file name prefix
  int64_t vocab_size = 0;
  int64_t eos_id = -1;
  std::string tokenizer_sha256;
  std::string tokenizer_file;    // the .model's file name, for people reading `data info`
  std::string sources_json;      // JSON array of the input files
};

class ShardWriter {
 public:
  // Shards go to dir (which must exist); a shard is closed once it holds >= shard_tokens tokens.
  ShardWriter(std::string dir, ShardMeta meta, int64_t shard_tokens);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one document; `tokens` must already end with the EOS id. Throws std::out_of_range
  // for an id outside [0, vocab_size).
  void add_document(const int* tokens, size_t n);
  void add_document(const std::vector<int>& tokens) { add_document(tokens.data(), tokens.size()); }

  // Closes the last shard and stamps num_shards into every shard. Returns the files written.
  std::vector<std::string> finish();

  int64_t num_tokens() const { return total_tokens_; }
  int64_t num_docs() const { return total_docs_; }

 private:
  void open_shard();
  void flush();
  void close_shard();
  void append(hid_t dset, hid_t memtype, const void* data, int64_t n, int64_t& length);

  std::string dir_;
  ShardMeta meta_;
  int64_t shard_tokens_;
  TokenType type_;
  data_h5::Handle file_, tokens_, offsets_;
  std::string path_;                 // the open shard
  std::vector<std::string> written_;
  std::vector<uint32_t> tok_buf_;
  std::vector<int64_t> off_buf_;
  int64_t shard_len_ = 0;            // tokens in the open shard (flushed + buffered)
  int64_t shard_docs_ = 0;
  int64_t tokens_on_disk_ = 0, offsets_on_disk_ = 0;
  int64_t total_tokens_ = 0, total_docs_ = 0;
  bool finished_ = false;
};

}  // namespace ttt
