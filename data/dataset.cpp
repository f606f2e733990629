// data/dataset.cpp — see dataset.h.
#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <stdexcept>

namespace fs = std::filesystem;

namespace ttt {

namespace {

// Shard files of a split by index, from their names; other files are ignored.
std::map<int64_t, std::string> list_shards(const std::string& dir, const std::string& split) {
  std::map<int64_t, std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error("data directory not found: " + dir);
  const std::regex name_re(split + "_([0-9]{5,})\\.h5");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (std::regex_match(name, m, name_re)) out[std::stoll(m[1].str())] = e.path().string();
  }
  return out;
}

}  // namespace

bool TokenDataset::has_split(const std::string& dir, const std::string& split) {
  return !list_shards(dir, split).empty();
}

// Opening checks the set as a whole: indices 0..n-1 without gaps, every shard agreeing on the
// shard count, its own name, and the tokenizer. Each ShardReader checks its own file.
std::shared_ptr<const TokenDataset> TokenDataset::open(const std::string& dir, const std::string& split) {
  auto files = list_shards(dir, split);
  if (files.empty()) throw std::runtime_error("no " + split + " shards (" + split + "_00000.h5, ...) in " + dir);
  std::shared_ptr<TokenDataset> ds(new TokenDataset());
  ds->dir_ = dir;
  ds->split_ = split;
  int64_t expect = 0;
  for (const auto& [index, path] : files) {
    if (index != expect) throw std::runtime_error(dir + ": shard " + shard_file_name(split, expect) + " is missing");
    ds->shards_.push_back(std::make_unique<ShardReader>(path));
    ++expect;
  }
  const ShardInfo& first = ds->shards_.front()->info();
  for (size_t i = 0; i < ds->shards_.size(); ++i) {
    const ShardInfo& si = ds->shards_[i]->info();
    if (si.num_shards != static_cast<int64_t>(files.size()))
      throw std::runtime_error(si.path + ": says the " + split + " split has " + std::to_string(si.num_shards) +
                               " shards, but " + dir + " holds " + std::to_string(files.size()));
    if (si.split != split || si.shard_index != static_cast<int64_t>(i))
      throw std::runtime_error(si.path + ": its attributes say split '" + si.split + "' shard " +
                               std::to_string(si.shard_index) + ", which disagrees with its file name");
    if (si.vocab_size != first.vocab_size || si.eos_id != first.eos_id || si.tokenizer_sha256 != first.tokenizer_sha256)
      throw std::runtime_error(si.path + ": tokenizer (sha256 " + si.tokenizer_sha256 + ", vocab " +
                               std::to_string(si.vocab_size) + ") differs from " + first.path + "'s (sha256 " +
                               first.tokenizer_sha256 + ", vocab " + std::to_string(first.vocab_size) + ")");
    // Prefix sums map stream positions and document indices to shards by binary search.
    ds->token_base_.push_back(ds->num_tokens_);
    ds->doc_base_.push_back(ds->num_docs_);
    ds->num_tokens_ += si.num_tokens;
    ds->num_docs_ += si.num_docs;
  }
  ds->token_base_.push_back(ds->num_tokens_);
  ds->doc_base_.push_back(ds->num_docs_);
  return ds;
}

void TokenDataset::check_compatible(int64_t model_vocab_size, const std::string& tokenizer_sha256,
                                    bool allow_padded_vocab) const {
  const ShardInfo& s = shard(0);  // open() made sure all shards agree
  bool vocab_ok = model_vocab_size == s.vocab_size || (allow_padded_vocab && model_vocab_size > s.vocab_size);
  if (!vocab_ok)
    throw std::runtime_error(s.path + ": the data's vocabulary has " + std::to_string(s.vocab_size) +
                             " tokens but the model config expects " + std::to_string(model_vocab_size) +
                             " (tokenize the data with the model's tokenizer, or set the model's vocab_size)");
  if (!tokenizer_sha256.empty() && tokenizer_sha256 != s.tokenizer_sha256)
    throw std::runtime_error(s.path + ": the data was tokenized with tokenizer sha256 " + s.tokenizer_sha256 + " (" +
                             s.tokenizer_file + ") but the model expects sha256 " + tokenizer_sha256);
}

void TokenDataset::read(int64_t start, int64_t n, int64_t* out) const {
  if (start < 0 || n < 0 || start + n > num_tokens_)
    throw std::out_of_range(dir_ + " (" + split_ + "): token range [" + std::to_string(start) + ", " +
                            std::to_string(start + n) + ") is outside the " + std::to_string(num_tokens_) + " tokens");
  // The shard holding `start`, then onwards across boundaries.
  size_t s = static_cast<size_t>(std::upper_bound(token_base_.begin(), token_base_.end(), start) - token_base_.begin()) - 1;
  while (n > 0) {
    int64_t local = start - token_base_[s];
    int64_t take = std::min(n, token_base_[s + 1] - start);
    shards_[s]->read_tokens(local, take, out);
    out += take;
    start += take;
    n -= take;
    ++s;
  }
}

std::pair<int64_t, int64_t> TokenDataset::doc_span(int64_t d) const {
  if (d < 0 || d >= num_docs_) throw std::out_of_range("document index " + std::to_string(d) + " out of range");
  size_t s = static_cast<size_t>(std::upper_bound(doc_base_.begin(), doc_base_.end(), d) - doc_base_.begin()) - 1;
  int64_t off[2];
  shards_[s]->read_doc_offsets(d - doc_base_[s], 2, off);
  return {token_base_[s] + off[0], token_base_[s] + off[1]};
}

// Offsets are read in slices of 256Ki documents (+1 for the end of the last one), so memory stays
// constant however many documents a shard holds.
void TokenDataset::for_each_doc(const std::function<void(int64_t, int64_t, int64_t)>& fn) const {
  std::vector<int64_t> buf;
  for (size_t s = 0; s < shards_.size(); ++s) {
    int64_t ndocs = shards_[s]->info().num_docs;
    constexpr int64_t kStep = 1 << 18;
    for (int64_t d0 = 0; d0 < ndocs; d0 += kStep) {
      int64_t n = std::min(kStep, ndocs - d0);
      buf.resize(static_cast<size_t>(n + 1));
      shards_[s]->read_doc_offsets(d0, n + 1, buf.data());
      for (int64_t i = 0; i < n; ++i)
        fn(doc_base_[s] + d0 + i, token_base_[s] + buf[static_cast<size_t>(i)], token_base_[s] + buf[static_cast<size_t>(i + 1)]);
    }
  }
}

void TokenDataset::verify(const std::function<void(int64_t)>& on_progress) const {
  constexpr int64_t kStep = int64_t(1) << 20;
  std::vector<int64_t> buf;
  int64_t buf_start = 0, buf_len = 0;
  // Documents come in stream order, so their EOS positions only move forward: the token buffer
  // advances chunk by chunk, each chunk checked against the vocabulary as it is read.
  auto token_at = [&](int64_t pos) {
    while (pos >= buf_start + buf_len) {
      buf_start += buf_len;
      buf_len = std::min(kStep, num_tokens_ - buf_start);
      buf.resize(static_cast<size_t>(buf_len));
      read(buf_start, buf_len, buf.data());
      for (int64_t i = 0; i < buf_len; ++i) {
        int64_t t = buf[static_cast<size_t>(i)];
        if (t < 0 || t >= vocab_size())
          throw std::runtime_error(dir_ + " (" + split_ + "): token " + std::to_string(t) + " at stream position " +
                                   std::to_string(buf_start + i) + " is outside the vocabulary of " +
                                   std::to_string(vocab_size()) + " (corrupt shard)");
      }
      if (on_progress) on_progress(buf_start + buf_len);
    }
    return buf[static_cast<size_t>(pos - buf_start)];
  };
  for_each_doc([&](int64_t d, int64_t, int64_t end) {
    if (token_at(end - 1) != eos_id())
      throw std::runtime_error(dir_ + " (" + split_ + "): document " + std::to_string(d) + " does not end with EOS " +
                               std::to_string(eos_id()) + " (corrupt shard)");
  });
}

}  // namespace ttt
