// data/shard_reader.h — opens one token shard (format: shard_format.h), checks its structure,
// and reads token / document-offset ranges through hyperslab selections (never the whole shard).
#pragma once

#include <cstdint>
#include <string>

#include "data/h5.h"
#include "data/shard_format.h"

namespace ttt {

struct ShardInfo {
  std::string path;
  std::string split;
  int64_t shard_index = 0, num_shards = 0;
  int64_t vocab_size = 0, eos_id = -1;
  int64_t num_tokens = 0, num_docs = 0;
  std::string tokenizer_sha256, tokenizer_file, sources_json;
  TokenType token_type = TokenType::u16;
};

class ShardReader {
 public:
  // Throws std::runtime_error naming the file when it is not a complete, consistent shard: not
  // HDF5 / truncated, missing datasets or attributes, sizes that disagree with the counts,
  // document offsets that are not increasing from 0 to num_tokens (all of them are checked, read
  // in chunks), or a shard whose writing never finished (no num_shards).
  explicit ShardReader(const std::string& path);

  const ShardInfo& info() const { return info_; }
  // Tokens [start, start + n) of this shard as int64. Throws on a checksum or I/O error.
  void read_tokens(int64_t start, int64_t n, int64_t* out) const;
  // doc_offsets[start, start + n).
  void read_doc_offsets(int64_t start, int64_t n, int64_t* out) const;

 private:
  ShardInfo info_;
  data_h5::Handle file_, tokens_, offsets_;
};

}  // namespace ttt
