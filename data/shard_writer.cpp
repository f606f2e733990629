// data/shard_writer.cpp — see shard_writer.h and shard_format.h.
#include "data/shard_writer.h"

#include <cstdio>
#include <stdexcept>

namespace ttt {

namespace {
constexpr size_t kWriteBufferTokens = 1 << 20;
}

// Ids run from 0 to vocab_size - 1, so a vocabulary of exactly 65536 still fits uint16.
TokenType token_type_for_vocab(int64_t vocab_size) {
  if (vocab_size <= 0) throw std::invalid_argument("vocabulary size must be positive, got " + std::to_string(vocab_size));
  if (vocab_size <= (int64_t(1) << 16)) return TokenType::u16;
  if (vocab_size <= (int64_t(1) << 32)) return TokenType::u32;
  throw std::invalid_argument("vocabulary of " + std::to_string(vocab_size) +
                              " tokens does not fit uint32 token ids (at most 4294967296)");
}

std::string shard_file_name(const std::string& split, int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "_%05lld.h5", static_cast<long long>(index));
  return split + buf;
}

ShardWriter::ShardWriter(std::string dir, ShardMeta meta, int64_t shard_tokens)
    : dir_(std::move(dir)), meta_(std::move(meta)), shard_tokens_(shard_tokens),
      type_(token_type_for_vocab(meta_.vocab_size)) {
  if (shard_tokens_ <= 0) throw std::invalid_argument("--shard-tokens must be positive");
  if (meta_.eos_id < 0 || meta_.eos_id >= meta_.vocab_size)
    throw std::invalid_argument("EOS id " + std::to_string(meta_.eos_id) + " is outside the vocabulary");
  tok_buf_.reserve(kWriteBufferTokens);
}

ShardWriter::~ShardWriter() = default;  // an unfinished shard is abandoned (the caller removes the temp dir)

// Both datasets start empty and grow (unlimited, chunked): a shard's size is known only when its
// last document arrives, and nothing needs to be held in memory beyond the write buffer.
void ShardWriter::open_shard() {
  path_ = dir_ + "/" + shard_file_name(meta_.split, static_cast<int64_t>(written_.size()));
  file_ = data_h5::create_file(path_);
  data_h5::Lock lock(data_h5::hdf5_mutex());
  auto make = [&](const char* name, hid_t type, hsize_t chunk) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    data_h5::Handle space(data_h5::check(H5Screate_simple(1, &dims, &maxdims), path_, "H5Screate_simple"), H5Sclose);
    data_h5::Handle dcpl(data_h5::check(H5Pcreate(H5P_DATASET_CREATE), path_, "H5Pcreate"), H5Pclose);
    data_h5::check(H5Pset_chunk(dcpl.get(), 1, &chunk), path_, "H5Pset_chunk");
    data_h5::check(H5Pset_fletcher32(dcpl.get()), path_, "H5Pset_fletcher32");
    // No modification times in the object headers: the same input gives byte-identical shards.
    data_h5::check(H5Pset_obj_track_times(dcpl.get(), false), path_, "H5Pset_obj_track_times");
    return data_h5::Handle(data_h5::check(H5Dcreate2(file_.get(), name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                                path_, std::string("cannot create dataset ") + name),
                      H5Dclose);
  };
  tokens_ = make("tokens", type_ == TokenType::u16 ? H5T_STD_U16LE : H5T_STD_U32LE, kTokenChunk);
  offsets_ = make("doc_offsets", H5T_STD_I64LE, kOffsetChunk);
  hid_t root = file_.get();
  data_h5::write_attr(root, "format", std::string(kShardFormat), path_);
  data_h5::write_attr(root, "format_version", kShardFormatVersion, path_);
  data_h5::write_attr(root, "split", meta_.split, path_);
  data_h5::write_attr(root, "shard_index", static_cast<int64_t>(written_.size()), path_);
  data_h5::write_attr(root, "vocab_size", meta_.vocab_size, path_);
  data_h5::write_attr(root, "eos_id", meta_.eos_id, path_);
  data_h5::write_attr(root, "tokenizer_sha256", meta_.tokenizer_sha256, path_);
  data_h5::write_attr(root, "tokenizer_file", meta_.tokenizer_file, path_);
  data_h5::write_attr(root, "sources", meta_.sources_json, path_);
  shard_len_ = shard_docs_ = tokens_on_disk_ = offsets_on_disk_ = 0;
  off_buf_.assign(1, 0);  // doc_offsets starts with 0
}

// Grows a 1-D dataset by n elements and writes them into the new tail through a hyperslab.
void ShardWriter::append(hid_t dset, hid_t memtype, const void* data, int64_t n, int64_t& length) {
  if (n == 0) return;
  data_h5::Lock lock(data_h5::hdf5_mutex());
  hsize_t new_len = static_cast<hsize_t>(length + n), off = static_cast<hsize_t>(length), cnt = static_cast<hsize_t>(n);
  data_h5::check(H5Dset_extent(dset, &new_len), path_, "cannot extend dataset");
  data_h5::Handle fspace(data_h5::check(H5Dget_space(dset), path_, "H5Dget_space"), H5Sclose);
  data_h5::check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &off, nullptr, &cnt, nullptr), path_, "hyperslab");
  data_h5::Handle mspace(data_h5::check(H5Screate_simple(1, &cnt, nullptr), path_, "H5Screate_simple"), H5Sclose);
  data_h5::check(H5Dwrite(dset, memtype, mspace.get(), fspace.get(), H5P_DEFAULT, data), path_,
            "write failed (disk full?)");
  length += n;
}

// The buffer holds uint32 whatever the file type; HDF5 converts to uint16 on write, which is
// exact because every id was checked against the vocabulary.
void ShardWriter::flush() {
  append(tokens_.get(), H5T_NATIVE_UINT32, tok_buf_.data(), static_cast<int64_t>(tok_buf_.size()), tokens_on_disk_);
  append(offsets_.get(), H5T_NATIVE_INT64, off_buf_.data(), static_cast<int64_t>(off_buf_.size()), offsets_on_disk_);
  tok_buf_.clear();
  off_buf_.clear();
}

void ShardWriter::add_document(const int* tokens, size_t n) {
  if (finished_) throw std::logic_error("ShardWriter::add_document after finish()");
  if (n == 0 || tokens[n - 1] != meta_.eos_id)
    throw std::invalid_argument("ShardWriter: a document must end with the EOS id " + std::to_string(meta_.eos_id));
  // All ids are checked before any is buffered: a refused document leaves the shard as it was.
  for (size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= meta_.vocab_size)
      throw std::out_of_range("token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " +
                              std::to_string(meta_.vocab_size));
  if (!file_.valid()) open_shard();
  for (size_t i = 0; i < n; ++i) {
    tok_buf_.push_back(static_cast<uint32_t>(tokens[i]));
    if (tok_buf_.size() >= kWriteBufferTokens) flush();
  }
  shard_len_ += static_cast<int64_t>(n);
  ++shard_docs_;
  off_buf_.push_back(shard_len_);
  total_tokens_ += static_cast<int64_t>(n);
  ++total_docs_;
  if (shard_len_ >= shard_tokens_) close_shard();
}

// The counts are written last, after all data: a shard with num_tokens is a finished shard.
void ShardWriter::close_shard() {
  flush();
  data_h5::write_attr(file_.get(), "num_tokens", shard_len_, path_);
  data_h5::write_attr(file_.get(), "num_docs", shard_docs_, path_);
  tokens_.reset();
  offsets_.reset();
  if (file_.close() < 0) throw std::runtime_error(path_ + ": closing the shard failed (disk full?)");
  written_.push_back(path_);
}

std::vector<std::string> ShardWriter::finish() {
  if (finished_) return written_;
  if (file_.valid()) close_shard();
  // num_shards is known only now: stamp it into every shard so a missing file is detected.
  for (const auto& p : written_) {
    data_h5::Handle f = data_h5::open_file(p, /*writable=*/true);
    data_h5::write_attr(f.get(), "num_shards", static_cast<int64_t>(written_.size()), p);
    if (f.close() < 0) throw std::runtime_error(p + ": closing the shard failed");
  }
  finished_ = true;
  return written_;
}

}  // namespace ttt
