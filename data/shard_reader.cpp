// data/shard_reader.cpp — see shard_reader.h.
#include "data/shard_reader.h"

#include <stdexcept>
#include <vector>

namespace ttt {

namespace {
// Chunk cache per tokens dataset: a few chunks, so sequential reads touch each chunk once and a
// window straddling two chunks does not read either twice.
constexpr size_t kChunkCacheBytes = 4 << 20;
}  // namespace

ShardReader::ShardReader(const std::string& path) {
  const std::string& p = path;
  file_ = data_h5::open_file(p, /*writable=*/false);
  hid_t root = file_.get();
  info_.path = p;
  if (!data_h5::has_attr(root, "format") || data_h5::read_attr_str(root, "format", p) != kShardFormat)
    throw std::runtime_error(p + ": not a ttt token shard (attribute format != \"" + kShardFormat + "\")");
  int64_t version = data_h5::read_attr_i64(root, "format_version", p);
  if (version != kShardFormatVersion)
    throw std::runtime_error(p + ": shard format version " + std::to_string(version) + ", this build reads version " +
                             std::to_string(kShardFormatVersion));
  if (!data_h5::has_attr(root, "num_shards") || !data_h5::has_attr(root, "num_tokens"))
    throw std::runtime_error(p + ": incomplete shard (the run that wrote it did not finish); prepare the data again");
  info_.split = data_h5::read_attr_str(root, "split", p);
  info_.shard_index = data_h5::read_attr_i64(root, "shard_index", p);
  info_.num_shards = data_h5::read_attr_i64(root, "num_shards", p);
  info_.vocab_size = data_h5::read_attr_i64(root, "vocab_size", p);
  info_.eos_id = data_h5::read_attr_i64(root, "eos_id", p);
  info_.num_tokens = data_h5::read_attr_i64(root, "num_tokens", p);
  info_.num_docs = data_h5::read_attr_i64(root, "num_docs", p);
  info_.tokenizer_sha256 = data_h5::read_attr_str(root, "tokenizer_sha256", p);
  info_.tokenizer_file = data_h5::read_attr_str(root, "tokenizer_file", p);
  info_.sources_json = data_h5::read_attr_str(root, "sources", p);
  // Everything the sampler relies on is checked here, once, so reads need no further checks.
  info_.token_type = token_type_for_vocab(info_.vocab_size);
  if (info_.eos_id < 0 || info_.eos_id >= info_.vocab_size)
    throw std::runtime_error(p + ": eos_id " + std::to_string(info_.eos_id) + " is outside the vocabulary of " +
                             std::to_string(info_.vocab_size));
  if (info_.num_docs <= 0 || info_.num_tokens < info_.num_docs)
    throw std::runtime_error(p + ": inconsistent counts (num_docs " + std::to_string(info_.num_docs) + ", num_tokens " +
                             std::to_string(info_.num_tokens) + ")");

  {
    data_h5::Lock lock(data_h5::hdf5_mutex());
    data_h5::Handle dapl(data_h5::check(H5Pcreate(H5P_DATASET_ACCESS), p, "H5Pcreate"), H5Pclose);
    H5Pset_chunk_cache(dapl.get(), 521, kChunkCacheBytes, 1.0);
    tokens_ = data_h5::open_dataset(root, "tokens", p, dapl.get());
    offsets_ = data_h5::open_dataset(root, "doc_offsets", p);
    data_h5::Handle type(data_h5::check(H5Dget_type(tokens_.get()), p, "tokens type"), H5Tclose);
    size_t want = info_.token_type == TokenType::u16 ? 2 : 4;
    if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_sign(type.get()) != H5T_SGN_NONE ||
        H5Tget_size(type.get()) != want)
      throw std::runtime_error(p + ": dataset 'tokens' should be uint" + std::to_string(8 * want) + " for a vocabulary of " +
                               std::to_string(info_.vocab_size));
  }
  int64_t ntok = data_h5::dataset_length(tokens_.get(), "tokens", p);
  int64_t noff = data_h5::dataset_length(offsets_.get(), "doc_offsets", p);
  if (ntok != info_.num_tokens)
    throw std::runtime_error(p + ": dataset 'tokens' has " + std::to_string(ntok) + " elements, attribute num_tokens says " +
                             std::to_string(info_.num_tokens));
  if (noff != info_.num_docs + 1)
    throw std::runtime_error(p + ": dataset 'doc_offsets' has " + std::to_string(noff) + " elements, expected num_docs + 1 = " +
                             std::to_string(info_.num_docs + 1));

  // Every offset is checked (a chunk at a time): the sampler relies on them.
  std::vector<int64_t> buf;
  int64_t prev = -1;
  for (int64_t s = 0; s < noff; s += kOffsetChunk * 16) {
    int64_t n = std::min<int64_t>(kOffsetChunk * 16, noff - s);
    buf.resize(static_cast<size_t>(n));
    read_doc_offsets(s, n, buf.data());
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = buf[static_cast<size_t>(i)];
      bool ok = (s + i == 0) ? v == 0 : v > prev;
      if (!ok || v > info_.num_tokens)
        throw std::runtime_error(p + ": doc_offsets[" + std::to_string(s + i) + "] = " + std::to_string(v) +
                                 " breaks 0 = offsets[0] < offsets[1] < ... <= num_tokens (corrupt shard)");
      prev = v;
    }
  }
  if (prev != info_.num_tokens)
    throw std::runtime_error(p + ": the last doc offset is " + std::to_string(prev) + ", expected num_tokens " +
                             std::to_string(info_.num_tokens));
}

void ShardReader::read_tokens(int64_t start, int64_t n, int64_t* out) const {
  if (start < 0 || n < 0 || start + n > info_.num_tokens)
    throw std::out_of_range(info_.path + ": token range [" + std::to_string(start) + ", " + std::to_string(start + n) +
                            ") is outside [0, " + std::to_string(info_.num_tokens) + ")");
  data_h5::read_range_i64(tokens_.get(), start, n, out, info_.path + " /tokens");
}

void ShardReader::read_doc_offsets(int64_t start, int64_t n, int64_t* out) const {
  if (start < 0 || n < 0 || start + n > info_.num_docs + 1)
    throw std::out_of_range(info_.path + ": doc_offsets range out of bounds");
  data_h5::read_range_i64(offsets_.get(), start, n, out, info_.path + " /doc_offsets");
}

}  // namespace ttt
