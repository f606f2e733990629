// data/shard_format.h — the on-disk format of a token shard, shared by writer and reader.
//
// One HDF5 file per shard, named <split>_<5-digit index>.h5 (train_00000.h5, val_00000.h5, ...):
//   /tokens       1-D, uint16 when vocab_size <= 65536 else uint32: the documents' tokens, each
//                 document followed by eos_id. Chunked (kTokenChunk) with Fletcher32 checksums,
//                 so damaged bytes are reported on read instead of silently returning tokens.
//   /doc_offsets  1-D int64 [num_docs + 1]: document d is tokens[doc_offsets[d], doc_offsets[d+1])
//                 (its EOS included); doc_offsets[0] = 0, doc_offsets[num_docs] = num_tokens.
//   attributes on the root group:
//     format "ttt-token-shard", format_version 1, split, shard_index, num_shards,
//     vocab_size, eos_id, tokenizer_sha256, tokenizer_file, sources (JSON list of input files),
//     num_tokens, num_docs (this shard).
// Documents never straddle shards.
#pragma once

#include <cstdint>
#include <string>

namespace ttt {

inline constexpr const char* kShardFormat = "ttt-token-shard";
inline constexpr int64_t kShardFormatVersion = 1;
inline constexpr int64_t kTokenChunk = 1 << 16;   // tokens per HDF5 chunk (128 KiB as uint16)
inline constexpr int64_t kOffsetChunk = 1 << 14;  // doc offsets per HDF5 chunk

enum class TokenType { u16, u32 };

// uint16 when every id of a vocabulary of this size fits, else uint32; throws
// std::invalid_argument for a vocabulary larger than uint32 can index (or not positive).
TokenType token_type_for_vocab(int64_t vocab_size);

// "train_00003.h5"
std::string shard_file_name(const std::string& split, int64_t index);

}  // namespace ttt
